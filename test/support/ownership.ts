/**
 * An in-memory ownership store for planner and applier unit tests (the real one is the ledger
 * on disk, ../../src/ownership/ledger.ts, tested on its own), and helpers that make entries look
 * as the kernel reports them (an add time, a policy index) and records that own them.
 */
import type { OwnershipStore } from '../../src/apply/applier.js';
import { fingerprintEntry, incarnationOf, intentFingerprint, usageKeyOf } from '../../src/ownership/fingerprint.js';
import type { OwnershipRecord } from '../../src/ownership/records.js';
import type { LedgerCommit } from '../../src/ownership/ledger.js';
import type { KeyUsage } from '../../src/ownership/usage.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';

export const TEST_SALT = '00112233445566778899aabbccddeeff';

export class MemoryOwnership implements OwnershipStore {
  readonly #records = new Map<string, OwnershipRecord>();
  /** Key usage history (the ledger's, ../../src/ownership/usage.ts). */
  readonly usageEntries = new Map<string, KeyUsage>();
  commits = 0;
  /** When set, every commit fails with this error (a full disk). */
  failWith: Error | undefined;

  constructor(records: Iterable<OwnershipRecord> = []) {
    for (const record of records) this.#records.set(record.key, record);
  }

  records(): ReadonlyMap<string, OwnershipRecord> {
    return this.#records;
  }

  intentFingerprint(entry: SecurityAssociation | SecurityPolicy): string {
    return intentFingerprint(TEST_SALT, entry);
  }

  incarnationOf(entry: SecurityAssociation | SecurityPolicy) {
    return incarnationOf(TEST_SALT, entry);
  }

  contentFingerprint(entry: SecurityAssociation | SecurityPolicy): string {
    return fingerprintEntry(TEST_SALT, entry);
  }

  usageKey(sa: SecurityAssociation): string {
    return usageKeyOf(TEST_SALT, sa);
  }

  usage(key: string): KeyUsage | undefined {
    return this.usageEntries.get(key);
  }

  async commit(changes: LedgerCommit): Promise<void> {
    if (this.failWith) throw this.failWith;
    this.commits += 1;
    for (const key of changes.remove ?? []) this.#records.delete(key);
    for (const record of changes.set ?? []) this.#records.set(record.key, record);
    for (const entry of changes.usage ?? []) this.usageEntries.set(entry.key, entry);
    // As the ledger: a key upserted by the same commit is kept.
    const upserted = new Set((changes.usage ?? []).map((entry) => entry.key));
    for (const key of changes.forget ?? []) if (!upserted.has(key)) this.usageEntries.delete(key);
  }
}

/** The entry as a dump shows it: with an add time and, for a policy, a kernel index. */
export function observe<T extends SecurityAssociation | SecurityPolicy>(entry: T, kernel: { addTime?: number; index?: number } = {}): T {
  const addTime = BigInt(kernel.addTime ?? 1_700_000_000);
  const current = { bytes: 0n, packets: 0n, addTime, useTime: 0n };
  if ('templates' in entry) return { ...entry, index: kernel.index ?? (entry.index || 1025), observed: { current } };
  // A kernel takes the resume value of an add (the codec sends it as the replay state's oseq).
  const { resumeSequence, ...rest } = entry as SecurityAssociation;
  const sequence = resumeSequence ?? 0n;
  return {
    ...(rest as T),
    observed: {
      current,
      statistics: { replayWindow: 0, replay: 0, integrityFailed: 0 },
      replayState: { outboundSequence: Number(sequence & 0xffff_ffffn), outboundSequenceHigh: Number(sequence >> 32n), inboundSequence: 0, inboundSequenceHigh: 0, bitmapLength: 0 },
      sequence: 0,
    },
  };
}

export function keyOf(entry: SecurityAssociation | SecurityPolicy): string {
  return 'templates' in entry ? policyKey(entry.id) : stateKey(entry.id);
}

/** `present` records that own these observed entries (their incarnations). */
export function presentRecords(entries: readonly (SecurityAssociation | SecurityPolicy)[], resource = 'Test/owned'): OwnershipRecord[] {
  return entries.map((entry) => {
    const incarnation = incarnationOf(TEST_SALT, entry);
    if (!incarnation) throw new Error('presentRecords: entry has no incarnation (pass it through observe())');
    return { key: keyOf(entry), target: 'templates' in entry ? 'policy' : 'state', resource, phase: 'present', incarnation };
  });
}
