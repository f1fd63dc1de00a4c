/**
 * The sequence watch (src/agent/sequence-watch.ts): the kernel's AEVENTS reports of owned
 * outbound SAs become sequence marks at threshold crossings, not per report; and the ledger's
 * raiseMarks, which never lowers a mark nor revives a retired key, serialised with commits.
 * The watch runs here against an in-memory store; raiseMarks against the real ledger on disk.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { SequenceWatch, type MarkStore } from '../../src/agent/sequence-watch.js';
import { PERSIST_STEP } from '../../src/engine/sequence-rule.js';
import { Ledger } from '../../src/ownership/ledger.js';
import type { KeyUsage } from '../../src/ownership/usage.js';
import type { SequenceReport } from '../../src/xfrm/aevent-codec.js';
import { SEQUENCE_REPORT_PACKETS } from '../../src/xfrm/messages.js';
import type { SecurityAssociation, StateId } from '../../src/xfrm/types.js';
import { sa } from '../support/entries.js';
import { stateKey } from '../../src/plan/identity.js';
import { MemoryOwnership, observe, presentRecords } from '../support/ownership.js';

const ADD_TIME = 1_700_000_000;

/** An in-memory store whose raiseMarks keeps the higher mark (the rule the real ledger is tested for below). */
class MarkMemory extends MemoryOwnership implements MarkStore {
  raised: KeyUsage[][] = [];
  async raiseMarks(marks: readonly KeyUsage[]): Promise<number> {
    if (this.failWith) throw this.failWith;
    this.raised.push([...marks]);
    for (const mark of marks) this.usageEntries.set(mark.key, mark);
    return marks.length;
  }
}

function report(id: StateId, sequence: bigint, options: { addTime?: number; esnFormat?: boolean; threshold?: number } = {}): SequenceReport {
  return {
    id,
    source: '10.0.0.1',
    reqid: 1,
    cause: 'threshold',
    esnFormat: options.esnFormat ?? false,
    replayState: { outboundSequence: Number(sequence & 0xffff_ffffn), outboundSequenceHigh: Number(sequence >> 32n), inboundSequence: 0, inboundSequenceHigh: 0, bitmapLength: 1 },
    current: { bytes: 0n, packets: sequence, addTime: BigInt(options.addTime ?? ADD_TIME), useTime: 0n },
    ...(options.threshold === undefined ? {} : { replayThreshold: options.threshold }),
  };
}

function setup(entries: SecurityAssociation[], owned = entries) {
  const store = new MarkMemory(presentRecords(owned));
  let now = ADD_TIME + 10;
  const thresholds: { id: StateId; packets: number }[] = [];
  const reads: StateId[] = [];
  let kernelThreshold = 2;
  const failures: string[] = [];
  const watch = new SequenceWatch({
    store: () => store,
    threshold: SEQUENCE_REPORT_PACKETS,
    now: () => now,
    kernel: () => ({
      readSequence: async (id) => {
        reads.push(id);
        return report(id, 0n, { threshold: kernelThreshold });
      },
      setReplayThreshold: async (id, packets) => void thresholds.push({ id, packets }),
    }),
    failed: (what) => failures.push(what),
  });
  return {
    store,
    watch,
    thresholds,
    reads,
    failures,
    advance: (seconds: number) => (now += seconds),
    kernelThreshold: (value: number) => (kernelThreshold = value),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('the sequence watch', () => {
  const outbound = observe(sa({ spi: 0x100, direction: 'out' }), { addTime: ADD_TIME });

  it('persists the first report of an owned outbound SA as its mark, and then only at threshold crossings or after the interval', async () => {
    const { store, watch, advance } = setup([outbound]);
    watch.track([outbound]);
    const key = store.usageKey(outbound);
    watch.observe(report(outbound.id, 20n));
    await watch.flush();
    expect(store.usage(key)).toMatchObject({ mark: 20n, state: 'live' });
    // The next report a second later measures the rate (none is known yet): written.
    advance(1);
    watch.observe(report(outbound.id, 1020n));
    await watch.flush();
    expect(store.usage(key)).toMatchObject({ mark: 1020n, rate: 1000 });
    const writes = store.raised.length;
    // Timer reports below PERSIST_STEP within the interval: no write.
    for (let step = 2; step <= 5; step += 1) {
      advance(1);
      watch.observe(report(outbound.id, 20n + BigInt(step) * 1000n));
    }
    await watch.flush();
    expect(store.raised.length).toBe(writes);
    // A report PERSIST_STEP (= SEQUENCE_REPORT_PACKETS, the kernel's threshold) past the mark is written.
    advance(1);
    watch.observe(report(outbound.id, 1020n + PERSIST_STEP));
    await watch.flush();
    expect(store.raised.length).toBe(writes + 1);
    expect(store.usage(key)).toMatchObject({ mark: 1020n + PERSIST_STEP });
    expect(store.usage(key)?.rate).toBeGreaterThan(0);
    expect(watch.reports).toBe(7);
  });

  it('ignores reports of SAs it does not own, of inbound SAs, of SAs no pass has tracked, and of another incarnation', async () => {
    const foreign = observe(sa({ spi: 0x200, direction: 'out' }), { addTime: ADD_TIME });
    const inbound = observe(sa({ spi: 0x300, source: '10.0.0.2', destination: '10.0.0.1', direction: 'in' }), { addTime: ADD_TIME });
    const untracked = observe(sa({ spi: 0x400, direction: 'out' }), { addTime: ADD_TIME });
    const { store, watch } = setup([outbound, foreign, inbound, untracked], [outbound, inbound, untracked]);
    watch.track([outbound, foreign, inbound]);
    watch.observe(report(foreign.id, 50n));
    watch.observe(report(inbound.id, 50n));
    watch.observe(report(untracked.id, 50n));
    watch.observe(report(outbound.id, 50n, { addTime: ADD_TIME + 99 })); // the SA was replaced since the pass
    await watch.flush();
    expect(store.raised).toEqual([]);
    expect(watch.reports).toBe(0);
  });

  it('after a targeted repair, counts the reports of the SA added again and keeps tracking the others', async () => {
    const other = observe(sa({ spi: 0x600, direction: 'out' }), { addTime: ADD_TIME });
    const readded = observe(sa({ spi: 0x100, direction: 'out' }), { addTime: ADD_TIME + 99 });
    const { store, watch } = setup([readded, other]); // the ledger settled the new incarnation
    watch.track([outbound, other]);
    watch.observe(report(readded.id, 50n, { addTime: ADD_TIME + 99 }));
    expect(watch.reports).toBe(0); // another incarnation than the last dump's
    watch.retrack(new Set([stateKey(readded.id)]), [readded]);
    watch.observe(report(readded.id, 60n, { addTime: ADD_TIME + 99 }));
    watch.observe(report(other.id, 70n));
    await watch.flush();
    expect(watch.reports).toBe(2);
    expect(store.usage(store.usageKey(readded))?.mark).toBe(60n);
    expect(store.usage(store.usageKey(other))?.mark).toBe(70n);
  });

  it('counts 64 bits for an ESN SA', async () => {
    const esn = observe(sa({ spi: 0x500, esn: true, replayWindow: 128 }), { addTime: ADD_TIME });
    const { store, watch } = setup([esn]);
    watch.track([esn]);
    watch.observe(report(esn.id, (3n << 32n) + 9n, { esnFormat: true }));
    await watch.flush();
    expect(store.usage(store.usageKey(esn))?.mark).toBe((3n << 32n) + 9n);
  });

  it('sets the replay threshold of an owned SA that reports too often, once per incarnation', async () => {
    const { watch, thresholds, reads, kernelThreshold } = setup([outbound]);
    watch.track([outbound]);
    await settle();
    expect(thresholds).toEqual([{ id: outbound.id, packets: SEQUENCE_REPORT_PACKETS }]);
    watch.track([outbound]);
    await settle();
    expect(reads).toHaveLength(1);
    kernelThreshold(SEQUENCE_REPORT_PACKETS);
    const replaced = { ...outbound, observed: { ...outbound.observed!, current: { ...outbound.observed!.current, addTime: BigInt(ADD_TIME + 5) } } };
    const { watch: second, thresholds: set, kernelThreshold: threshold } = setup([replaced]);
    threshold(SEQUENCE_REPORT_PACKETS);
    second.track([replaced]);
    await settle();
    expect(set).toEqual([]); // already right: nothing sent
  });

  it('a failed write is reported and the next due report writes again', async () => {
    const { store, watch, failures, advance } = setup([outbound]);
    watch.track([outbound]);
    store.failWith = new Error('ENOSPC');
    watch.observe(report(outbound.id, 10n));
    await watch.flush();
    expect(failures).toEqual(['persisting sequence marks']);
    store.failWith = undefined;
    advance(2);
    watch.observe(report(outbound.id, 11n));
    await watch.flush();
    expect(store.usage(store.usageKey(outbound))?.mark).toBe(11n);
  });
});

describe("the ledger's raiseMarks", () => {
  let directory: string;
  let ledger: Ledger;
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'ipsecop-marks-'));
    ledger = await Ledger.open(join(directory, 'ledger.json'));
  });
  afterEach(async () => {
    await ledger.close();
    await rm(directory, { recursive: true, force: true });
  });
  const key = 'ab'.repeat(32);
  const live = (mark: bigint): KeyUsage => ({ key, mark, seenAt: 100, state: 'live' });

  it('writes a first mark and a higher one, never a lower one', async () => {
    expect(await ledger.raiseMarks([live(10n)])).toBe(1);
    expect(await ledger.raiseMarks([live(5n)])).toBe(0);
    expect(ledger.usage(key)?.mark).toBe(10n);
    expect(await ledger.raiseMarks([live(30n)])).toBe(1);
    expect(ledger.usage(key)?.mark).toBe(30n);
  });

  it('never revives a key retired meanwhile', async () => {
    await ledger.commit({ usage: [{ ...live(10n), state: 'expired', why: 'hard lifetime' }] });
    expect(await ledger.raiseMarks([live(99n)])).toBe(0);
    expect(ledger.usage(key)?.state).toBe('expired');
  });

  it('runs one at a time with commits issued at once: the journal reads back whole', async () => {
    const keys = Array.from({ length: 20 }, (_, index) => index.toString(16).padStart(2, '0').repeat(32));
    await Promise.all(keys.map((name, index) => (index % 2 === 0 ? ledger.commit({ usage: [{ key: name, mark: BigInt(index), seenAt: 1, state: 'live' }] }) : ledger.raiseMarks([{ key: name, mark: BigInt(index), seenAt: 1, state: 'live' }]))));
    await ledger.close();
    ledger = await Ledger.open(join(directory, 'ledger.json'));
    expect(keys.map((name) => ledger.usage(name)?.mark)).toEqual(keys.map((_, index) => BigInt(index)));
  });
});
