/**
 * Crash injection: the engine is stopped at every await point of a state-changing run in turn
 * (every ledger write step, every dump, every kernel batch, and inside every batch after each
 * change), then restarted from what is on disk and in the kernel, and run to the end. After
 * each restart the invariants of ownership must hold:
 *   - no foreign entry was changed (near-identical ones included: same selector with another
 *     mark, mask, if_id or type; an SA with the same SPI under a mark our lookups cannot hit);
 *   - no own entry leaked (in the kernel, ours, without a record) or was disowned;
 *   - the desired state is reached, and a further `diff --prune` plans nothing;
 *   - the ledger is consistent with the kernel: every record is settled and proves an entry.
 *
 * A "stop" is a promise that never settles: nothing after it runs, exactly as when the process
 * is killed there (no catch block, no rollback, no cleanup runs). The restarted engine is a new
 * Ledger on the same files and the same kernel.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { KernelChange, KernelOutcome } from '../../src/apply/applier.js';
import { converge, planFor, type KernelTables } from '../../src/engine/converge.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { provesOwnership } from '../../src/ownership/settle.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import type { DesiredTables, ObservedTables } from '../../src/plan/planner.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { policy, sa } from '../support/entries.js';

const directories: string[] = [];
/** Trials of the refused-new-key run that ended with the install mark kept (see there). */
let keptMarks = 0;
afterAll(async () => {
  for (const directory of directories) await rm(directory, { recursive: true, force: true });
});

/** Counts await points; at point `stopAt` it never returns (and nothing else runs after it). */
/**
 * The wall clock of every trial, the kernel's add times and the engine's marks and intents alike:
 * it stands still. Trial k stops at the k-th await point of the run that trial k + 1 repeats, so
 * every trial must take the same path up to its stop; with the real clock a second that turned
 * within a run changed it (an SA added more than the intent clock slack before a mark counts
 * differently), and a loaded machine then skipped points and even failed a count of them. What a
 * turning second does to the sequence rule is tested in sequence-rule.test.ts.
 */
const FROZEN_SECONDS = 1_800_000_000;
const frozenClock = (): number => FROZEN_SECONDS;

class Stopper {
  count = 0;
  stoppedAt: string | undefined;
  /** Set from a batch with a refused change until the next batch: names the ledger writes in between. */
  afterRefusal = false;
  #reached: () => void = () => undefined;
  /** Settles when the run reaches the stop. */
  readonly reached = new Promise<void>((resolve) => (this.#reached = resolve));
  constructor(readonly stopAt: number) {}
  async point(label: string): Promise<void> {
    if (this.stoppedAt !== undefined) return new Promise(() => undefined);
    this.count += 1;
    if (this.count === this.stopAt) {
      this.stoppedAt = label;
      this.#reached();
      return new Promise(() => undefined);
    }
  }
}

/** The fake kernel behind await points: before each dump and batch, and after each change of a batch. */
function stoppable(kernel: FakeKernel, stopper: Stopper): KernelTables {
  return {
    async dump(): Promise<ObservedTables> {
      await stopper.point('kernel:dump');
      return kernel.dump();
    },
    async apply(changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]> {
      await stopper.point(`kernel:batch(${changes.length})`);
      stopper.afterRefusal = false;
      const outcomes: KernelOutcome[] = [];
      for (const [position, change] of changes.entries()) {
        outcomes.push((await kernel.apply([change]))[0]!);
        if (position < changes.length - 1) await stopper.point(`kernel:after ${change.op}`);
      }
      stopper.afterRefusal = outcomes.some((outcome) => !outcome.ok);
      return outcomes;
    },
  };
}

const keyOf = (entry: SecurityAssociation | SecurityPolicy) => ('templates' in entry ? policyKey(entry.id) : stateKey(entry.id));
const withoutCounters = (entry: SecurityAssociation | SecurityPolicy) => JSON.stringify(entry, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));

// ---- the scenario: state A applied, then a run to state B is stopped somewhere ----

const MARK = { value: 1, mask: 0xff };
const ours = {
  inSa: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x200, reqid: 2 }),
  outSa: sa({ spi: 0x100, mark: MARK }),
  doomedSa: sa({ spi: 0x300, destination: '10.0.0.3' }),
  inPolicy: policy({ direction: 'in', selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] }),
  outPolicy: policy({ mark: MARK }),
  doomedPolicy: policy({ selector: { source: '10.0.0.1/32', destination: '10.0.0.3/32' } }),
};
const stateA: DesiredTables = {
  states: [
    { resource: 'SecurityAssociation/in', entry: ours.inSa },
    { resource: 'SecurityAssociation/out', entry: ours.outSa },
    { resource: 'SecurityAssociation/doomed', entry: ours.doomedSa },
  ],
  policies: [
    { resource: 'IpsecPolicy/in', entry: ours.inPolicy },
    { resource: 'IpsecPolicy/out', entry: ours.outPolicy },
    { resource: 'IpsecPolicy/doomed', entry: ours.doomedPolicy },
  ],
};
/** Creates, in-place updates (SA lifetime, policy priority), a replacement (new key), deletions. */
const stateB: DesiredTables = {
  states: [
    { resource: 'SecurityAssociation/in', entry: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x200, reqid: 2, aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128b' } } }) },
    { resource: 'SecurityAssociation/out', entry: sa({ spi: 0x100, mark: MARK, lifetime: { hard: { addExpiresSeconds: 3600 } } }) },
    { resource: 'SecurityAssociation/new', entry: sa({ spi: 0x400, destination: '10.0.0.4' }) },
  ],
  policies: [
    { resource: 'IpsecPolicy/in', entry: ours.inPolicy },
    { resource: 'IpsecPolicy/out', entry: policy({ mark: MARK, priority: 50 }) },
    { resource: 'IpsecPolicy/new', entry: policy({ selector: { source: '10.0.0.1/32', destination: '10.0.0.4/32' } }) },
  ],
};
/** Someone else's entries, several of them one field away from ours. */
const foreign: ObservedTables = {
  states: [
    sa({ spi: 0x100, mark: { value: 2, mask: 0xff }, reqid: 9 }), // same SPI/destination, a mark our lookups cannot hit
    sa({ spi: 0x100, destination: '10.0.0.9', reqid: 9 }),
    sa({ spi: 0x999, destination: '192.0.2.1', source: '192.0.2.2', reqid: 9 }),
  ],
  policies: [
    policy({ mark: { value: 1, mask: 0x0f } }), // same selector, another mask
    policy({ mark: { value: 3, mask: 0xff } }), // same selector, another mark
    policy({ interfaceId: 7 }), // same selector, an if_id
    policy({ type: 'sub' }), // same selector, the other policy type
    policy({ selector: { source: '10.0.0.1/32', destination: '10.0.0.2/32', protocol: 'tcp' }, priority: 7 }),
  ],
};

interface Trial {
  readonly stopAt: number;
  readonly stoppedAt: string | undefined;
  readonly points: number;
}

interface TrialOptions {
  /** Adds the kernel refuses (EINVAL), in the stopped run and after the restart. */
  readonly refuse?: (entry: SecurityAssociation | SecurityPolicy) => boolean;
  /** A new key among the refused adds: after the restart it must have no install mark, and install as new once the kernel takes it. */
  readonly refusedNewKey?: SecurityAssociation;
}

async function trial(stopAt: number, options: TrialOptions = {}): Promise<Trial> {
  const directory = await mkdtemp(join(tmpdir(), 'ipsecop-crash-'));
  directories.push(directory);
  const path = join(directory, 'ledger.json');
  const kernel = new FakeKernel(foreign);
  kernel.clock = frozenClock;
  const foreignBefore = (await kernel.dump());
  const foreignSnapshot = [...foreignBefore.states, ...foreignBefore.policies].map(withoutCounters).sort();

  // State A, cleanly.
  const setup = await Ledger.open(path);
  const applied = await converge(kernel, setup, { desired: stateA, prune: true, dryRun: false, now: frozenClock });
  expect(applied.outcome).toBe('applied');
  await setup.close();

  // The run to B, stopped at point `stopAt`.
  const stopper = new Stopper(stopAt);
  const crashing = await Ledger.open(path, { checkpoint: (label) => stopper.point(`ledger:${label}${stopper.afterRefusal ? ' (after a refusal)' : ''}`), compactAfterLines: 3 });
  if (options.refuse) kernel.refuse = options.refuse;
  const run = converge(stoppable(kernel, stopper), crashing, { desired: stateB, prune: true, dryRun: false, now: frozenClock });
  const finished = await Promise.race([run.then(() => true), stopper.reached.then(() => false)]);
  expect(finished).toBe(stopper.stoppedAt === undefined);
  await crashing.close(); // the kernel drops a dead process's lock

  // Restart, and run to the end.
  const restarted = await Ledger.open(path);
  try {
    const result = await converge(kernel, restarted, { desired: stateB, prune: true, dryRun: false, now: frozenClock });
    const observed = await kernel.dump();
    const all = [...observed.states, ...observed.policies];

    // No foreign entry changed.
    const foreignKeys = new Set([...foreignBefore.states, ...foreignBefore.policies].map(withoutCounters));
    const foreignNow = all.map(withoutCounters).filter((entry) => foreignKeys.has(entry)).sort();
    expect(foreignNow, `stopped at ${stopper.stoppedAt}`).toEqual(foreignSnapshot);

    // A refused run rolls back to where *it* started: after a stop mid-way through the first
    // run, that is some mix of A and B (an SA the stop had deleted cannot be brought back:
    // nothing but the kernel held its key). So: entries of ours are of A or B, never others.
    const desired = options.refuse ? { states: [...stateA.states, ...stateB.states], policies: [...stateA.policies, ...stateB.policies] } : stateB;
    const desiredKeys = new Set([...desired.states, ...desired.policies].map(({ entry }) => keyOf(entry)));
    const records = restarted.records();
    // Every kernel entry is foreign or ours with a record that proves it; nothing ours is missing.
    for (const entry of all) {
      if (foreignKeys.has(withoutCounters(entry))) continue;
      const record = records.get(keyOf(entry));
      expect(record, `leaked after a stop at ${stopper.stoppedAt}: ${keyOf(entry)}`).toBeDefined();
      expect(provesOwnership(record!, entry, restarted), `disowned after a stop at ${stopper.stoppedAt}: ${keyOf(entry)}`).toBeDefined();
      expect(desiredKeys.has(keyOf(entry)), `left behind after a stop at ${stopper.stoppedAt}: ${keyOf(entry)}`).toBe(true);
    }
    // The ledger holds settled records only, one per entry of ours.
    expect([...records.values()].every((record) => record.phase === 'present'), `unsettled records after a stop at ${stopper.stoppedAt}`).toBe(true);
    expect(records.size, `stopped at ${stopper.stoppedAt}`).toBe(all.length - foreignSnapshot.length);
    if (!options.refuse) expect(all.length, `stopped at ${stopper.stoppedAt}`).toBe(foreignSnapshot.length + desiredKeys.size);

    if (options.refuse) {
      expect(result.outcome).toBe('failed');
      if (options.refusedNewKey) {
        // A stop after the install mark was durable and before the write that settles the
        // refused SA's record leaves a mark the restart cannot tell from a key that did run (the
        // add may have happened and the SA been flushed since): it keeps it, the careful side. A
        // run that was not stopped, or stopped before the mark, leaves none: the settling write
        // forgot it with the record.
        const usageKey = restarted.usageKey(options.refusedNewKey);
        const kept = restarted.usage(usageKey);
        if (kept) expect(stopper.stoppedAt, 'a mark left by a run that was not stopped').toBeDefined();
        // The cause fixed (the module loaded): the key installs, as new or resumed past the
        // kept mark, never from a restarted counter over a mark.
        kernel.refuse = () => false;
        const fixed = await converge(kernel, restarted, { desired: stateB, prune: true, dryRun: false, now: frozenClock });
        expect(fixed.sequence, `stopped at ${stopper.stoppedAt}`).toEqual([]);
        expect(fixed.outcome, `stopped at ${stopper.stoppedAt}`).toBe('applied');
        const installed = (await kernel.dump()).states.find((held) => keyOf(held) === keyOf(options.refusedNewKey!));
        expect(installed, `stopped at ${stopper.stoppedAt}`).toBeDefined();
        const replay = installed!.observed!.replayState!;
        const sequence = (BigInt(replay.outboundSequenceHigh) << 32n) | BigInt(replay.outboundSequence);
        if (kept) expect(sequence > kept.mark, `resumed at ${sequence}, the kept mark is ${kept.mark}; stopped at ${stopper.stoppedAt}`).toBe(true);
        else expect(sequence, `a new key starts at 0; stopped at ${stopper.stoppedAt}`).toBe(0n);
        keptMarks += kept ? 1 : 0;
      }
    } else {
      expect(result.outcome, `stopped at ${stopper.stoppedAt}`).toBe('applied');
      // diff --prune: nothing to do.
      const again = await planFor(kernel, restarted, { desired: stateB, prune: true, now: frozenClock });
      expect(again.steps, `stopped at ${stopper.stoppedAt}`).toEqual([]);
      expect(again.conflicts).toEqual([]);
      // The contents are B's (keys included): compare what the planner compares.
      for (const { entry } of [...stateB.states, ...stateB.policies]) expect(all.some((held) => keyOf(held) === keyOf(entry))).toBe(true);
    }
  } finally {
    await restarted.close();
  }
  return { stopAt, stoppedAt: stopper.stoppedAt, points: stopper.count };
}

async function everyPoint(options: TrialOptions = {}): Promise<Trial[]> {
  const trials: Trial[] = [];
  for (let stopAt = 1; ; stopAt++) {
    const result = await trial(stopAt, options);
    trials.push(result);
    if (result.stoppedAt === undefined) break; // the run finished before reaching the point: every point was tried
    if (stopAt > 500) throw new Error('more than 500 await points: runaway');
  }
  return trials;
}

function table(title: string, trials: readonly Trial[]): void {
  const lines = trials.map((t) => `  ${String(t.stopAt).padStart(3)}  ${t.stoppedAt ?? '(ran to the end)'}`);
  console.log(`${title}: ${trials.length - 1} await points, every invariant held after each stop\n${lines.join('\n')}`);
}

/**
 * A hand flush of our outbound SA, repaired on a kernel that acknowledges the resume value and
 * drops it: stopped at every point (the install mark, the add, the read-back, the key's
 * retirement, the delete), restarted on the same kernel. Whatever the stop, the key never keeps
 * running from a restarted counter: after the restart it is not in the kernel, its history says
 * `needs-rekey`, and the ledger is settled.
 */
async function resumeTrial(stopAt: number): Promise<Trial> {
  const directory = await mkdtemp(join(tmpdir(), 'ipsecop-crash-resume-'));
  directories.push(directory);
  const path = join(directory, 'ledger.json');
  const kernel = new FakeKernel(foreign);
  kernel.clock = frozenClock;
  const setup = await Ledger.open(path);
  expect((await converge(kernel, setup, { desired: stateA, prune: true, dryRun: false, now: frozenClock })).outcome).toBe('applied');
  await setup.close();
  kernel.send(ours.outSa.id, 1000);
  kernel.foreign({ op: 'delete-state', id: ours.outSa.id }); // the hand flush
  kernel.ignoreResume = true;

  const stopper = new Stopper(stopAt);
  const crashing = await Ledger.open(path, { checkpoint: (label) => stopper.point(`ledger:${label}`), compactAfterLines: 3 });
  const run = converge(stoppable(kernel, stopper), crashing, { desired: stateA, prune: true, dryRun: false, now: frozenClock, conflicts: 'skip' });
  await Promise.race([run, stopper.reached]);
  await crashing.close();

  const restarted = await Ledger.open(path);
  try {
    const result = await converge(kernel, restarted, { desired: stateA, prune: true, dryRun: false, now: frozenClock, conflicts: 'skip' });
    expect(result.sequence.map((refusal) => refusal.reason), `stopped at ${stopper.stoppedAt}`).toEqual(['NeedsRekey']);
    const observed = await kernel.dump();
    const mine = observed.states.filter((held) => keyOf(held) === keyOf(ours.outSa));
    expect(mine, `a restarted counter left running after a stop at ${stopper.stoppedAt}`).toEqual([]);
    expect(restarted.usage(restarted.usageKey(ours.outSa))?.state, `stopped at ${stopper.stoppedAt}`).toBe('needs-rekey');
    expect([...restarted.records().values()].every((record) => record.phase === 'present'), `unsettled records after a stop at ${stopper.stoppedAt}`).toBe(true);
    // Everything else of state A is still there.
    for (const { entry } of [...stateA.states, ...stateA.policies]) {
      if (entry === ours.outSa) continue;
      expect(observed.states.some((held) => keyOf(held) === keyOf(entry)) || observed.policies.some((held) => keyOf(held) === keyOf(entry))).toBe(true);
    }
  } finally {
    await restarted.close();
  }
  return { stopAt, stoppedAt: stopper.stoppedAt, points: stopper.count };
}

describe('crash injection at every await point of the applier and the ledger', () => {
  it('a flushed SA restored on a kernel that drops the resume value, stopped at every point of the proof and the retirement', async () => {
    const trials: Trial[] = [];
    for (let stopAt = 1; ; stopAt++) {
      const result = await resumeTrial(stopAt);
      trials.push(result);
      if (result.stoppedAt === undefined) break;
      if (stopAt > 200) throw new Error('more than 200 await points: runaway');
    }
    expect(trials.length).toBeGreaterThan(6);
    table('flushed SA, resume dropped by the kernel', trials);
  }, 120_000);

  it('a run with creates, in-place updates, a replacement and deletes, foreign look-alikes present', async () => {
    const trials = await everyPoint();
    expect(trials.length).toBeGreaterThan(12);
    const labels = new Set(trials.map((t) => t.stoppedAt?.replace(/\(.*\)/, '')));
    for (const label of ['kernel:dump', 'kernel:batch', 'ledger:journal:append', 'ledger:journal:written', 'ledger:journal:synced', 'ledger:snapshot:write', 'ledger:snapshot:written', 'ledger:journal:reset']) {
      expect(labels.has(label), `no stop at ${label}`).toBe(true);
    }
    expect([...labels].some((label) => label?.startsWith('kernel:after'))).toBe(true);
    table('run A → B', trials);
  }, 120_000);

  it('a run the kernel refuses half-way, stopped at every point of its rollback too', async () => {
    const refused = stateB.policies[2]!.entry;
    const trials = await everyPoint({ refuse: (entry) => entry === refused });
    expect(trials.length).toBeGreaterThan(10);
    table('run A → B refused at its last stage, rolled back', trials);
  }, 120_000);

  it('a run whose new SA the kernel refuses, stopped at every point, the forgetting of its install mark included', async () => {
    const refused = stateB.states[2]!.entry;
    const trials = await everyPoint({ refuse: (entry) => 'spi' in entry.id && keyOf(entry) === keyOf(refused), refusedNewKey: refused });
    expect(trials.length).toBeGreaterThan(10);
    // The writes after the refusal (the rollback's, the settling one that forgets the mark) were stops of their own.
    expect(trials.filter((t) => t.stoppedAt?.startsWith('ledger:') && t.stoppedAt.endsWith('(after a refusal)')).length, 'no stop between the refusal and the settling').toBeGreaterThan(2);
    // Both endings were reached: a stop in the window kept the mark (and the key resumed past it), others left none.
    expect(keptMarks).toBeGreaterThan(0);
    expect(keptMarks).toBeLessThan(trials.length);
    table('run A → B with its new SA refused, rolled back', trials);
  }, 120_000);
});
