/**
 * The agent's targeted drift repair (src/agent/drift-repair.ts, drift-watch.ts, node-worker.ts):
 * which kernel events queue what, and the repair over the touched identities only, against the
 * fake kernel (test/support/fake-kernel.ts) and a real ledger in a scratch directory. The same
 * path on the host kernel: test/kernel/host/agent-drift-repair.test.ts.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentMetrics } from '../../src/agent/agent-metrics.js';
import { concernOf, repairBasis, repairTouched, targetedInputs } from '../../src/agent/drift-repair.js';
import { DriftWatch, MAX_TARGETED_IDENTITIES, touchedBy, type RepairPath } from '../../src/agent/drift-watch.js';
import { AgentEncapSockets } from '../../src/agent/encap-sockets.js';
import type { NodeStateFacts } from '../../src/agent/node-state-reporter.js';
import { DRIFT_KEY, NODE_KEY, NodeWorker, withSafePointBeforeDump } from '../../src/agent/node-worker.js';
import type { IpsecPolicySpec, SecurityAssociationSpec } from '../../src/crd/types.js';
import { RESUME_FLOOR, retiredUsage, observedSequence } from '../../src/engine/sequence-rule.js';
import { silentLogger } from '../../src/kube/logger.js';
import { DEFERRED_COMPACTION_FACTOR, Ledger } from '../../src/ownership/ledger.js';
import type { LedgerCommit, LedgerOpenOptions } from '../../src/ownership/ledger.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import type { SecurityPolicy } from '../../src/xfrm/types.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { policy, policySpec, sa, saSpec, TEST_KEYS } from '../support/entries.js';
import { metricValue } from '../support/metrics-text.js';

let directory: string;
const ledgers: Ledger[] = [];
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ipsecop-drift-'));
});
afterEach(async () => {
  for (const ledger of ledgers.splice(0)) await ledger.close();
  await rm(directory, { recursive: true, force: true });
});

const FOREIGN = { portId: 7, sequence: 1 };
const selectorOf = (i: number) => ({ source: '10.1.0.1/32', destination: `10.2.${i >> 8}.${i & 255}/32` });
const policyResource = (i: number, spec: Partial<IpsecPolicySpec> = {}) => ({
  apiVersion: 'ipsec.xfrm.io/v1alpha1' as const,
  kind: 'IpsecPolicy' as const,
  metadata: { name: `p${String(i).padStart(4, '0')}`, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: policySpec({ selector: selectorOf(i), ...spec }),
});
const saResource = (name: string, spec: Partial<SecurityAssociationSpec>) => ({
  apiVersion: 'ipsec.xfrm.io/v1alpha1' as const,
  kind: 'SecurityAssociation' as const,
  metadata: { name, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: saSpec(spec),
});
const policyAt = (i: number, spec: Partial<IpsecPolicySpec> = {}): SecurityPolicy => policy({ selector: selectorOf(i), ...spec });

/** One agent as src/agent/agent.ts wires it: the drift watch's triggers into a queue this test drains. */
async function agent(resources: readonly (ReturnType<typeof policyResource> | ReturnType<typeof saResource>)[], name = 'a', ledgerOptions: LedgerOpenOptions = {}) {
  const kernel = new FakeKernel();
  const ledger = await Ledger.open(join(directory, `${name}.json`), ledgerOptions);
  ledgers.push(ledger);
  const registry = new Registry();
  const metrics = new AgentMetrics(registry, { perSaMetrics: false, readXfrmStat: async () => new Map() });
  const queued: RepairPath[] = [];
  /** As the work queue: a key already waiting is not queued twice. */
  const add = (path: RepairPath) => void (queued.includes(path) || queued.push(path));
  const reports: NodeStateFacts[] = [];
  // Built before the worker, as in the agent: its filter asks the worker, once events flow.
  const drift: DriftWatch = new DriftWatch({ ownPortId: () => 42, owns: (key) => ledger.records().has(key), concerns: (touched) => worker.concern(touched), trigger: add });
  const worker: NodeWorker = new NodeWorker({
    nodeName: 'node-a',
    netns: undefined,
    resyncSeconds: 60,
    logger: silentLogger,
    caches: { snapshot: () => ({ resources: [...resources], secrets: new Map([['keys', new Map(Object.entries(TEST_KEYS))]]), node: { metadata: { name: 'node-a', labels: {} } } }) },
    kernel: { handles: () => ({ tables: kernel as never, ledger }) },
    drift,
    metrics,
    encapSockets: new AgentEncapSockets({ netns: undefined, registry }),
    reporter: { report: async (facts) => void reports.push(facts) },
    requestFull: () => add('full'),
  });
  /** Runs what the events queued, in order, as the agent's single worker would. */
  const drain = async () => {
    const ran: RepairPath[] = [];
    while (queued.length > 0) {
      const path = queued.shift()!;
      ran.push(path);
      await worker.reconcile(path === 'full' ? NODE_KEY : DRIFT_KEY);
    }
    return ran;
  };
  const passes = async () => {
    const text = await registry.metrics();
    return { targeted: metricValue(text, 'ipsec_operator_drift_repair_passes_total{path="targeted"}'), full: metricValue(text, 'ipsec_operator_drift_repair_passes_total{path="full"}') };
  };
  await worker.reconcile(NODE_KEY); // the first full pass
  return { kernel, ledger, worker, drift, queued, drain, passes, reports };
}

describe('which kernel events queue a repair, and which path', () => {
  it('an event names the identity it touched; flushes and lost events name none; acquires and soft expiries touch nothing', () => {
    const ours = policyAt(1);
    expect(touchedBy({ kind: 'policy-deleted', policy: ours, origin: FOREIGN })).toEqual({ kind: 'identity', touched: { target: 'policy', key: policyKey(ours.id), id: ours.id } });
    expect(touchedBy({ kind: 'policy-expired', policy: ours, hard: true, origin: FOREIGN })).toMatchObject({ kind: 'identity' });
    expect(touchedBy({ kind: 'policy-expired', policy: ours, hard: false, origin: FOREIGN })).toEqual({ kind: 'none' });
    expect(touchedBy({ kind: 'state-updated', state: sa(), origin: FOREIGN })).toEqual({ kind: 'identity', touched: { target: 'state', key: stateKey(sa().id), id: sa().id } });
    expect(touchedBy({ kind: 'overrun', reason: 'ENOBUFS' })).toMatchObject({ kind: 'full' });
    expect(touchedBy({ kind: 'overrun', reason: 'undecodable', detail: 'bad length' })).toMatchObject({ kind: 'full' });
    expect(touchedBy({ kind: 'policies-flushed', type: 'main', origin: FOREIGN })).toMatchObject({ kind: 'full' });
    expect(touchedBy({ kind: 'states-flushed', protocol: 'any', origin: FOREIGN })).toMatchObject({ kind: 'full' });
    expect(touchedBy({ kind: 'acquire', protocol: 'esp', source: '10.0.0.1', destination: '10.0.0.2', selector: ours.id.selector, policy: ours, sequence: 1, origin: FOREIGN })).toEqual({ kind: 'none' });
  });

  it('a foreign entry’s event queues nothing; ours queues a targeted repair; an overrun the full reconcile', async () => {
    const { kernel, worker, drift, queued } = await agent([policyResource(1), policyResource(2)]);
    const foreign = policyAt(900, { priority: 7 });
    kernel.foreign({ op: 'add-policy', policy: foreign });
    drift.observe({ kind: 'policy-added', policy: foreign, origin: FOREIGN });
    drift.observe({ kind: 'policy-deleted', policy: foreign, origin: FOREIGN });
    expect(queued).toEqual([]);
    // Nor while a full pass runs from unchanged caches (it builds the same desired tables).
    const resync = worker.reconcile(NODE_KEY);
    drift.observe({ kind: 'policy-updated', policy: foreign, origin: FOREIGN });
    await resync;
    expect(queued).toEqual([]);
    // Once the caches changed, until the full pass they asked for: only the ledger can tell.
    worker.desiredChanged();
    drift.observe({ kind: 'policy-updated', policy: foreign, origin: FOREIGN });
    expect(queued).toEqual(['full']);
    await worker.reconcile(NODE_KEY);
    queued.length = 0;
    drift.observe({ kind: 'policy-updated', policy: foreign, origin: FOREIGN });
    expect(queued).toEqual([]);
    drift.observe({ kind: 'policy-deleted', policy: policyAt(2), origin: { portId: 42, sequence: 9 } }); // our own echo
    expect(queued).toEqual([]);
    drift.observe({ kind: 'policy-deleted', policy: policyAt(2), origin: FOREIGN });
    expect(queued).toEqual(['targeted']);
    drift.observe({ kind: 'overrun', reason: 'ENOBUFS' });
    expect(queued).toEqual(['targeted', 'full']);
    // Once the full pass is due, it takes the gathered identities too: no targeted pass first.
    expect(drift.takeTouched()).toBeUndefined();
    expect(drift.take().suspected).toBe(true);
  });

  it('more identities than a targeted repair takes, or an SA sharing our lookup under another mark, ask for the full reconcile', async () => {
    const { drift, queued } = await agent(Array.from({ length: MAX_TARGETED_IDENTITIES + 1 }, (_, i) => policyResource(i)));
    for (let i = 0; i < MAX_TARGETED_IDENTITIES; i++) drift.observe({ kind: 'policy-deleted', policy: policyAt(i), origin: FOREIGN });
    expect(queued).toEqual(['targeted']);
    drift.observe({ kind: 'policy-deleted', policy: policyAt(MAX_TARGETED_IDENTITIES), origin: FOREIGN });
    expect(queued).toEqual(['targeted', 'full']);

    const ours = sa({ spi: 0x100 });
    const records = new Map();
    const basis = repairBasis({ states: [{ resource: 'SecurityAssociation/s', entry: ours }], policies: [] }, new Set(), new Set(), records);
    const marked = sa({ spi: 0x100, mark: { value: 5, mask: 0xff } });
    expect(concernOf({ target: 'state', key: stateKey(ours.id), id: ours.id }, basis, records)).toBe('targeted');
    expect(concernOf({ target: 'state', key: stateKey(marked.id), id: marked.id }, basis, records)).toBe('full');
    const other = sa({ spi: 0x999 });
    expect(concernOf({ target: 'state', key: stateKey(other.id), id: other.id }, basis, records)).toBe('none');
    // No full pass yet: only the ledger can tell, anything else may be desired.
    expect(concernOf({ target: 'state', key: stateKey(other.id), id: other.id }, undefined, records)).toBe('full');
    const mesh = repairBasis({ states: [{ resource: 'IpsecMesh/m', entry: ours }], policies: [] }, new Set(), new Set(), records);
    expect(concernOf({ target: 'state', key: stateKey(ours.id), id: ours.id }, mesh, records)).toBe('full');
  });
});

describe('the targeted repair', () => {
  it('our policy deleted: re-added by reading that identity only, no dump, no full pass, nothing foreign touched', async () => {
    const { kernel, ledger, drift, drain, passes } = await agent([policyResource(1), policyResource(2), policyResource(3)]);
    const foreign = policyAt(900, { priority: 7 });
    kernel.foreign({ op: 'add-policy', policy: foreign });
    const foreignBefore = kernel.policies.filter((entry) => policyKey(entry.id) === policyKey(foreign.id));
    const dumps = kernel.dumps;
    const reads = kernel.reads;
    const key = policyKey(policyAt(2).id);
    const indexBefore = kernel.policies.find((entry) => policyKey(entry.id) === key)!.index;
    kernel.foreign({ op: 'delete-policy', id: policyAt(2).id });
    // The order of durable ledger writes and kernel writes: the intent (with the removal of the
    // record the deletion disproved) before the add, the settlement after it.
    const order: string[] = [];
    const commit = ledger.commit.bind(ledger);
    ledger.commit = (changes) => {
      order.push(`commit set ${(changes.set ?? []).map((record) => record.phase).join(',')} remove ${changes.remove?.length ?? 0}`);
      return commit(changes);
    };
    const apply = kernel.apply.bind(kernel);
    kernel.apply = (changes) => {
      order.push(changes.map((change) => change.op).join(','));
      return apply(changes);
    };
    drift.observe({ kind: 'policy-deleted', policy: policyAt(2), origin: FOREIGN });
    expect(await drain()).toEqual(['targeted']);
    expect(order).toEqual(['commit set creating remove 1', 'add-policy', 'commit set present remove 0']);
    const readded = kernel.policies.find((entry) => policyKey(entry.id) === key);
    expect(readded).toBeDefined();
    expect(readded!.index).not.toBe(indexBefore);
    expect(kernel.dumps).toBe(dumps);
    expect(kernel.reads - reads).toBe(2); // the survey and the verifying read, one GETPOLICY each
    expect(ledger.records().get(key)).toMatchObject({ phase: 'present', incarnation: { target: 'policy', index: readded!.index } });
    expect(kernel.policies.filter((entry) => policyKey(entry.id) === policyKey(foreign.id))).toEqual(foreignBefore);
    expect(await passes()).toEqual({ targeted: 1, full: 0 });
    expect(drift.totalRepairs).toBe(1);
  });

  it('our policy replaced by a foreign one with the same identity: a conflict, not overwritten; the full pass reports it', async () => {
    const { kernel, drift, drain, passes, reports } = await agent([policyResource(1), policyResource(2)]);
    const key = policyKey(policyAt(2).id);
    kernel.foreign({ op: 'delete-policy', id: policyAt(2).id });
    const theirs = policyAt(2, { priority: 5 });
    kernel.foreign({ op: 'add-policy', policy: theirs });
    drift.observe({ kind: 'policy-deleted', policy: policyAt(2), origin: FOREIGN });
    drift.observe({ kind: 'policy-added', policy: theirs, origin: FOREIGN });
    const writes = kernel.log.length;
    expect(await drain()).toEqual(['targeted', 'full']);
    expect(kernel.log.slice(writes)).toEqual([]); // neither pass wrote anything
    expect(kernel.policies.find((entry) => policyKey(entry.id) === key)!.priority).toBe(5);
    expect(reports.at(-1)!.reports.find((report) => report.name === 'p0002')).toMatchObject({ state: 'Failed', reason: 'Conflict' });
    expect(await passes()).toEqual({ targeted: 1, full: 1 });
  });

  it('plans over the subset alone: our deleted policy re-added, a foreign one holding our identity a conflict (pure planning inputs)', async () => {
    const { kernel, ledger } = await agent([policyResource(1), policyResource(2)]);
    const desired = { states: [], policies: [1, 2].map((i) => ({ resource: `IpsecPolicy/p000${i}`, entry: policyAt(i) })) };
    const basis = repairBasis(desired, new Set(), new Set(), ledger.records());
    kernel.foreign({ op: 'delete-policy', id: policyAt(1).id });
    kernel.foreign({ op: 'delete-policy', id: policyAt(2).id });
    kernel.foreign({ op: 'add-policy', policy: policyAt(2, { priority: 5 }) });
    const touched = [1, 2].map((i) => ({ target: 'policy' as const, key: policyKey(policyAt(i).id), id: policyAt(i).id }));
    const inputs = targetedInputs(touched, basis, ledger.records());
    if ('full' in inputs) throw new Error(inputs.full);
    expect(inputs.desired.policies.map((entry) => entry.resource)).toEqual(['IpsecPolicy/p0001', 'IpsecPolicy/p0002']);
    const repair = await repairTouched(inputs, basis, kernel, ledger);
    expect(repair.plan.steps.map((step) => `${step.op} ${step.resource}`)).toEqual(['create IpsecPolicy/p0001']);
    expect(repair.plan.conflicts.map((conflict) => conflict.resource)).toEqual(['IpsecPolicy/p0002']);
    expect(repair.full).toMatch(/^conflict/);
  });

  it('an SA of ours deleted is added again resuming past its mark, through the targeted path', async () => {
    const resource = saResource('s', { spi: 0x100 });
    const { kernel, ledger, drift, drain, passes } = await agent([resource]);
    const ours = sa({ spi: 0x100 });
    const usageKey = ledger.usageKey(kernel.states[0]!);
    const mark = ledger.usage(usageKey)!.mark;
    const dumps = kernel.dumps;
    kernel.foreign({ op: 'delete-state', id: ours.id });
    drift.observe({ kind: 'state-deleted', state: ours, origin: FOREIGN });
    expect(await drain()).toEqual(['targeted']);
    expect(kernel.states).toHaveLength(1);
    expect(observedSequence(kernel.states[0]!)! >= mark + RESUME_FLOOR).toBe(true);
    expect(ledger.usage(usageKey)!.mark >= mark + RESUME_FLOOR).toBe(true); // the install mark went in before the SA
    expect(kernel.dumps).toBe(dumps);
    expect(await passes()).toEqual({ targeted: 1, full: 0 });
  });

  it('an SA of ours whose key is retired is not added again (NeedsRekey), and the full pass reports it', async () => {
    const resource = saResource('s', { spi: 0x100 });
    const { kernel, ledger, drift, drain, reports } = await agent([resource]);
    const ours = sa({ spi: 0x100 });
    const usageKey = ledger.usageKey(kernel.states[0]!);
    kernel.foreign({ op: 'delete-state', id: ours.id });
    await ledger.commit({ usage: [retiredUsage(usageKey, ledger.usage(usageKey), 'needs-rekey', 'retired by the test', Math.floor(Date.now() / 1000))] });
    drift.observe({ kind: 'state-deleted', state: ours, origin: FOREIGN });
    expect(await drain()).toEqual(['targeted', 'full']);
    expect(kernel.states).toEqual([]);
    expect(reports.at(-1)!.reports.find((report) => report.name === 's')).toMatchObject({ state: 'Failed', reason: 'NeedsRekey' });
  });

  it('writes the same ledger records per repair whatever the ledger holds (20 or 400 records)', async () => {
    const written = async (count: number) => {
      const { ledger, kernel, drift, drain } = await agent(Array.from({ length: count }, (_, i) => policyResource(i)), `size-${count}`);
      const commits: LedgerCommit[] = [];
      const commit = ledger.commit.bind(ledger);
      ledger.commit = (changes) => {
        commits.push(changes);
        return commit(changes);
      };
      kernel.foreign({ op: 'delete-policy', id: policyAt(5).id });
      drift.observe({ kind: 'policy-deleted', policy: policyAt(5), origin: FOREIGN });
      expect(await drain()).toEqual(['targeted']);
      expect(ledger.records().size).toBe(count);
      return commits.map((changes) => ({ set: changes.set?.length ?? 0, remove: changes.remove?.length ?? 0, usage: changes.usage?.length ?? 0 }));
    };
    const small = await written(20);
    expect(small.length).toBeGreaterThan(0);
    expect(await written(400)).toEqual(small);
  });

  it('waits for the full pass when the desired tables changed since the last one', async () => {
    const { kernel, worker, drift, queued, drain, passes } = await agent([policyResource(1)]);
    kernel.foreign({ op: 'delete-policy', id: policyAt(1).id });
    worker.desiredChanged(); // a cache change (its full pass is queued by the agent)
    drift.observe({ kind: 'policy-deleted', policy: policyAt(1), origin: FOREIGN });
    expect(queued).toEqual(['targeted']); // ours by the ledger
    await drain();
    expect(kernel.policies).toEqual([]); // left for the full pass
    queued.push('full');
    await drain();
    expect(kernel.policies).toHaveLength(1);
    expect(await passes()).toEqual({ targeted: 0, full: 1 });
  });
});

describe('a drift during a full pass is repaired at the pass\'s safe points, not after it', () => {
  /** Runs `during` once, inside the n-th dump of the kernel from now (before or after it reads). */
  function duringDump(kernel: FakeKernel, when: 'before-read' | 'after-read', during: () => void, nth = 1) {
    const dump = kernel.dump.bind(kernel);
    let seen = 0;
    kernel.dump = async () => {
      seen += 1;
      if (seen !== nth) return dump();
      if (when === 'before-read') during();
      const observed = await dump();
      if (when === 'after-read') during();
      return observed;
    };
  }

  it('a deletion after the pass read the kernel: repaired once after its kernel stage, before its closing dump and its report', async () => {
    const { kernel, drift, queued, drain, reports, passes, worker } = await agent([policyResource(1), policyResource(2), policyResource(3)]);
    const key = policyKey(policyAt(2).id);
    const order: string[] = [];
    duringDump(kernel, 'after-read', () => {
      kernel.foreign({ op: 'delete-policy', id: policyAt(2).id });
      drift.observe({ kind: 'policy-deleted', policy: policyAt(2), origin: FOREIGN });
    });
    const dump = kernel.dump.bind(kernel);
    kernel.dump = async () => {
      order.push('dump');
      return dump();
    };
    const log = kernel.log.length;
    const reportsBefore = reports.length;
    await worker.reconcile(NODE_KEY); // the resync; its plan (from the dump before the deletion) is empty
    expect(kernel.log.slice(log)).toEqual(['delete-policy', 'add-policy']); // the foreign deletion, the repair's add once
    expect(order).toEqual(['dump', 'dump']); // the pass's survey, then its closing dump, which saw the repair
    expect(reports).toHaveLength(reportsBefore + 1);
    expect(reports.at(-1)!.kernelPolicies).toBe(3);
    expect(ledger(worker).records().get(key)).toMatchObject({ phase: 'present' });
    // The queue's drift key, run after the pass, finds nothing left.
    expect(queued).toEqual(['targeted']);
    const after = kernel.log.length;
    await drain();
    expect(kernel.log.length).toBe(after);
    expect(await passes()).toEqual({ targeted: 1, full: 0 });
  });

  it('a deletion the pass\'s own dump already saw: the pass re-adds it, the repair at its next safe point finds it present (no second add)', async () => {
    const { kernel, drift, drain, worker } = await agent([policyResource(1), policyResource(2)]);
    const key = policyKey(policyAt(2).id);
    duringDump(kernel, 'before-read', () => {
      kernel.foreign({ op: 'delete-policy', id: policyAt(2).id });
      drift.observe({ kind: 'policy-deleted', policy: policyAt(2), origin: FOREIGN });
    });
    const log = kernel.log.length;
    await worker.reconcile(NODE_KEY);
    await drain();
    expect(kernel.log.slice(log)).toEqual(['delete-policy', 'add-policy']); // the foreign deletion, then one add
    expect(kernel.policies.filter((entry) => policyKey(entry.id) === key)).toHaveLength(1);
    expect(ledger(worker).records().get(key)).toMatchObject({ phase: 'present', incarnation: { index: kernel.policies.find((entry) => policyKey(entry.id) === key)!.index } });
  });

  it('while the caches changed mid-pass the inline repair waits: the full pass the change queued repairs it', async () => {
    const { kernel, drift, queued, drain, worker, passes } = await agent([policyResource(1)]);
    duringDump(kernel, 'after-read', () => {
      kernel.foreign({ op: 'delete-policy', id: policyAt(1).id });
      worker.desiredChanged();
      queued.push('full');
      drift.observe({ kind: 'policy-deleted', policy: policyAt(1), origin: FOREIGN });
    });
    await worker.reconcile(NODE_KEY);
    expect(kernel.policies).toEqual([]); // not repaired against the stale basis
    await drain();
    expect(kernel.policies).toHaveLength(1);
    expect(await passes()).toEqual({ targeted: 0, full: 1 });
  });

  it('the safe point before a dump runs until the pass applies anything, never after', async () => {
    const kernel = new FakeKernel();
    const points: string[] = [];
    const seen = withSafePointBeforeDump(kernel as never, async () => void points.push('safe point'));
    await seen.dump();
    await seen.read({ states: [], policies: [] });
    await seen.dump(); // a second survey (a retired SA), still nothing of the pass applied
    expect(points).toHaveLength(2);
    await seen.apply([{ op: 'add-policy', policy: policyAt(1) }]);
    await seen.dump(); // the verifying dump of the pass's own changes
    expect(points).toHaveLength(2);
    expect(kernel.dumps).toBe(3);
  });
});

describe('the ledger compaction is off the repair\'s path', () => {
  const generationOf = async (path: string) => (JSON.parse(await readFile(path, 'utf8')) as { generation: number }).generation;

  it('with deferCompaction a commit past compactAfterLines does not rewrite the snapshot; the full pass does, after it', async () => {
    const { kernel, drift, drain, worker } = await agent([policyResource(1), policyResource(2)], 'deferred', { compactAfterLines: 4, deferCompaction: true });
    const path = join(directory, 'deferred.json');
    const before = await generationOf(path);
    for (let round = 0; round < 3; round++) {
      kernel.foreign({ op: 'delete-policy', id: policyAt(1).id });
      drift.observe({ kind: 'policy-deleted', policy: policyAt(1), origin: FOREIGN });
      await drain(); // two journal lines per repair
    }
    expect(await generationOf(path)).toBe(before); // 6 lines past 4: no rewrite on the repairs' path
    await worker.reconcile(NODE_KEY);
    expect(await generationOf(path)).toBe(before + 1);
  });

  it('the journal stays bounded: a commit still compacts at DEFERRED_COMPACTION_FACTOR times the threshold', async () => {
    const path = join(directory, 'bounded.json');
    const ledger = await Ledger.open(path, { compactAfterLines: 2, deferCompaction: true });
    ledgers.push(ledger);
    const before = await generationOf(path);
    const usageKey = 'k';
    for (let line = 1; line < 2 * DEFERRED_COMPACTION_FACTOR; line++) await ledger.commit({ usage: [retiredUsage(`${usageKey}${line}`, undefined, 'expired', 'test', 1)] });
    expect(await generationOf(path)).toBe(before);
    await ledger.commit({ usage: [retiredUsage(`${usageKey}last`, undefined, 'expired', 'test', 1)] });
    expect(await generationOf(path)).toBe(before + 1);
    expect(await ledger.compactIfDue()).toBe(false); // the journal was just emptied
  });
});

function ledger(worker: NodeWorker): Ledger {
  return (worker as unknown as { parts: { kernel: { handles(): { ledger: Ledger } } } }).parts.kernel.handles().ledger;
}
