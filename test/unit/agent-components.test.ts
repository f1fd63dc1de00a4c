import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { agentStartOrder, type AgentComponents } from '../../src/agent/agent.js';
import { DriftWatch } from '../../src/agent/drift-watch.js';
import { dumpedIncarnation, NodeWorker } from '../../src/agent/node-worker.js';
import { AgentMetrics } from '../../src/agent/agent-metrics.js';
import { AgentEncapSockets, encapSocketsRunnable } from '../../src/agent/encap-sockets.js';
import { runInOrder, RunnableError, type Runnable } from '../../src/kube/runnables.js';
import { silentLogger } from '../../src/kube/logger.js';
import { stateKey } from '../../src/plan/identity.js';
import type { XfrmEvent } from '../../src/xfrm/events.js';
import { sa } from '../support/entries.js';

/** A component that records its start and stop in a shared journal. */
function recorder(name: string, journal: string[], behaviour: { start?: (signal: AbortSignal) => Promise<void>; done?: () => Promise<unknown> } = {}): Runnable {
  return {
    name,
    async start(signal) {
      journal.push(`start ${name}`);
      await behaviour.start?.(signal);
    },
    stop() {
      journal.push(`stop ${name}`);
    },
    ...(behaviour.done ? { done: behaviour.done } : {}),
  };
}

const ROLES = ['kernel', 'healthServer', 'encapSockets', 'nodeStateReporter', 'caches', 'meshCaches', 'kernelMonitor', 'sequenceMonitor', 'workers'] as const satisfies readonly (keyof AgentComponents)[];

function components(journal: string[], overrides: Partial<AgentComponents> = {}): AgentComponents {
  const built = Object.fromEntries(ROLES.map((role) => [role, recorder(role, journal)])) as unknown as AgentComponents;
  return { ...built, ...overrides };
}

describe("the agent's components", () => {
  it('start kernel and ledger first, the caches (then the mesh caches) before the kernel monitor, the workers last; and stop the other way round', async () => {
    const journal: string[] = [];
    const stop = new AbortController();
    const running = runInOrder(agentStartOrder(components(journal)), stop.signal);
    await new Promise((resolve) => setImmediate(resolve));
    expect(journal).toEqual(ROLES.map((role) => `start ${role}`));
    stop.abort();
    await running;
    expect(journal.slice(ROLES.length)).toEqual([...ROLES].reverse().map((role) => `stop ${role}`));
  });

  it('cover every component exactly once (a component added to AgentComponents but not to the order is caught here)', () => {
    const order = agentStartOrder(components([]));
    expect(order.map((runnable) => runnable.name)).toEqual([...ROLES]);
    expect(Object.keys(components([])).sort()).toEqual([...ROLES].sort());
  });

  it('never start the kernel monitor or the workers while the caches have not synced, and stop what started when the agent stops meanwhile', async () => {
    const journal: string[] = [];
    const stop = new AbortController();
    // Caches that never sync (the API server is unreachable): only the stop ends their wait.
    const caches = recorder('caches', journal, { start: (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true })) });
    const running = runInOrder(agentStartOrder(components(journal, { caches })), stop.signal);
    await new Promise((resolve) => setImmediate(resolve));
    expect(journal.at(-1)).toBe('start caches');
    stop.abort();
    await running; // a start given up on stop is not a failure
    expect(journal).not.toContain('start kernelMonitor');
    expect(journal).not.toContain('start workers');
    expect(journal.slice(journal.indexOf('start caches') + 1)).toEqual(['stop caches', 'stop nodeStateReporter', 'stop encapSockets', 'stop healthServer', 'stop kernel']);
  });

  it('refuse to go on without the ledger: a kernel start that fails starts nothing else and names the component', async () => {
    const journal: string[] = [];
    const kernel = recorder('kernel', journal, { start: () => Promise.reject(new Error('the ledger is locked by pid 7 (ipsec-operator apply)')) });
    const failure = await runInOrder(agentStartOrder(components(journal, { kernel })), new AbortController().signal).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(RunnableError);
    expect(failure).toMatchObject({ runnable: 'kernel', phase: 'start' });
    expect(journal).toEqual(['start kernel', 'stop kernel']);
  });

  it('stop everything in reverse order when the kernel monitor ends while the agent runs (it must not run blind)', async () => {
    const journal: string[] = [];
    let endMonitor!: (error: Error) => void;
    const ended = new Promise<never>((_, reject) => (endMonitor = reject));
    ended.catch(() => undefined);
    const kernelMonitor = recorder('kernelMonitor', journal, { done: () => ended });
    const running = runInOrder(agentStartOrder(components(journal, { kernelMonitor })), new AbortController().signal);
    await new Promise((resolve) => setImmediate(resolve));
    endMonitor(new Error('netlink socket closed'));
    const failure = await running.catch((error: unknown) => error);
    expect(failure).toMatchObject({ runnable: 'kernelMonitor', phase: 'run' });
    expect(journal.slice(ROLES.length)).toEqual([...ROLES].reverse().map((role) => `stop ${role}`));
  });

  it('close every encapsulation socket when the sockets component stops', () => {
    let closed = 0;
    const runnable = encapSocketsRunnable({ closeAll: () => void closed++ });
    void runnable.start(new AbortController().signal);
    expect(closed).toBe(0);
    void runnable.stop();
    expect(closed).toBe(1);
  });
});

describe('the drift watch', () => {
  const ours = sa({ spi: 0x100 });
  const origin = (portId: number) => ({ portId, sequence: 1 });
  function watch(owned: readonly string[] = []) {
    const log: string[] = [];
    let now = 1000;
    const drift = new DriftWatch({
      ownPortId: () => 42,
      owns: (key) => owned.includes(key),
      trigger: (path) => log.push(path === 'full' ? 'trigger' : 'trigger targeted'),
      expired: (hard) => log.push(hard ? 'expired hard' : 'expired soft'),
      now: () => now++,
    });
    return { drift, log };
  }

  it('ignores the echo of our own socket and suspects drift on anyone else’s change of ours, with the time of the first', () => {
    const { drift, log } = watch([stateKey(ours.id)]);
    drift.observe({ kind: 'state-added', state: ours, origin: origin(42) });
    expect(log).toEqual([]);
    expect(drift.take()).toEqual({ suspected: false, since: undefined });
    drift.observe({ kind: 'state-deleted', state: ours, origin: origin(7) });
    drift.observe({ kind: 'state-added', state: ours, origin: origin(0) });
    expect(log).toEqual(['trigger targeted', 'trigger targeted']);
    expect(drift.take()).toEqual({ suspected: true, since: 1000 });
    expect(drift.take()).toEqual({ suspected: false, since: undefined });
  });

  it('treats a lost event as drift', () => {
    const { drift, log } = watch();
    drift.observe({ kind: 'overrun', reason: 'ENOBUFS' } satisfies XfrmEvent);
    expect(log).toEqual(['trigger']);
    expect(drift.take().suspected).toBe(true);
  });

  it('counts expiries of owned SAs only; a soft expiry changes nothing, a hard one may need a repair', () => {
    const { drift, log } = watch([stateKey(ours.id)]);
    const foreign = sa({ spi: 0x200 });
    drift.observe({ kind: 'state-expired', state: ours, hard: false, origin: origin(0) });
    drift.observe({ kind: 'state-expired', state: foreign, hard: false, origin: origin(0) });
    expect(log).toEqual(['expired soft']);
    drift.observe({ kind: 'state-expired', state: ours, hard: true, origin: origin(0) });
    expect(log).toEqual(['expired soft', 'expired hard', 'trigger targeted']);
  });

  it('hands the hard-expired owned SAs to the next pass, once, to retire their keys (and takes them back when it fails)', () => {
    const { drift } = watch([stateKey(ours.id)]);
    drift.observe({ kind: 'state-expired', state: ours, hard: false, origin: origin(0) });
    drift.observe({ kind: 'state-expired', state: sa({ spi: 0x200 }), hard: true, origin: origin(0) }); // not ours
    expect(drift.takeExpired()).toEqual([]);
    drift.observe({ kind: 'state-expired', state: ours, hard: true, origin: origin(0) });
    const taken = drift.takeExpired();
    expect(taken).toEqual([ours]);
    expect(drift.takeExpired()).toEqual([]);
    drift.putBackExpired(taken);
    expect(drift.takeExpired()).toEqual([ours]);
  });

  it('finds the key of an expired SA in the last dump: same identity and add time only', () => {
    const observed = (spi: number, addTime: bigint) => ({
      ...sa({ spi }),
      observed: { current: { bytes: 0n, packets: 0n, addTime, useTime: 0n }, statistics: { replayWindow: 0, replay: 0, integrityFailed: 0 }, replayState: undefined, sequence: 0 },
    });
    const dumped = observed(0x100, 1000n);
    const dump = new Map([[stateKey(dumped.id), dumped]]);
    // What the kernel's EXPIRE carries: the SA without algorithms.
    const { algorithms: _omitted, ...expired } = dumped;
    expect(dumpedIncarnation(dump, expired)).toBe(dumped);
    const { algorithms: _again, ...readded } = observed(0x100, 1001n); // added again since the dump
    expect(dumpedIncarnation(dump, readded)).toBeUndefined();
    const { algorithms: _other, ...other } = observed(0x200, 1000n);
    expect(dumpedIncarnation(dump, other)).toBeUndefined();
  });

  it('adds up repairs', () => {
    const { drift } = watch();
    expect(drift.repaired(3)).toBe(3);
    expect(drift.repaired(2)).toBe(5);
    expect(drift.totalRepairs).toBe(5);
  });
});

describe('a reconcile pass of the agent', () => {
  function worker(view: ReturnType<NonNullable<ConstructorParameters<typeof NodeWorker>[0]['caches']['snapshot']>>) {
    const touched: string[] = [];
    const registry = new Registry();
    const node = new NodeWorker({
      nodeName: 'node-a',
      netns: undefined,
      resyncSeconds: 30,
      logger: silentLogger,
      caches: { snapshot: () => view },
      kernel: {
        handles: () => {
          touched.push('kernel');
          throw new Error('the kernel must not be touched');
        },
      },
      drift: new DriftWatch({ ownPortId: () => 1, owns: () => false, trigger: () => undefined }),
      metrics: new AgentMetrics(registry, { perSaMetrics: false, readXfrmStat: async () => new Map() }),
      encapSockets: new AgentEncapSockets({ netns: undefined, registry, open: () => { throw new Error('no sockets in this test'); } }),
      reporter: {
        report: async () => {
          touched.push('report');
        },
      },
    });
    return { node, touched };
  }

  it('leaves the kernel alone and comes back later while the caches have not synced (fail static)', async () => {
    const { node, touched } = worker(undefined);
    expect(await node.reconcile()).toEqual({ requeueAfter: 1000 });
    expect(touched).toEqual([]);
    expect(node.lastSync).toBeUndefined();
  });

  it('leaves the kernel alone while its own Node object is missing (its labels decide what selects it)', async () => {
    const { node, touched } = worker({ resources: [], secrets: new Map(), node: undefined });
    expect(await node.reconcile()).toEqual({ requeueAfter: 5000 });
    expect(touched).toEqual([]);
  });
});
