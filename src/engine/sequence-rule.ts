/**
 * The sequence rule: a key is never installed with an outbound counter that could repeat a
 * sequence number it already used. Pure: usage history, desired and observed entries, and the
 * time in; decisions out. The engine (./converge.ts), the applier's rollback and the agent's
 * repair of a flushed SA all go through it.
 *
 * Why: `rfc4106(gcm(aes))`, `rfc4543` and `rfc7539esp` build each packet's nonce from its
 * sequence number (the kernel's seqiv), so the same key with a counter that starts again
 * repeats nonces, which breaks GCM's confidentiality and authenticity (and the peer drops the
 * packets as replays). For every other algorithm the peer's replay window drops them.
 *
 * The rule, for a desired SA whose key is not in the kernel right now:
 * - no history and never installed → a new key: install from 0;
 * - history `expired`, or its hard add-expiry (counted from the key's first install) has passed
 *   → never again (`Expired`);
 * - history `needs-rekey`, or installed before without any mark → never again (`NeedsRekey`);
 * - history `live` with mark M taken at time T → resume at M + margin, where the margin covers
 *   what the SA can have sent since T: the highest measured rate × SAFETY × (now − T), never
 *   below FLOOR; with no measured rate, the rate ceiling CEILING_RATE. If that leaves no
 *   sequence space (2^32 without the `esn` flag, 2^64 with it) → `NeedsRekey`.
 * After the kernel acknowledged the SA, the engine reads it back: if the counter is below the
 * resume value, the kernel did not take it — the SA is deleted again and the key marked
 * `needs-rekey` (a key never keeps running from a restarted counter).
 */
import type { DesiredEntry, DesiredTables, ObservedTables } from '../plan/planner.js';
import { stateKey } from '../plan/identity.js';
import { describeState } from '../plan/describe.js';
import type { KeyUsage, UsageView } from '../ownership/usage.js';
import { INTENT_CLOCK_SLACK_SECONDS, provesOwnership, type OwnershipView } from '../ownership/settle.js';
import { recordIncarnation, recordIntents, type OwnershipRecord } from '../ownership/records.js';
import type { SecurityAssociation } from '../xfrm/types.js';
import { SEQUENCE_REPORT_PACKETS } from '../xfrm/messages.js';

/** Smallest skip past a mark: covers a rate measured low over a short interval. */
export const RESUME_FLOOR = 1n << 20n;
/** Factor over the highest measured rate: bursts above the average between two marks. */
export const RATE_SAFETY = 4;
/**
 * Packets per second assumed when no rate was measured yet: above what one SA's software ESP
 * can send on Linux (about 16.7 million packets/s, 10 GbE at minimal frames), so the margin is a
 * bound, not a guess. A legacy 32-bit counter thus allows about 4 minutes of unmeasured gap.
 */
export const CEILING_RATE = 1 << 24;
/**
 * A mark is written again when the counter moved this far past it (not per packet): the replay
 * threshold every SA is created with, so the kernel's report at each crossing is a mark due.
 */
export const PERSIST_STEP = BigInt(SEQUENCE_REPORT_PACKETS);
/** ...or when it is this old (seconds): an idle SA's mark stays fresh, so its margin stays small. */
export const PERSIST_INTERVAL_SECONDS = 60;

export type SequenceReason = 'NeedsRekey' | 'Expired';

export type SequenceDecision =
  | { readonly kind: 'fresh' }
  | { readonly kind: 'resume'; readonly sequence: bigint }
  | { readonly kind: 'refuse'; readonly reason: SequenceReason; readonly why: string };

/** A desired SA the engine will not install: its resource reports the reason. */
export interface SequenceRefusal {
  readonly resource: string;
  /** The SA's identity key (../plan/identity.ts). */
  readonly key: string;
  readonly reason: SequenceReason;
  /** Names the SA (never its key), says why and how to rekey. */
  readonly message: string;
}

export const REKEY_HINT = 'rekey: give the SecurityAssociation a new SPI and a new key (on both nodes), then apply';

/** The outbound sequence number of an SA read from the kernel (64-bit with the `esn` flag). */
export function observedSequence(sa: SecurityAssociation): bigint | undefined {
  const replay = sa.observed?.replayState;
  if (!replay) return undefined;
  const low = BigInt(replay.outboundSequence);
  return sa.flags.includes('esn') ? (BigInt(replay.outboundSequenceHigh) << 32n) | low : low;
}

/** How many sequence numbers the SA's counter has: 2^64 with ESN, 2^32 without. */
export function sequenceSpace(sa: Pick<SecurityAssociation, 'flags'>): bigint {
  return sa.flags.includes('esn') ? 1n << 64n : 1n << 32n;
}

/** The margin past a mark taken `elapsed` seconds ago (see the module comment). */
export function resumeMargin(usage: Pick<KeyUsage, 'rate'>, elapsedSeconds: number): bigint {
  const elapsed = Math.max(1, Math.ceil(elapsedSeconds));
  const rate = usage.rate === undefined ? CEILING_RATE : usage.rate * RATE_SAFETY;
  const margin = BigInt(Math.ceil(rate * elapsed));
  return margin > RESUME_FLOOR ? margin : RESUME_FLOOR;
}

/**
 * SAs the rule leaves alone: an inbound SA never sends, so its counter repeats nothing (and
 * 6.10+ refuses a resume value on one); an IPComp SA has no key and no sequence numbers (its
 * CPI is no counter), so adding it again repeats nothing either.
 */
export function repeatsNoNonce(sa: Pick<SecurityAssociation, 'direction' | 'algorithms'>): boolean {
  return sa.direction === 'in' || sa.algorithms.kind === 'compression';
}

/**
 * Where an SA with this key may start. `installedBefore`: the ownership records show this
 * engine installed this very content before (so a missing history means an unknown counter).
 */
export function decideResume(input: {
  readonly sa: SecurityAssociation;
  readonly usage: KeyUsage | undefined;
  readonly installedBefore: boolean;
  readonly now: number;
}): SequenceDecision {
  const { sa, usage, now } = input;
  if (repeatsNoNonce(sa)) return { kind: 'fresh' };
  if (!usage) {
    return input.installedBefore ? { kind: 'refuse', reason: 'NeedsRekey', why: 'this key was installed before and no sequence mark is known for it' } : { kind: 'fresh' };
  }
  if (usage.state === 'expired') return { kind: 'refuse', reason: 'Expired', why: usage.why ?? 'the kernel removed this key at its hard lifetime' };
  if (usage.hardExpiresAt !== undefined && now >= usage.hardExpiresAt) {
    return { kind: 'refuse', reason: 'Expired', why: `the hard lifetime of this key, counted from its first install, ended ${now - usage.hardExpiresAt} s ago` };
  }
  if (usage.state === 'needs-rekey') return { kind: 'refuse', reason: 'NeedsRekey', why: usage.why ?? 'the kernel did not take the resume value for this key' };
  const sequence = usage.mark + resumeMargin(usage, now - usage.seenAt);
  if (sequence + RESUME_FLOOR >= sequenceSpace(sa)) {
    return { kind: 'refuse', reason: 'NeedsRekey', why: `resuming past sequence ${usage.mark} (seen ${Math.max(0, now - usage.seenAt)} s ago) would leave no sequence space` };
  }
  return { kind: 'resume', sequence };
}

/**
 * Where an SA that is in the kernel right now starts when it is deleted and added again (a
 * replace, a rollback): its counter is known from the dump, so the floor past it suffices —
 * or the history's decision, if that is higher.
 */
export function resumeAfterDump(sa: SecurityAssociation, observed: bigint, usage: KeyUsage | undefined, now: number): bigint {
  const fromDump = observed + RESUME_FLOOR;
  const decision = usage?.state === 'live' ? decideResume({ sa, usage, installedBefore: true, now }) : undefined;
  return decision?.kind === 'resume' && decision.sequence > fromDump ? decision.sequence : fromDump;
}

/**
 * The usage entry written with the intent to install an SA (before the kernel change). The hard
 * add-expiry deadline is set at the first install and kept: installing the key again does not
 * give it a new lifetime. An install that raises the mark records which content the new mark
 * is reserved for (`fingerprint`, its intent fingerprint) and the mark before (see KeyUsage).
 */
export function usageAtInstall(key: string, resume: bigint, now: number, previous: KeyUsage | undefined, sa?: Pick<SecurityAssociation, 'lifetime'>, fingerprint?: string): KeyUsage {
  const mark = previous && previous.mark > resume ? previous.mark : resume;
  const reservation = previous && fingerprint !== undefined && resume > previous.mark ? { reservedFor: fingerprint, priorMark: previous.mark } : {};
  const lifetime = sa?.lifetime.hardAddExpiresSeconds ?? 0n;
  const deadline = previous?.hardExpiresAt ?? (lifetime > 0n && lifetime < 1n << 40n ? now + Number(lifetime) : undefined);
  return { key, mark, seenAt: now, ...(previous?.rate === undefined ? {} : { rate: previous.rate }), ...(deadline === undefined ? {} : { hardExpiresAt: deadline }), state: 'live', ...reservation };
}

/**
 * A mark from a dump: the updated entry to persist, or undefined when none is due (the counter
 * moved less than PERSIST_STEP and the mark is younger than PERSIST_INTERVAL_SECONDS).
 */
export function usageFromObservation(key: string, previous: KeyUsage | undefined, sequence: bigint, now: number): KeyUsage | undefined {
  if (!previous) return { key, mark: sequence, seenAt: now, state: 'live' };
  if (previous.state !== 'live' || sequence < previous.mark) return undefined;
  const elapsed = now - previous.seenAt;
  const advanced = sequence - previous.mark;
  const due = advanced >= PERSIST_STEP || elapsed >= PERSIST_INTERVAL_SECONDS || (previous.rate === undefined && elapsed >= 1);
  if (!due) return undefined;
  const measured = elapsed >= 1 ? Number(advanced) / elapsed : undefined;
  const rate = measured === undefined ? previous.rate : Math.max(previous.rate ?? 0, measured);
  return {
    key,
    mark: sequence,
    seenAt: elapsed >= 0 ? now : previous.seenAt,
    ...(rate === undefined ? {} : { rate }),
    ...(previous.hardExpiresAt === undefined ? {} : { hardExpiresAt: previous.hardExpiresAt }),
    state: 'live',
  };
}

/** The entry that records why a key is never installed again. */
export function retiredUsage(key: string, previous: KeyUsage | undefined, state: 'needs-rekey' | 'expired', why: string, now: number): KeyUsage {
  return {
    key,
    mark: previous?.mark ?? 0n,
    seenAt: previous?.seenAt ?? now,
    ...(previous?.rate === undefined ? {} : { rate: previous.rate }),
    ...(previous?.hardExpiresAt === undefined ? {} : { hardExpiresAt: previous.hardExpiresAt }),
    state,
    why: why.slice(0, 300),
  };
}

/** An SA of ours in the kernel that must not keep running: its counter restarted, or its key is retired. */
export interface RestartedCounter {
  readonly resource: string;
  readonly key: string;
  /** The SA as the dump shows it. */
  readonly sa: SecurityAssociation;
  readonly why: string;
}

export interface GuardedTables {
  /** The desired tables with resume values set and refused SAs left out. */
  readonly desired: DesiredTables;
  readonly refused: readonly SequenceRefusal[];
  /**
   * Owned SAs in the kernel whose counter is below their key's mark (added with a resume value
   * the kernel dropped, then a crash before the read-back), or whose key is retired: the engine
   * retires the key and deletes them before anything else.
   */
  readonly restarted: readonly RestartedCounter[];
}

/**
 * Applies the rule to every desired SA. An SA whose key is in the kernel now (same identity,
 * same key) gets the resume value a replace would need; one that is not gets the rule's
 * decision; refused ones are left out of the desired tables (the caller protects their
 * resources, so nothing of theirs is pruned).
 */
export function guardSequences(input: {
  readonly desired: DesiredTables;
  readonly observed: ObservedTables;
  readonly ownership: OwnershipView & UsageView;
  readonly now: number;
}): GuardedTables {
  const { ownership, now } = input;
  const inKernel = new Map<string, SecurityAssociation>();
  for (const sa of input.observed.states) inKernel.set(stateKey(sa.id), sa);
  const refused: SequenceRefusal[] = [];
  const restarted: RestartedCounter[] = [];
  const states: DesiredEntry<SecurityAssociation>[] = [];
  for (const desired of input.desired.states) {
    const sa = desired.entry;
    if (repeatsNoNonce(sa)) {
      states.push(desired);
      continue;
    }
    const key = stateKey(sa.id);
    const name = ownership.usageKey(sa);
    const usage = ownership.usage(name);
    const current = inKernel.get(key);
    const sequence = current && ownership.usageKey(current) === name ? observedSequence(current) : undefined;
    // Below the mark only counts for an SA added since the mark was written (the install mark of
    // a replace is written before the old SA, still counting below it, is deleted).
    // The kernel stamps add times with its coarse clock, which can lag the mark's wall-clock
    // second (../ownership/settle.ts INTENT_CLOCK_SLACK_SECONDS): an SA stamped that little
    // before its install mark counts as added since, so that a counter restarted right after a
    // mark is caught (the price, retiring a key replaced within seconds of its creation, is the
    // safe side).
    const addedSince = Number(current?.observed?.current.addTime ?? 0) + INTENT_CLOCK_SLACK_SECONDS >= (usage?.seenAt ?? Infinity);
    if (sequence !== undefined && current && usage && (usage.state !== 'live' || (sequence < usage.mark && addedSince && !underEarlierReservation(usage, sequence, current, ownership))) && ownedInKernel(ownership, key, current)) {
      const why = usage.state !== 'live' ? `its key is retired (${usage.why ?? usage.state})` : `its counter (${sequence}) is below the mark of its key (${usage.mark}): it restarted`;
      restarted.push({ resource: desired.resource, key, sa: current, why });
      continue;
    }
    if (sequence !== undefined) {
      states.push({ ...desired, entry: { ...sa, resumeSequence: resumeAfterDump(sa, sequence, usage, now) } });
      continue;
    }
    const decision = decideResume({ sa, usage, installedBefore: installedBefore(ownership, key, sa), now });
    if (decision.kind === 'refuse') {
      refused.push({ resource: desired.resource, key, reason: decision.reason, message: refusalMessage(desired.resource, sa, decision.why) });
      continue;
    }
    states.push(decision.kind === 'resume' ? { ...desired, entry: { ...sa, resumeSequence: decision.sequence } } : desired);
  }
  return { desired: { states, policies: input.desired.policies }, refused, restarted };
}

/**
 * Whether an SA below its key's mark is one added before the install that raised the mark (a
 * crash came between that reservation and its kernel change): its content is not the reserved
 * one, so an earlier reservation installed it, and its counter is at least the mark before
 * (marks only grow, so at least where that earlier install resumed). A restarted counter is below
 * that too, and is still caught.
 */
function underEarlierReservation(usage: KeyUsage, sequence: bigint, current: SecurityAssociation, ownership: OwnershipView): boolean {
  return usage.reservedFor !== undefined && usage.priorMark !== undefined && sequence >= usage.priorMark && ownership.intentFingerprint(current) !== usage.reservedFor;
}

export function refusalMessage(resource: string, sa: SecurityAssociation, why: string): string {
  return `${resource}: sa ${describeState(sa)} is not installed: ${why}; installing the same key again could repeat sequence numbers (and AES-GCM nonces); ${REKEY_HINT}`;
}

function ownedInKernel(ownership: OwnershipView, key: string, observed: SecurityAssociation): boolean {
  const record = ownership.records().get(key);
  return record !== undefined && provesOwnership(record, observed, ownership) !== undefined;
}

/** Whether a record shows this engine installed exactly this content (by intent or incarnation). */
function installedBefore(ownership: OwnershipView, key: string, sa: SecurityAssociation): boolean {
  const record = ownership.records().get(key);
  return record !== undefined && recordClaims(record, ownership.intentFingerprint(sa));
}

/** Whether a record holds an intent or an incarnation of the content with this intent fingerprint. */
export function recordClaims(record: OwnershipRecord, fingerprint: string): boolean {
  const incarnation = recordIncarnation(record);
  if (incarnation?.target === 'state' && incarnation.stable === fingerprint) return true;
  return recordIntents(record).some((intent) => intent.fingerprint === fingerprint);
}

/**
 * The read-back proof: the SA the kernel holds after an add that carried `resume` counts from
 * at least there. Undefined when proven; otherwise why not.
 */
export function resumeNotTaken(resume: bigint, observed: SecurityAssociation | undefined): string | undefined {
  if (!observed) return `the SA was not found when read back to check its sequence counter`;
  const sequence = observedSequence(observed);
  if (sequence === undefined) return 'the kernel reported no replay state when read back';
  if (sequence < resume) return `the kernel did not take the resume value ${resume} (its counter read back at ${sequence})`;
  return undefined;
}
