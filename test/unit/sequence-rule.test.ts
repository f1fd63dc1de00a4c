/**
 * The sequence rule (src/engine/sequence-rule.ts) and the key usage history in the ledger
 * (format 3): margins, refusals, what survives a set-aside, migration and validation, and the
 * engine's read-back proof through converge with the CLI's `refuse` mode.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CEILING_RATE,
  PERSIST_INTERVAL_SECONDS,
  PERSIST_STEP,
  RATE_SAFETY,
  RESUME_FLOOR,
  decideResume,
  guardSequences,
  resumeMargin,
  resumeNotTaken,
  usageAtInstall,
  usageFromObservation,
} from '../../src/engine/sequence-rule.js';
import { converge } from '../../src/engine/converge.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { usageKeyOf, type KeyUsage } from '../../src/ownership/usage.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { MemoryOwnership, TEST_SALT, observe, presentRecords } from '../support/ownership.js';
import { sa, TEST_KEYS } from '../support/entries.js';

const KEY = 'a'.repeat(64);
const live = (mark: bigint, seenAt: number, rate?: number): KeyUsage => ({ key: KEY, mark, seenAt, ...(rate === undefined ? {} : { rate }), state: 'live' });

describe('the sequence rule', () => {
  it('installs a key without history from 0, and refuses one installed before without a mark', () => {
    const entry = sa();
    expect(decideResume({ sa: entry, usage: undefined, installedBefore: false, now: 100 })).toEqual({ kind: 'fresh' });
    expect(decideResume({ sa: entry, usage: undefined, installedBefore: true, now: 100 })).toMatchObject({ kind: 'refuse', reason: 'NeedsRekey' });
  });

  it('sizes the margin from the measured rate and the time since the mark, with a floor', () => {
    expect(resumeMargin({ rate: 0 }, 10)).toBe(RESUME_FLOOR);
    expect(resumeMargin({ rate: 100_000 }, 10)).toBe(BigInt(100_000 * RATE_SAFETY * 10));
    expect(resumeMargin({}, 3)).toBe(BigInt(CEILING_RATE * 3)); // no rate measured: the ceiling
    expect(resumeMargin({}, 0)).toBe(BigInt(CEILING_RATE)); // at least one second
    const decision = decideResume({ sa: sa(), usage: live(5000n, 100, 1000), installedBefore: true, now: 400 });
    expect(decision).toEqual({ kind: 'resume', sequence: 5000n + BigInt(1000 * RATE_SAFETY * 300) });
  });

  it('refuses when the margin leaves no sequence space: 2^32 without ESN, 2^64 with it', () => {
    const usage = live(1000n, 0); // no rate: an hour at the ceiling is about 6e10
    expect(decideResume({ sa: sa(), usage, installedBefore: true, now: 3600 })).toMatchObject({ kind: 'refuse', reason: 'NeedsRekey', why: expect.stringMatching(/no sequence space/) });
    expect(decideResume({ sa: sa({ esn: true, replayWindow: 128 }), usage, installedBefore: true, now: 3600 })).toMatchObject({ kind: 'resume' });
  });

  it('never installs an expired key, nor one the kernel did not resume', () => {
    expect(decideResume({ sa: sa(), usage: { ...live(1n, 0), state: 'expired' }, installedBefore: true, now: 1 })).toMatchObject({ kind: 'refuse', reason: 'Expired' });
    expect(decideResume({ sa: sa(), usage: { ...live(1n, 0), state: 'needs-rekey' }, installedBefore: true, now: 1 })).toMatchObject({ kind: 'refuse', reason: 'NeedsRekey' });
  });

  it('counts a hard add-expiry from the key\'s first install: past it the key is Expired, a re-install keeps the deadline', () => {
    const expiring = sa({ lifetime: { hard: { addExpiresSeconds: 30 } } });
    const first = usageAtInstall(KEY, 0n, 1000, undefined, expiring);
    expect(first.hardExpiresAt).toBe(1030);
    expect(usageAtInstall(KEY, 99n, 1020, first, expiring).hardExpiresAt).toBe(1030);
    expect(usageFromObservation(KEY, first, PERSIST_STEP, 1001)?.hardExpiresAt).toBe(1030);
    expect(decideResume({ sa: expiring, usage: first, installedBefore: true, now: 1029 })).toMatchObject({ kind: 'resume' });
    expect(decideResume({ sa: expiring, usage: first, installedBefore: true, now: 1030 })).toMatchObject({ kind: 'refuse', reason: 'Expired' });
    expect(usageAtInstall(KEY, 0n, 1000, undefined, sa()).hardExpiresAt).toBeUndefined();
  });

  it('leaves inbound SAs alone (they never send)', () => {
    expect(decideResume({ sa: { ...sa(), direction: 'in' }, usage: { ...live(1n, 0), state: 'expired' }, installedBefore: true, now: 1 })).toEqual({ kind: 'fresh' });
  });

  it('persists a mark at threshold crossings and when it is old, not per packet, and measures the peak rate', () => {
    expect(usageFromObservation(KEY, live(0n, 100, 5), 10n, 101)).toBeUndefined();
    expect(usageFromObservation(KEY, live(0n, 100, 5), PERSIST_STEP, 101)).toMatchObject({ mark: PERSIST_STEP, seenAt: 101, rate: Number(PERSIST_STEP) });
    expect(usageFromObservation(KEY, live(0n, 100, 5), 10n, 100 + PERSIST_INTERVAL_SECONDS)).toMatchObject({ mark: 10n, rate: 5 });
    expect(usageFromObservation(KEY, live(0n, 100), 30n, 110)).toMatchObject({ mark: 30n, rate: 3 }); // first measurement
    expect(usageFromObservation(KEY, live(50n, 100, 5), 10n, 1000)).toBeUndefined(); // a counter below the mark is never a mark
    expect(usageFromObservation(KEY, undefined, 7n, 1)).toEqual(live(7n, 1)); // an owned SA seen without history
  });

  it('proves a resume only when the counter read back is at least the value', () => {
    const held = (oseq: number) => ({ ...observe(sa()), observed: { ...observe(sa()).observed!, replayState: { outboundSequence: oseq, outboundSequenceHigh: 0, inboundSequence: 0, inboundSequenceHigh: 0, bitmapLength: 1 } } });
    expect(resumeNotTaken(100n, held(100))).toBeUndefined();
    expect(resumeNotTaken(100n, held(2))).toMatch(/did not take the resume value 100/);
    expect(resumeNotTaken(100n, undefined)).toMatch(/not found/);
  });

  it('gives an SA in the kernel with the same key the resume a replace needs; refuses only what would be installed', () => {
    const entry = sa({ spi: 0x100 });
    const inKernel = observe(entry);
    const ownership = new MemoryOwnership(presentRecords([inKernel]));
    const name = ownership.usageKey(entry);
    ownership.usageEntries.set(name, { ...live(0n, 0, 0), key: name });
    const desired = { states: [{ resource: 'SecurityAssociation/x', entry }], policies: [] };
    const present = guardSequences({ desired, observed: { states: [inKernel], policies: [] }, ownership, now: 10 });
    expect(present.refused).toEqual([]);
    expect(present.restarted).toEqual([]);
    expect(present.desired.states[0]!.entry.resumeSequence).toBe(RESUME_FLOOR);
    // Its counter below the mark of its key, added since the mark: it restarted, and must go.
    ownership.usageEntries.set(name, { ...live(5000n, 1_600_000_000, 0), key: name });
    const restarted = guardSequences({ desired, observed: { states: [inKernel], policies: [] }, ownership, now: 10 });
    expect(restarted.restarted).toEqual([expect.objectContaining({ resource: 'SecurityAssociation/x', why: expect.stringMatching(/below the mark/) })]);
    ownership.usageEntries.set(name, { ...live(0n, 0), key: name, state: 'expired' });
    expect(guardSequences({ desired, observed: { states: [inKernel], policies: [] }, ownership, now: 10 }).restarted).toHaveLength(1);
    const gone = guardSequences({ desired: { states: [{ resource: 'SecurityAssociation/x', entry }], policies: [] }, observed: { states: [], policies: [] }, ownership, now: 10 });
    expect(gone.desired.states).toEqual([]);
    expect(gone.refused).toEqual([expect.objectContaining({ resource: 'SecurityAssociation/x', reason: 'Expired' })]);
    expect(gone.refused[0]!.message).toMatch(/new SPI and a new key/);
    for (const key of Object.values(TEST_KEYS)) expect(gone.refused[0]!.message).not.toContain(key.toString('hex'));
  });

  it('a crash between a reservation and its kernel change: the SA added under the earlier reservation stays live, a restarted one does not', () => {
    // A switch replaced N in place with the same key (same SPI and key, another reqid) at R1; its
    // rollback reserved R2 for putting the previous content P back and was killed before the
    // kernel change: N is still in the kernel at R1, added a second before R2's mark.
    const R1 = 511_705_088n;
    const R2 = R1 + RESUME_FLOOR;
    const forward = sa({ spi: 0x100, reqid: 7 });
    const previous = sa({ spi: 0x100, reqid: 1 });
    const at = (entry: typeof forward, oseq: bigint) => observe({ ...entry, resumeSequence: oseq }, { addTime: 1_700_000_000 });
    const ownership = new MemoryOwnership(presentRecords([at(forward, R1)]));
    const name = ownership.usageKey(forward);
    expect(ownership.usageKey(previous)).toBe(name); // one key, two contents
    const reserved = usageAtInstall(name, R2, 1_700_000_001, { ...live(R1, 1_700_000_000, 0), key: name }, previous, ownership.intentFingerprint(previous));
    expect(reserved).toMatchObject({ mark: R2, reservedFor: ownership.intentFingerprint(previous), priorMark: R1 });
    ownership.usageEntries.set(name, reserved);
    const desired = { states: [{ resource: 'SecurityAssociation/x', entry: forward }], policies: [] };
    const guard = (inKernel: ReturnType<typeof at>) => guardSequences({ desired, observed: { states: [inKernel], policies: [] }, ownership, now: 1_700_000_002 });
    const kept = guard(at(forward, R1));
    expect(kept.restarted).toEqual([]);
    expect(kept.refused).toEqual([]);
    expect(kept.desired.states[0]!.entry.resumeSequence).toBeGreaterThanOrEqual(R2); // a replace of it would still resume past the reservation
    // Below the mark before the reservation: restarted whatever its content.
    expect(guard(at(forward, R1 - 1n)).restarted).toHaveLength(1);
    // The reserved content itself below the mark: its add dropped the resume value.
    const holdingReserved = new MemoryOwnership(presentRecords([at(previous, R1)]));
    holdingReserved.usageEntries.set(name, reserved);
    const reservedInKernel = guardSequences({ desired: { states: [{ resource: 'SecurityAssociation/x', entry: previous }], policies: [] }, observed: { states: [at(previous, R1)], policies: [] }, ownership: holdingReserved, now: 1_700_000_002 });
    expect(reservedInKernel.restarted).toHaveLength(1);
    // An install that does not raise the mark reserves nothing.
    expect(usageAtInstall(name, R1, 5, { ...live(R2, 1, 0), key: name }, previous, 'f'.repeat(64))).not.toHaveProperty('reservedFor');
    expect(usageAtInstall(name, 0n, 5, undefined, previous, 'f'.repeat(64))).not.toHaveProperty('reservedFor');
  });

  it('names keys by salted hash: another key, SPI or salt is another name', () => {
    const name = usageKeyOf(TEST_SALT, sa());
    expect(name).toMatch(/^[0-9a-f]{64}$/);
    expect(usageKeyOf(TEST_SALT, observe(sa()))).toBe(name); // as read back from the kernel
    expect(usageKeyOf(TEST_SALT, sa({ spi: 0x999 }))).not.toBe(name);
    expect(usageKeyOf('ffeeddccbbaa99887766554433221100', sa())).not.toBe(name);
    expect(usageKeyOf(TEST_SALT, sa({ aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128b' } } }))).not.toBe(name);
  });
});

describe('the CLI mode of converge (refuse)', () => {
  it('refuses the whole apply when a key cannot be installed again, and changes nothing', async () => {
    const kernel = new FakeKernel();
    const ownership = new MemoryOwnership();
    const entry = sa({ spi: 0x100 });
    const desired = { states: [{ resource: 'SecurityAssociation/a', entry }, { resource: 'SecurityAssociation/b', entry: sa({ spi: 0x200, reqid: 2 }) }], policies: [] };
    ownership.usageEntries.set(ownership.usageKey(entry), { ...live(0n, 0), key: ownership.usageKey(entry), state: 'needs-rekey' });
    const result = await converge(kernel, ownership, { desired, prune: true, dryRun: false });
    expect(result.outcome).toBe('needs-rekey');
    expect(result.sequence.map((refusal) => refusal.resource)).toEqual(['SecurityAssociation/a']);
    expect(kernel.states).toEqual([]);
  });

  it('resumes a flushed key past its mark and records the install mark before the kernel change', async () => {
    let now = 1000;
    const kernel = new FakeKernel();
    const ownership = new MemoryOwnership();
    const entry = sa({ spi: 0x100 });
    const desired = { states: [{ resource: 'SecurityAssociation/a', entry }], policies: [] };
    await converge(kernel, ownership, { desired, prune: true, dryRun: false, now: () => now });
    expect(ownership.usage(ownership.usageKey(entry))).toMatchObject({ mark: 0n, seenAt: 1000, state: 'live' });
    kernel.send(entry.id, 500);
    now = 1010;
    await converge(kernel, ownership, { desired, prune: true, dryRun: false, now: () => now }); // a resync measures the rate
    expect(ownership.usage(ownership.usageKey(entry))).toMatchObject({ mark: 500n, seenAt: 1010, rate: 50 });
    kernel.foreign({ op: 'delete-state', id: entry.id });
    now = 1020;
    const result = await converge(kernel, ownership, { desired, prune: true, dryRun: false, now: () => now });
    expect(result.outcome).toBe('applied');
    expect(result.sequence).toEqual([]);
    expect(kernel.states[0]!.observed!.replayState!.outboundSequence).toBe(Number(500n + RESUME_FLOOR)); // 50/s × 4 × 10 s is below the floor
  });
});

describe('marks of keys that were never installed, and keys without nonces', () => {
  it('forgets the install mark of a new key whose add the kernel refused, so the key stays new', async () => {
    let now = 1000;
    const kernel = new FakeKernel();
    const ownership = new MemoryOwnership();
    const entry = sa({ spi: 0x100 });
    const desired = { states: [{ resource: 'SecurityAssociation/a', entry }], policies: [] };
    kernel.refuse = () => true; // say the algorithm's module is missing
    expect((await converge(kernel, ownership, { desired, prune: true, dryRun: false, now: () => now })).outcome).toBe('failed');
    expect(ownership.usage(ownership.usageKey(entry))).toBeUndefined();
    // Ten minutes later the cause is fixed: without ESN a remembered mark with no measured rate
    // would leave no sequence space (NeedsRekey), though the key never sent a packet.
    kernel.refuse = () => false;
    now = 1600;
    const result = await converge(kernel, ownership, { desired, prune: true, dryRun: false, now: () => now });
    expect(result.outcome).toBe('applied');
    expect(result.sequence).toEqual([]);
    expect(kernel.states[0]!.observed!.replayState!.outboundSequence).toBe(0);
    expect(ownership.usage(ownership.usageKey(entry))).toMatchObject({ mark: 0n, seenAt: 1600 });
  });

  it('keeps the mark of a key that was installed before when a later add is refused', async () => {
    let now = 1000;
    const kernel = new FakeKernel();
    const ownership = new MemoryOwnership();
    const entry = sa({ spi: 0x100, flags: ['esn'] } as never);
    const desired = { states: [{ resource: 'SecurityAssociation/a', entry }], policies: [] };
    await converge(kernel, ownership, { desired, prune: true, dryRun: false, now: () => now });
    kernel.send(entry.id, 700);
    kernel.foreign({ op: 'delete-state', id: entry.id });
    kernel.refuse = () => true;
    now = 1010;
    await converge(kernel, ownership, { desired, prune: true, dryRun: false, now: () => now });
    expect(ownership.usage(ownership.usageKey(entry))).toBeDefined();
  });

  it('adds an IPComp SA again after a flush: no key, no sequence numbers, nothing to protect', async () => {
    const kernel = new FakeKernel();
    const ownership = new MemoryOwnership();
    const entry = sa({ spi: 0x300, protocol: 'ipcomp', aead: undefined, compression: { algorithm: 'deflate' } });
    const desired = { states: [{ resource: 'SecurityAssociation/c', entry }], policies: [] };
    expect((await converge(kernel, ownership, { desired, prune: true, dryRun: false })).outcome).toBe('applied');
    expect(ownership.usage(ownership.usageKey(entry))).toBeUndefined();
    kernel.foreign({ op: 'delete-state', id: entry.id });
    const again = await converge(kernel, ownership, { desired, prune: true, dryRun: false });
    expect(again.outcome).toBe('applied');
    expect(again.sequence).toEqual([]);
    expect(kernel.states).toHaveLength(1);
  });
});

describe('key usage in the ledger (format 3)', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'ipsecop-usage-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('survives a reopen and a set-aside of the records (another boot)', async () => {
    const path = join(directory, 'ledger.json');
    const first = await Ledger.open(path, { scope: { bootId: 'boot-1', netns: '1' } });
    const key = first.usageKey(sa());
    await first.commit({ usage: [{ key, mark: (1n << 40n) + 3n, seenAt: 5, rate: 2.5, state: 'live' }] });
    await first.close();
    const rebooted = await Ledger.open(path, { scope: { bootId: 'boot-2', netns: '1' } });
    expect(rebooted.usage(key)).toEqual({ key, mark: (1n << 40n) + 3n, seenAt: 5, rate: 2.5, state: 'live' });
    expect(rebooted.usageKey(sa())).toBe(key); // the salt survives too
    await rebooted.close();
    const snapshot = JSON.parse(await readFile(path, 'utf8')) as { formatVersion: number; usage: unknown[] };
    expect(snapshot.formatVersion).toBe(3);
    expect(snapshot.usage).toEqual([{ key, mark: String((1n << 40n) + 3n), seenAt: 5, rate: 2.5, state: 'live' }]);
  });

  it('keeps a reservation (the content a mark is reserved for, and the mark before) through a reopen', async () => {
    const path = join(directory, 'ledger.json');
    const first = await Ledger.open(path, { scope: { bootId: 'boot-1', netns: '1' } });
    const key = first.usageKey(sa());
    const reservation = { key, mark: 2n << 20n, seenAt: 7, state: 'live' as const, reservedFor: 'c'.repeat(64), priorMark: 1n << 20n };
    await first.commit({ usage: [reservation] });
    await first.close();
    const again = await Ledger.open(path, { scope: { bootId: 'boot-1', netns: '1' } });
    expect(again.usage(key)).toEqual(reservation);
    await again.close();
  });

  it('migrates format 2 with an empty history and writes format 3', async () => {
    const path = join(directory, 'ledger.json');
    await writeFile(path, `${JSON.stringify({ formatVersion: 2, salt: TEST_SALT, scope: null, generation: 1, records: [] })}\n`);
    await writeFile(join(directory, 'ledger.journal'), `${JSON.stringify({ generation: 1 })}\n`);
    const ledger = await Ledger.open(path);
    expect(ledger.usageEntries().size).toBe(0);
    await ledger.close();
    expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({ formatVersion: 3, salt: TEST_SALT, usage: [] });
  });

  it('refuses a damaged usage entry and changes nothing', async () => {
    const path = join(directory, 'ledger.json');
    const text = `${JSON.stringify({ formatVersion: 3, salt: TEST_SALT, scope: null, generation: 1, records: [], usage: [{ key: KEY, mark: '-1', seenAt: 0, state: 'live' }] })}\n`;
    await writeFile(path, text);
    await expect(Ledger.open(path)).rejects.toThrow(/invalid key usage 0: has no valid sequence mark.*Nothing was changed/);
    expect(await readFile(path, 'utf8')).toBe(text);
    for (const bad of [
      { key: KEY, mark: '1', seenAt: 0, state: 'gone' },
      { key: KEY, mark: '1', seenAt: 0, state: 'live', extra: 1 },
      { key: 'x', mark: '1', seenAt: 0, state: 'live' },
      { key: KEY, mark: '9', seenAt: 0, state: 'live', reservedFor: KEY }, // a reservation without its prior mark
      { key: KEY, mark: '9', seenAt: 0, state: 'live', reservedFor: KEY, priorMark: '10' }, // a prior mark above the mark
      { key: KEY, mark: '9', seenAt: 0, state: 'live', reservedFor: 'zz', priorMark: '1' },
    ]) {
      await writeFile(path, `${JSON.stringify({ formatVersion: 3, salt: TEST_SALT, scope: null, generation: 1, records: [], usage: [bad] })}\n`);
      await expect(Ledger.open(path)).rejects.toThrow(/invalid key usage 0/);
    }
  });
});
