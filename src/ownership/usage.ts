/**
 * Key usage history: for every SA key this engine ever installed, the highest outbound sequence
 * number known to have been used with it, and when that was seen.
 *
 * Why it is kept apart from the ownership records (./records.ts): a record proves that an
 * *entry* in the kernel is ours and goes away with the entry (a hand flush, a hard expiry) or
 * with the boot (a reboot sets the records aside, ./ledger.ts). The usage of a *key* outlives
 * all of that: AES-GCM in ESP derives each packet's nonce from its sequence number (seqiv), so
 * the same key installed again with its counter back at 0 repeats nonces — after a flush, after
 * a reboot (the kernel forgets, a hand-written key does not change), after the kernel removed
 * the SA at its hard lifetime. So the history is never set aside and never pruned with records;
 * only its retention (./retention.ts) forgets keys nobody has used for a long time.
 *
 * A key is named by a salted hash of (family, daddr, SPI, protocol, algorithms with their key
 * bytes): the ledger never holds key material, and the per-ledger salt keeps equal keys on two
 * nodes from having equal names.
 *
 * On disk (ledger format 3): `{ "key": hex64, "mark": "decimal", "seenAt": seconds,
 * "rate"?: packets per second, "hardExpiresAt"?: seconds, "state": "live" | "needs-rekey" |
 * "expired", "why"?: text, "reservedFor"?: hex64, "priorMark"?: "decimal" }`. The last two came
 * later within format 3 (a binary from before them refuses such a ledger by its unknown field).
 */
import type { SecurityAssociation } from '../xfrm/types.js';

export { usageKeyOf } from './fingerprint.js';

/**
 * - `live`: the key may be installed again, resuming past `mark` (../engine/sequence-rule.ts).
 * - `needs-rekey`: the kernel did not take a resume value for this key, so its counter may have
 *   restarted; it is never installed again.
 * - `expired`: the kernel removed the SA at its hard lifetime; installing the key again would
 *   defeat the lifetime.
 */
export type KeyUsageState = 'live' | 'needs-rekey' | 'expired';

export interface KeyUsage {
  /** Salted hash naming the key (see the module comment). */
  readonly key: string;
  /** Highest outbound sequence number known to have been used (or set) with this key. */
  readonly mark: bigint;
  /** Wall-clock second the mark was taken. */
  readonly seenAt: number;
  /** Highest packet rate measured between two marks (packets/s); absent until measured. */
  readonly rate?: number;
  /**
   * When the key's hard add-expiry (`hardAddExpiresSeconds`, counted from its first install)
   * passes: after it the key is Expired even if no EXPIRE event was seen (the CLI, an agent
   * that was down). Absent without such a lifetime.
   */
  readonly hardExpiresAt?: number;
  readonly state: KeyUsageState;
  /** Why the key is not live (short, no key bytes). */
  readonly why?: string;
  /**
   * Set when an install raised the mark to its resume value (a reservation written before the
   * kernel change): the intent fingerprint of the content that install adds, and the mark
   * before it. An SA of this key with other content was added under an earlier reservation, so
   * it counts from at least `priorMark`, not from `mark`: a crash between the reservation and
   * its kernel change (a rollback putting the previous content back) must not make the SA
   * still there look restarted (../engine/sequence-rule.ts guardSequences).
   */
  readonly reservedFor?: string;
  readonly priorMark?: bigint;
}

/** What the engine needs from the ledger's usage history. */
export interface UsageView {
  /** The name of an SA's key in the history. */
  usageKey(sa: SecurityAssociation): string;
  usage(key: string): KeyUsage | undefined;
}

export class UsageFormatError extends Error {
  override readonly name = 'UsageFormatError';
}

const HEX64 = /^[0-9a-f]{64}$/;
const STATES: ReadonlySet<string> = new Set(['live', 'needs-rekey', 'expired']);
const U64_MAX = (1n << 64n) - 1n;

/** The on-disk form of one usage entry. */
export function usageToJson(usage: KeyUsage): Record<string, unknown> {
  return {
    key: usage.key,
    mark: usage.mark.toString(),
    seenAt: usage.seenAt,
    ...(usage.rate === undefined ? {} : { rate: usage.rate }),
    ...(usage.hardExpiresAt === undefined ? {} : { hardExpiresAt: usage.hardExpiresAt }),
    state: usage.state,
    ...(usage.why === undefined ? {} : { why: usage.why }),
    ...(usage.reservedFor === undefined || usage.priorMark === undefined ? {} : { reservedFor: usage.reservedFor, priorMark: usage.priorMark.toString() }),
  };
}

/** Checks one usage entry as read from disk; unknown fields are refused (a newer format). */
export function parseUsage(value: unknown, position: number): KeyUsage {
  const fail = (message: string): never => {
    throw new UsageFormatError(`key usage ${position}: ${message}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('is not an object');
  const raw = value as Record<string, unknown>;
  for (const field of Object.keys(raw)) if (!['key', 'mark', 'seenAt', 'rate', 'hardExpiresAt', 'state', 'why', 'reservedFor', 'priorMark'].includes(field)) fail(`unknown field ${JSON.stringify(field.slice(0, 40))}`);
  if (typeof raw.key !== 'string' || !HEX64.test(raw.key)) fail('has no valid key name');
  if (typeof raw.mark !== 'string' || !/^[0-9]{1,20}$/.test(raw.mark) || BigInt(raw.mark) > U64_MAX) fail('has no valid sequence mark');
  if (typeof raw.seenAt !== 'number' || !Number.isSafeInteger(raw.seenAt) || raw.seenAt < 0) fail('has no valid time');
  if (raw.rate !== undefined && (typeof raw.rate !== 'number' || !Number.isFinite(raw.rate) || raw.rate < 0)) fail('has no valid rate');
  if (raw.hardExpiresAt !== undefined && (typeof raw.hardExpiresAt !== 'number' || !Number.isSafeInteger(raw.hardExpiresAt) || raw.hardExpiresAt < 0)) fail('has no valid expiry time');
  if (typeof raw.state !== 'string' || !STATES.has(raw.state)) fail('state is not one of live, needs-rekey, expired');
  if (raw.why !== undefined && (typeof raw.why !== 'string' || raw.why.length > 300)) fail('has an invalid reason');
  if ((raw.reservedFor === undefined) !== (raw.priorMark === undefined)) fail('has only one of reservedFor and priorMark');
  if (raw.reservedFor !== undefined && (typeof raw.reservedFor !== 'string' || !HEX64.test(raw.reservedFor))) fail('has no valid reservation fingerprint');
  if (raw.priorMark !== undefined && (typeof raw.priorMark !== 'string' || !/^[0-9]{1,20}$/.test(raw.priorMark) || BigInt(raw.priorMark) > BigInt(raw.mark as string))) fail('has no valid prior mark (at most the mark)');
  return {
    key: raw.key as string,
    mark: BigInt(raw.mark as string),
    seenAt: raw.seenAt as number,
    ...(raw.rate === undefined ? {} : { rate: raw.rate as number }),
    ...(raw.hardExpiresAt === undefined ? {} : { hardExpiresAt: raw.hardExpiresAt as number }),
    state: raw.state as KeyUsageState,
    ...(raw.why === undefined ? {} : { why: raw.why as string }),
    ...(raw.reservedFor === undefined ? {} : { reservedFor: raw.reservedFor as string, priorMark: BigInt(raw.priorMark as string) }),
  };
}
