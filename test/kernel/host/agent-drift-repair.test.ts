/**
 * The agent's drift repair on the host kernel (policies only: the host has no ESP), wired as
 * src/agent/agent.ts wires it: the kernel monitor on its own socket feeding the drift watch,
 * the work queue with its two keys and one worker, the node worker over the real XFRM socket
 * and a real ledger; the caches and the node-state reporter are stand-ins (no API server).
 *
 * Proven here: a policy of ours deleted or changed by `ip xfrm` is repaired by the targeted
 * path (the metric of passes by path, and no dump of the tables taken), a foreign policy's
 * events queue no reconcile at all, and a foreign policy now holding the identity of one of
 * ours is a conflict the targeted path leaves alone and hands to the full pass, which reports it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../../src/agent/agent-metrics.js';
import { DriftWatch } from '../../../src/agent/drift-watch.js';
import { AgentEncapSockets } from '../../../src/agent/encap-sockets.js';
import { kernelMonitorRunnable } from '../../../src/agent/kernel-monitor.js';
import type { NodeStateFacts } from '../../../src/agent/node-state-reporter.js';
import { DRIFT_KEY, NODE_KEY, NodeWorker } from '../../../src/agent/node-worker.js';
import { openKernelTables, type OpenKernelTables } from '../../../src/engine/kernel.js';
import { silentLogger } from '../../../src/kube/logger.js';
import { runWorkers } from '../../../src/kube/reconcile.js';
import type { Runnable } from '../../../src/kube/runnables.js';
import { WorkQueue } from '../../../src/kube/workqueue.js';
import { Ledger } from '../../../src/ownership/ledger.js';
import { policyKey } from '../../../src/plan/identity.js';
import { policy, policySpec } from '../../support/entries.js';
import { metricValue } from '../../support/metrics-text.js';
import { createNetns, type TestNetns } from './netns.js';

/** Above the engine's small-plan bounds: a full pass dumps, only a targeted repair reads. */
const COUNT = 200;
const SOURCE = '10.1.0.1/32';
const destinationOf = (i: number) => `10.2.${i >> 8}.${i & 255}/32`;
const resources = Array.from({ length: COUNT }, (_, i) => ({
  apiVersion: 'ipsec.xfrm.io/v1alpha1' as const,
  kind: 'IpsecPolicy' as const,
  metadata: { name: `p${String(i).padStart(4, '0')}`, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: policySpec({ selector: { source: SOURCE, destination: destinationOf(i) }, priority: 100 }),
}));
/** A liveness bound on a loaded 2-core machine, not a measure. */
const BOUND_MS = 30_000;

let netns: TestNetns;
let directory: string;
let tables: OpenKernelTables;
let ledger: Ledger;
let monitor: Runnable;
let queue: WorkQueue;
let workers: Promise<void>;
const stop = new AbortController();
const registry = new Registry();
const reports: NodeStateFacts[] = [];
const counts = { dumps: 0, writes: 0, reconciles: { [NODE_KEY]: 0, [DRIFT_KEY]: 0 } as Record<string, number>, events: 0, finished: 0 };
/** While closed, the worker waits before each pass (to let two hand changes land as one). */
let gate: Promise<void> = Promise.resolve();

async function until(what: string, test: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + BOUND_MS;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${BOUND_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function passes(): Promise<{ targeted: number; full: number }> {
  const text = await registry.metrics();
  return { targeted: metricValue(text, 'ipsec_operator_drift_repair_passes_total{path="targeted"}')!, full: metricValue(text, 'ipsec_operator_drift_repair_passes_total{path="full"}')! };
}

const getPolicy = (i: number) => netns.tryIp('xfrm', 'policy', 'get', 'src', SOURCE, 'dst', destinationOf(i), 'dir', 'out');
const indexOf = (i: number) => Number(/index (\d+)/.exec(netns.ip('-s', 'xfrm', 'policy', 'get', 'src', SOURCE, 'dst', destinationOf(i), 'dir', 'out'))![1]);
const keyOf = (i: number) => policyKey(policy({ selector: { source: SOURCE, destination: destinationOf(i) } }).id);

beforeAll(async () => {
  netns = createNetns();
  directory = mkdtempSync(join(tmpdir(), 'ipsecop-drift-kernel-'));
  const opened = await openKernelTables(netns.name);
  tables = opened;
  ledger = await Ledger.open(join(directory, 'ledger.json'), { scope: opened.scope });
  const counted: OpenKernelTables = {
    ...opened,
    dump: async () => {
      counts.dumps += 1;
      return opened.dump();
    },
    apply: (changes) => {
      counts.writes += changes.length;
      return opened.apply(changes);
    },
  };
  const metrics = new AgentMetrics(registry, { perSaMetrics: false, readXfrmStat: async () => new Map() });
  queue = new WorkQueue({ name: 'agent-drift-test' });
  const trigger = () => queue.add(NODE_KEY);
  const drift: DriftWatch = new DriftWatch({
    ownPortId: () => opened.portId,
    owns: (key) => ledger.records().has(key),
    concerns: (touched) => worker.concern(touched),
    trigger: (path) => queue.add(path === 'full' ? NODE_KEY : DRIFT_KEY),
  });
  const worker: NodeWorker = new NodeWorker({
    nodeName: 'drift',
    netns: netns.name,
    resyncSeconds: 3600, // no resync inside this file: every pass is one the events asked for
    logger: silentLogger,
    caches: { snapshot: () => ({ resources, secrets: new Map(), node: { metadata: { name: 'drift', labels: {} } } }) },
    kernel: { handles: () => ({ tables: counted, ledger }) },
    drift,
    metrics,
    encapSockets: new AgentEncapSockets({ netns: netns.name, registry }),
    reporter: { report: async (facts) => void reports.push(facts) },
    requestFull: trigger,
  });
  monitor = kernelMonitorRunnable(netns.name, (event) => {
    counts.events += 1;
    drift.observe(event);
  });
  await monitor.start(stop.signal);
  workers = runWorkers(
    queue,
    1,
    async (key) => {
      await gate;
      counts.reconciles[key] = (counts.reconciles[key] ?? 0) + 1;
      try {
        return await worker.reconcile(key);
      } finally {
        counts.finished += 1;
      }
    },
    { signal: stop.signal },
  );
  trigger();
  await until('the first full pass applied every policy', () => worker.lastSync !== undefined);
  expect(netns.ip('xfrm', 'policy', 'count')).toMatch(new RegExp(`OUT ${COUNT} `));
}, 120_000);

afterAll(async () => {
  stop.abort();
  queue?.shutDown();
  await workers?.catch(() => undefined);
  await monitor?.stop();
  await ledger?.close();
  tables?.close();
  netns?.remove();
  rmSync(directory, { recursive: true, force: true });
});

describe("the agent's drift repair on the host kernel", () => {
  it('a full pass with nothing changed writes nothing and sees no event (the resync stays quiet)', async () => {
    const before = { writes: counts.writes, events: counts.events, finished: counts.finished };
    queue.add(NODE_KEY);
    await until('the full pass ran', () => counts.finished === before.finished + 1);
    expect(counts.writes).toBe(before.writes);
    expect(counts.events).toBe(before.events);
  });

  it('our policy deleted by hand: re-added by the targeted path, without a dump or a full pass', async () => {
    const before = { passes: await passes(), dumps: counts.dumps, full: counts.reconciles[NODE_KEY] };
    const indexBefore = indexOf(17);
    netns.ip('xfrm', 'policy', 'delete', 'src', SOURCE, 'dst', destinationOf(17), 'dir', 'out');
    await until('the policy is back', () => getPolicy(17).ok);
    await until('the targeted pass counted', async () => (await passes()).targeted === before.passes.targeted + 1);
    expect(await passes()).toEqual({ targeted: before.passes.targeted + 1, full: before.passes.full });
    expect(counts.dumps).toBe(before.dumps);
    expect(counts.reconciles[NODE_KEY]).toBe(before.full);
    const index = indexOf(17);
    expect(index).not.toBe(indexBefore);
    // Settled through the ledger: the record names the incarnation the kernel gave the new policy.
    expect(ledger.records().get(keyOf(17))).toMatchObject({ phase: 'present', incarnation: { target: 'policy', index } });
  });

  it('our policy changed in place by hand (priority): put back by the targeted path', async () => {
    const before = { passes: await passes(), dumps: counts.dumps };
    netns.ip('xfrm', 'policy', 'update', 'src', SOURCE, 'dst', destinationOf(40), 'dir', 'out', 'priority', '7', 'tmpl', 'proto', 'esp', 'reqid', '1', 'mode', 'transport');
    await until('the targeted pass counted', async () => (await passes()).targeted === before.passes.targeted + 1);
    expect(getPolicy(40).stdout).toMatch(/priority 100 /);
    expect(counts.dumps).toBe(before.dumps);
    expect((await passes()).full).toBe(before.passes.full);
  });

  it("a foreign policy's events queue no reconcile; ours right after them is repaired by the targeted path alone", async () => {
    const before = { passes: await passes(), reconciles: { ...counts.reconciles }, dumps: counts.dumps, events: counts.events };
    netns.ip('xfrm', 'policy', 'add', 'src', '203.0.113.0/24', 'dst', '192.0.2.0/24', 'dir', 'out', 'priority', '9', 'tmpl', 'proto', 'esp', 'reqid', '77');
    netns.ip('xfrm', 'policy', 'update', 'src', '203.0.113.0/24', 'dst', '192.0.2.0/24', 'dir', 'out', 'priority', '8', 'tmpl', 'proto', 'esp', 'reqid', '77');
    // Our delete comes after the foreign events on the same monitor socket: once it is repaired,
    // they were seen — and queued nothing.
    netns.ip('xfrm', 'policy', 'delete', 'src', SOURCE, 'dst', destinationOf(90), 'dir', 'out');
    await until('the policy is back', () => getPolicy(90).ok);
    await until('the targeted pass counted', async () => (await passes()).targeted === before.passes.targeted + 1);
    expect(counts.events - before.events).toBeGreaterThanOrEqual(3);
    expect(counts.reconciles).toEqual({ [NODE_KEY]: before.reconciles[NODE_KEY], [DRIFT_KEY]: before.reconciles[DRIFT_KEY]! + 1 });
    expect(counts.dumps).toBe(before.dumps);
    expect(netns.ip('xfrm', 'policy', 'get', 'src', '203.0.113.0/24', 'dst', '192.0.2.0/24', 'dir', 'out')).toMatch(/priority 8 /);
  });

  it('our policy replaced by a foreign one with the same identity: a conflict, left alone; the full pass reports it', async () => {
    const before = { passes: await passes(), reports: reports.length, events: counts.events };
    let open!: () => void;
    gate = new Promise((resolve) => (open = resolve));
    try {
      netns.ip('xfrm', 'policy', 'delete', 'src', SOURCE, 'dst', destinationOf(120), 'dir', 'out');
      netns.ip('xfrm', 'policy', 'add', 'src', SOURCE, 'dst', destinationOf(120), 'dir', 'out', 'priority', '5', 'tmpl', 'proto', 'esp', 'reqid', '55');
      await until('the monitor saw both changes', () => counts.events >= before.events + 2);
    } finally {
      open();
    }
    await until('the full pass after the targeted one reported', async () => (await passes()).full === before.passes.full + 1 && reports.length > before.reports);
    expect((await passes()).targeted).toBe(before.passes.targeted + 1);
    expect(getPolicy(120).stdout).toMatch(/priority 5 /);
    expect(getPolicy(120).stdout).toMatch(/reqid 55 /);
    expect(reports.at(-1)!.reports.find((report) => report.name === 'p0120')).toMatchObject({ state: 'Failed', reason: 'Conflict' });
    // Every other policy of ours is still there.
    expect(netns.ip('xfrm', 'policy', 'count')).toMatch(new RegExp(`OUT ${COUNT + 1} `));
  });
});
