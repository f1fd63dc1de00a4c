/**
 * Settling the ledger against a kernel dump: which observed entries are ours, and what the
 * records must become so that they say so. Pure: records and a dump in, decisions out.
 *
 * For each record (see ./records.ts for the rule):
 * - the kernel holds an entry with the record's incarnation → ours; the record becomes (or
 *   stays) `present` — a `deleting` or `replacing` whose kernel change never happened is
 *   thereby rolled forward to what the kernel really holds;
 * - the kernel holds an entry that matches one of the record's intents (same content, added no
 *   earlier than the intent was written, by the kernel's coarse clock: INTENT_CLOCK_SLACK_SECONDS)
 *   → ours, added by us; `present` with its incarnation;
 * - the kernel holds another entry under that identity, or none → the record proves nothing
 *   and is removed (the entry, if any, is foreign).
 *
 * This runs before every plan, so a crash at any point, an answer that never came (a timeout,
 * ENOBUFS) or a refused rollback all end the same way: the next dump says what happened.
 */
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import type { Incarnation, OwnershipRecord } from './records.js';
import { recordIncarnation, recordIntents, sameIncarnation } from './records.js';

/** What the planner and the settling need from the ledger. */
export interface OwnershipView {
  records(): ReadonlyMap<string, OwnershipRecord>;
  /** The fingerprint an intent to add this entry records (./fingerprint.ts). */
  intentFingerprint(entry: SecurityAssociation | SecurityPolicy): string;
  /** The incarnation of an entry read from the kernel, if the dump carries one. */
  incarnationOf(entry: SecurityAssociation | SecurityPolicy): Incarnation | undefined;
  /** The whole-content fingerprint (for intents migrated from ledger format 1). */
  contentFingerprint(entry: SecurityAssociation | SecurityPolicy): string;
}

export interface LedgerChanges {
  readonly set: readonly OwnershipRecord[];
  readonly remove: readonly string[];
}

export interface Settlement {
  /** Keys of observed entries that are ours, with the resource that owns them. */
  readonly owned: ReadonlyMap<string, string>;
  /** Record changes that make the ledger say what the dump shows (no kernel change). */
  readonly changes: LedgerChanges;
}

/**
 * How far an entry's add time may lie before its intent's second and still be the entry that
 * intent announced. The kernel stamps `add_time` with ktime_get_real_seconds(), the timekeeper's
 * second as of its last tick, while the intent's second comes from the clock itself
 * (clock_gettime through the vDSO reads the clocksource): right after a second turns, the kernel
 * can still be in the previous one — for a tick on an idle machine, for longer where ticks are
 * late (a guest under TCG on a loaded host). Without this slack, an entry added in that moment
 * is refused by its own intent and becomes foreign: seen as `Conflict` ("not created by
 * ipsec-operator") on our own entries in the test VM at load ~20.
 *
 * Claiming an entry up to this long before the intent admits no foreign entry: the intent is
 * written after the plan's dump, and an entry with this identity that existed at the dump made
 * the planner report a conflict instead of planning the add; an entry added by someone else
 * after the dump must also have the same content (an SA's keys, a policy's whole configuration)
 * to match.
 */
export const INTENT_CLOCK_SLACK_SECONDS = 2;

export type ObservedByKey = (record: OwnershipRecord) => SecurityAssociation | SecurityPolicy | undefined;

/** Whether an observed entry is the one a record proves or intends. */
export function provesOwnership(
  record: OwnershipRecord,
  observed: SecurityAssociation | SecurityPolicy,
  view: Pick<OwnershipView, 'intentFingerprint' | 'incarnationOf' | 'contentFingerprint'>,
): Incarnation | undefined {
  const incarnation = view.incarnationOf(observed);
  if (!incarnation) return undefined;
  const proven = recordIncarnation(record);
  if (proven && sameIncarnation(proven, incarnation)) return incarnation;
  const addTime = Number(observed.observed?.current.addTime ?? -1);
  const intents = recordIntents(record);
  if (intents.length === 0) return undefined;
  let intended: string | undefined;
  let content: string | undefined;
  const matches = (fingerprint: string, isContent: boolean | undefined) =>
    fingerprint === (isContent ? (content ??= view.contentFingerprint(observed)) : (intended ??= view.intentFingerprint(observed)));
  return intents.some((intent) => addTime + INTENT_CLOCK_SLACK_SECONDS >= intent.notBefore && matches(intent.fingerprint, intent.content)) ? incarnation : undefined;
}

export function settle(view: OwnershipView, observedFor: ObservedByKey): Settlement {
  const owned = new Map<string, string>();
  const set: OwnershipRecord[] = [];
  const remove: string[] = [];
  for (const [key, record] of view.records()) {
    const observed = observedFor(record);
    const incarnation = observed ? provesOwnership(record, observed, view) : undefined;
    if (!incarnation) {
      remove.push(key);
      continue;
    }
    owned.set(key, record.resource);
    const current = recordIncarnation(record);
    if (record.phase !== 'present' || !current || !sameIncarnation(current, incarnation)) {
      set.push({ key, target: record.target, resource: record.resource, phase: 'present', incarnation });
    }
  }
  return { owned, changes: { set, remove } };
}
