/**
 * One convergence pass for one namespace: dump the kernel, plan against the desired tables and
 * the ledger, apply, then dump and plan again to verify that the kernel now matches (after a
 * small plan: read back just the identities it touched, see verifyingSurvey). The CLI's
 * `apply` and the node agent both run exactly this.
 *
 * Every plan goes through the sequence rule (./sequence-rule.ts) after its dump: an SA whose key
 * was used before resumes past its mark or is refused (NeedsRekey, Expired), and every SA added
 * with a resume value is read back in the verifying dump; one whose counter did not take the
 * value is deleted again at once and its key retired.
 */
import { applyPlan, type ApplyReport, type KernelWriter, type NeverInstalled, type OwnershipStore } from '../apply/applier.js';
import { plan, type DesiredTables, type ObservedTables, type Plan, type Step } from '../plan/planner.js';
import { describePolicy, describeState } from '../plan/describe.js';
import type { PolicyId, SecurityAssociation, SecurityPolicy, StateId } from '../xfrm/types.js';
import { desiredPolicyKey, desiredStateKey, stateKey } from '../plan/identity.js';
import { unsupportedFields, type KernelFeatures } from '../xfrm/kernel-features.js';
import { provesOwnership, type OwnershipView } from '../ownership/settle.js';
import type { KeyUsage, UsageView } from '../ownership/usage.js';
import type { OwnershipRecord } from '../ownership/records.js';
import {
  guardSequences,
  observedSequence,
  recordClaims,
  refusalMessage,
  repeatsNoNonce,
  resumeNotTaken,
  retiredUsage,
  usageFromObservation,
  type RestartedCounter,
  type SequenceRefusal,
} from './sequence-rule.js';

export interface KernelTables extends KernelWriter {
  /** A consistent dump of both tables (socket policies excluded). */
  dump(): Promise<ObservedTables>;
  /**
   * What the kernel keeps (learned when the tables were opened, ./kernel.ts). Absent (fakes
   * of older tests): desired fields are not checked before planning; the verifying pass still
   * stops on a field the kernel did not keep.
   */
  readonly features?: KernelFeatures;
  /**
   * The kernel's entries for these identities only (XFRM_MSG_GETSA / GETPOLICY, the same
   * lookups DELSA and DELPOLICY use), as a dump would show them; an identity the kernel does
   * not hold is left out. Lets the verifying pass of a small plan read what it changed instead
   * of dumping every table again. Absent (fakes of older tests): the verifying pass dumps.
   */
  read?(ids: { readonly states: readonly StateId[]; readonly policies: readonly PolicyId[] }): Promise<ObservedTables>;
}

/**
 * The verifying pass reads the identities a plan touched instead of dumping when it touched at
 * most this many, and at most one in READ_SHARE of the entries the plan's dump held: a read is
 * one round trip per identity, a dump one message per entry of every table.
 */
export const MAX_READ_IDENTITIES = 64;
const READ_SHARE = 8;

/** A desired entry with a field the running kernel would silently drop: refused before planning. */
export interface UnsupportedEntry {
  readonly resource: string;
  readonly key: string;
  /** Path in the resource's spec, e.g. `spec.direction`. */
  readonly path: string;
  /** Names the field and the kernel release; reason KernelUnsupported. */
  readonly message: string;
}

/** A change this run applied that the verifying dump shows planned again: the kernel did not keep it. */
export interface NotKept {
  readonly resource: string;
  readonly key: string;
  /** The differences the kernel acknowledged and dropped (`care-of address`, `direction`). */
  readonly fields: readonly string[];
  /** `<resource>: the kernel did not keep <fields> of <entry>`; reason KernelDidNotKeep. */
  readonly message: string;
}

export interface ConvergeOptions {
  readonly desired: DesiredTables;
  /** Delete owned entries that are no longer desired. */
  readonly prune: boolean;
  /** Plan only. */
  readonly dryRun: boolean;
  /**
   * `refuse` (the CLI): any conflict stops the whole apply. `skip` (the agent): conflicting
   * entries are left out and reported, the rest is applied, so one bad resource cannot hold
   * every other resource of the node hostage.
   */
  readonly conflicts?: 'refuse' | 'skip';
  /**
   * Resources whose owned entries must not be deleted even though they are not desired right
   * now: resources that cannot be built at the moment (a Secret briefly missing, a key the
   * kernel refused). Keeping their last good entries keeps their traffic flowing.
   */
  readonly protect?: ReadonlySet<string>;
  /** Wall-clock seconds (for sequence marks); default Date.now(). */
  readonly now?: () => number;
}

/** A plan with the SAs the sequence rule refused (left out of it). */
export type GuardedPlan = Plan & { readonly sequenceRefused: readonly SequenceRefusal[] };

/**
 * Every outcome carries `unsupported`: with conflicts `skip` those entries were left out (and
 * their resources protected) and the rest went ahead; with `refuse` any of them is outcome
 * `unsupported` and nothing is applied (`plan` then shows the rest, not applied).
 * Likewise `sequence`: SAs the sequence rule refused before planning, and SAs whose resume value
 * the kernel did not take (deleted again); with `refuse`, a refusal before planning is outcome
 * `needs-rekey` and nothing is applied.
 */
export type ConvergeResult = (
  | { readonly outcome: 'planned'; readonly plan: Plan }
  | { readonly outcome: 'needs-rekey'; readonly plan: Plan }
  | { readonly outcome: 'unsupported'; readonly plan: Plan }
  | { readonly outcome: 'conflict'; readonly plan: Plan }
  | { readonly outcome: 'failed'; readonly plan: Plan; readonly report: ApplyReport }
  | { readonly outcome: 'applied'; readonly plan: Plan; readonly report: ApplyReport; readonly remaining: Plan }
  | { readonly outcome: 'not-kept'; readonly plan: Plan; readonly report: ApplyReport; readonly remaining: Plan; readonly notKept: readonly NotKept[] }
) & { readonly unsupported: readonly UnsupportedEntry[]; readonly sequence: readonly SequenceRefusal[] };

/** The desired SAs that use a field this kernel drops (none when the features are unknown). */
export function kernelUnsupported(desired: DesiredTables, features: KernelFeatures | undefined): UnsupportedEntry[] {
  if (!features) return [];
  return desired.states.flatMap(({ resource, entry }) =>
    unsupportedFields(entry, features).map((field) => ({ resource, key: stateKey(entry.id), path: field.path, message: field.message })),
  );
}

/**
 * The verifying pass. A create, update or replace sends the whole desired entry, so once this
 * run wrote an entry, any step the verifying plan still has for it (with a replace or an
 * update: those very fields) means the kernel acknowledged what it was sent and did not keep
 * it; a deletion planned again means the same. Applying again would change nothing, or replace
 * an SA on every pass: stop and say so instead.
 */
export function notKept(applied: readonly Step[], remaining: Plan): NotKept[] {
  const wrote = new Map(applied.map((step) => [`${step.target} ${step.key}`, step.op]));
  const result: NotKept[] = [];
  for (const step of remaining.steps) {
    const before = wrote.get(`${step.target} ${step.key}`);
    if (before === undefined || (before === 'delete') !== (step.op === 'delete')) continue;
    const fields = 'changes' in step ? step.changes : [];
    const entry = step.op === 'delete' ? step.previous : step.entry;
    const what = step.target === 'state' ? `sa ${describeState(entry as SecurityAssociation)}` : `policy ${describePolicy(entry as SecurityPolicy)}`;
    const kept = step.op === 'delete' ? 'the deletion' : fields.length > 0 ? fields.join(', ') : 'the entry';
    result.push({ resource: step.resource, key: step.key, fields, message: `${step.resource}: the kernel did not keep ${kept} of ${what}` });
  }
  return result;
}

export async function planFor(
  kernel: KernelTables,
  ownership: OwnershipView & UsageView,
  options: Pick<ConvergeOptions, 'desired' | 'prune' | 'protect' | 'now'>,
): Promise<GuardedPlan> {
  return (await survey(kernel, ownership, options)).plan;
}

interface Survey {
  readonly plan: GuardedPlan;
  readonly observed: ObservedTables;
  /** Sequence marks of owned SAs in this dump that are due to be persisted. */
  readonly marks: readonly KeyUsage[];
  /** Owned SAs running from a restarted counter (./sequence-rule.ts RestartedCounter). */
  readonly restarted: readonly RestartedCounter[];
}

/** Dump, apply the sequence rule, plan. */
async function survey(kernel: KernelTables, ownership: OwnershipView & UsageView, options: Pick<ConvergeOptions, 'desired' | 'prune' | 'protect' | 'now'>): Promise<Survey> {
  return surveyOf(await kernel.dump(), ownership, options);
}

/** The sequence rule and the plan over what the kernel showed. */
function surveyOf(observed: ObservedTables, ownership: OwnershipView & UsageView, options: Pick<ConvergeOptions, 'desired' | 'prune' | 'protect' | 'now'>): Survey {
  const now = (options.now ?? wallClock)();
  const guarded = guardSequences({ desired: options.desired, observed, ownership, now });
  const full = plan({ desired: guarded.desired, observed, ownership });
  const protect = new Set([...(options.protect ?? []), ...guarded.refused.map((refusal) => refusal.resource)]);
  const keep = (step: Plan['steps'][number]) => step.op !== 'delete' || (options.prune && !protect.has(step.resource));
  const restartedRefusals = guarded.restarted.map(({ resource, key, sa, why }) => ({ resource, key, reason: 'NeedsRekey' as const, message: refusalMessage(resource, sa, why) }));
  return {
    plan: { ...full, steps: full.steps.filter(keep), sequenceRefused: [...guarded.refused, ...restartedRefusals] },
    observed,
    marks: sequenceMarks(observed, ownership, now),
    restarted: guarded.restarted,
  };
}

function wallClock(): number {
  return Math.floor(Date.now() / 1000);
}

/** The marks due for the owned SAs of a dump (not per packet: ./sequence-rule.ts usageFromObservation). */
function sequenceMarks(observed: ObservedTables, ownership: OwnershipView & UsageView, now: number): KeyUsage[] {
  const records = ownership.records();
  const marks: KeyUsage[] = [];
  for (const sa of observed.states) {
    if (repeatsNoNonce(sa)) continue;
    const record = records.get(stateKey(sa.id));
    const sequence = observedSequence(sa);
    if (!record || sequence === undefined || !provesOwnership(record, sa, ownership)) continue;
    const key = ownership.usageKey(sa);
    const mark = usageFromObservation(key, ownership.usage(key), sequence, now);
    if (mark) marks.push(mark);
  }
  return marks;
}

export async function converge(kernel: KernelTables, ownership: OwnershipStore, given: ConvergeOptions): Promise<ConvergeResult> {
  // Known before planning: an entry the kernel would install without one of its fields is
  // never planned (it would be replaced on every pass). It is left out and its resource's
  // existing entries are protected, like any other resource set aside.
  const unsupported = kernelUnsupported(given.desired, kernel.features);
  const options = unsupported.length === 0 ? given : withoutResources(given, new Set(unsupported.map((entry) => entry.resource)));
  const refuse = (options.conflicts ?? 'refuse') === 'refuse';
  let surveyed = await survey(kernel, ownership, options);
  let retiredFirst: readonly SequenceRefusal[] = [];
  if (surveyed.restarted.length > 0 && !options.dryRun) {
    // Before anything else: an SA of ours repeating sequence numbers of its key goes now.
    retiredFirst = await retire(kernel, ownership, surveyed.restarted, (options.now ?? wallClock)());
    surveyed = await survey(kernel, ownership, options);
  }
  const planned = surveyed.plan;
  const retiredKeys = new Set(retiredFirst.map((refusal) => refusal.key));
  const refused = [...retiredFirst, ...planned.sequenceRefused.filter((refusal) => !retiredKeys.has(refusal.key))];
  if (unsupported.length > 0 && refuse) return { outcome: 'unsupported', plan: planned, unsupported, sequence: refused };
  if (options.dryRun) return { outcome: 'planned', plan: planned, unsupported, sequence: refused };
  // All or nothing: a conflict would leave the set half-applied, so nothing is done.
  if (planned.conflicts.length > 0 && refuse) return { outcome: 'conflict', plan: planned, unsupported, sequence: refused };
  if (refused.length > 0 && refuse) return { outcome: 'needs-rekey', plan: planned, unsupported, sequence: refused };
  const report = await applyPlan(planned, kernel, ownership, { usage: surveyed.marks, ...(options.now ? { now: options.now } : {}) });
  if (report.failures.length > 0 || report.stopped !== undefined) {
    const unproven = await settleFromDump(kernel, ownership, options, report.rolledBack, report.neverInstalled);
    return { outcome: 'failed', plan: planned, report, unsupported, sequence: [...refused, ...unproven] };
  }
  // An empty plan wrote no intents and changed nothing in the kernel: the dump it was made from
  // already verifies it (a second dump of 10,000 entries would only find the same again).
  if (planned.steps.length === 0) return { outcome: 'applied', plan: planned, report, remaining: planned, unsupported, sequence: refused };
  const held = surveyed.observed.states.length + surveyed.observed.policies.length;
  const verified = await verifyingSurvey(kernel, ownership, options, planned.steps, held);
  const remaining = verified.plan;
  // The verifying dump (or read) settles the intents this run wrote (creations become `present` with the
  // incarnation the kernel gave them), so the ledger ends the run as exact as the kernel.
  if (remaining.ledger.set.length > 0 || remaining.ledger.remove.length > 0) await ownership.commit({ set: remaining.ledger.set, remove: remaining.ledger.remove });
  const unproven = await retireUnproven(kernel, ownership, report.applied, verified.observed, (options.now ?? wallClock)());
  const sequence = [...refused, ...unproven];
  const dropped = notKept(report.applied, remaining);
  if (dropped.length > 0) return { outcome: 'not-kept', plan: planned, report, remaining, notKept: dropped, unsupported, sequence };
  return { outcome: 'applied', plan: planned, report, remaining, unsupported, sequence };
}

/**
 * The survey after this run's changes, for what it touched. With a dump: the whole survey
 * again. With a read of the touched identities (a small plan, see MAX_READ_IDENTITIES): the
 * same survey over just those identities — their desired entries, their records and what the
 * kernel holds for them now — which is exactly the part of the whole plan this run could have
 * changed; every other identity was settled and matching in the dump the run planned from
 * (what anyone else changes meanwhile, the next pass finds, as it would after a dump).
 * Ownership is proven the same way: a record settles only against the incarnation the kernel
 * reports for its identity; the read-back proof of resume values reads the same SAs.
 */
async function verifyingSurvey(
  kernel: KernelTables,
  ownership: OwnershipView & UsageView,
  options: Pick<ConvergeOptions, 'desired' | 'prune' | 'protect' | 'now'>,
  steps: readonly Step[],
  held: number,
): Promise<Survey> {
  const touched = touchedIdentities(steps);
  const small = touched.keys.size <= MAX_READ_IDENTITIES && touched.keys.size * READ_SHARE <= held;
  if (!kernel.read || !small) return survey(kernel, ownership, options);
  let observed: ObservedTables;
  try {
    observed = await kernel.read({ states: touched.states, policies: touched.policies });
  } catch {
    return survey(kernel, ownership, options); // an entry the model cannot hold, a lost answer: the dump says
  }
  const keys = touched.keys;
  // The resource first: a cheap test that spares computing the identity key of every desired entry.
  const resources = new Set(steps.map((step) => step.resource));
  const desired: DesiredTables = {
    states: options.desired.states.filter(({ resource, entry }) => resources.has(resource) && keys.has(desiredStateKey(entry.id))),
    policies: options.desired.policies.filter(({ resource, entry }) => resources.has(resource) && keys.has(desiredPolicyKey(entry.id))),
  };
  return surveyOf(observed, withRecordsOf(ownership, keys), { ...options, desired });
}

/** The identities steps change, as keys and as the ids a read asks for. */
function touchedIdentities(steps: readonly Step[]): { keys: Set<string>; states: StateId[]; policies: PolicyId[] } {
  const keys = new Set<string>();
  const states: StateId[] = [];
  const policies: PolicyId[] = [];
  for (const step of steps) {
    if (keys.has(step.key)) continue;
    keys.add(step.key);
    const entry = step.op === 'delete' ? step.previous : step.entry;
    if (step.target === 'state') states.push((entry as SecurityAssociation).id);
    else policies.push((entry as SecurityPolicy).id);
  }
  return { keys, states, policies };
}

/**
 * The ledger as it is, but holding only the records of these identities (so that settling
 * over a read removes nothing else). Every other method runs on the ledger itself, commits
 * included. The records are looked up on each call, not copied once: a targeted repair
 * (../agent/drift-repair.ts) plans, writes intents and settles through one view, and each step
 * must see the records the one before committed. Costs one lookup per identity, never a walk
 * of the whole ledger.
 */
export function withRecordsOf<T extends OwnershipView>(ownership: T, keys: ReadonlySet<string>): T {
  const records = (): ReadonlyMap<string, OwnershipRecord> => {
    const all = ownership.records();
    const scoped = new Map<string, OwnershipRecord>();
    for (const key of keys) {
      const record = all.get(key);
      if (record) scoped.set(key, record);
    }
    return scoped;
  };
  return new Proxy(ownership, {
    get(target, property) {
      if (property === 'records') return records;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * The read-back proof for every SA these steps added with a resume value: one whose counter in
 * the dump is below it did not get the value (the kernel ignored the attribute), so it may be
 * repeating sequence numbers of its key. Its key is retired first (durably: even a crash right
 * after must not let it be installed again), then the SA is deleted. Returns the refusals.
 */
async function retireUnproven(kernel: KernelTables, ownership: OwnershipStore, steps: readonly Step[], observed: ObservedTables, now: number): Promise<SequenceRefusal[]> {
  const byKey = new Map(observed.states.map((sa) => [stateKey(sa.id), sa]));
  const unproven: RestartedCounter[] = [];
  for (const step of steps) {
    if (step.target !== 'state' || step.op === 'delete' || step.op === 'update') continue;
    const resume = step.entry.resumeSequence;
    if (resume === undefined) continue;
    const found = byKey.get(step.key);
    // Gone (deleted meanwhile) or someone else's SA under that identity: nothing of ours to prove.
    if (!found || ownership.usageKey(found) !== ownership.usageKey(step.entry)) continue;
    const why = resumeNotTaken(resume, found);
    if (why !== undefined) unproven.push({ resource: step.resource, key: step.key, sa: found, why: `${why}; the SA was deleted again` });
  }
  return retire(kernel, ownership, unproven, now);
}

/**
 * Retires the keys of these SAs (durably first: even a crash right after must not let one be
 * installed again), then deletes the SAs. Returns the refusals their resources report.
 */
async function retire(kernel: KernelTables, ownership: OwnershipStore, unproven: readonly RestartedCounter[], now: number): Promise<SequenceRefusal[]> {
  if (unproven.length === 0) return [];
  const retired = unproven.map(({ sa, why }) => {
    const key = ownership.usageKey(sa);
    return retiredUsage(key, ownership.usage(key), 'needs-rekey', why, now);
  });
  try {
    await ownership.commit({ usage: retired });
  } catch {
    // Deleting matters more than recording why: the next pass finds the key installed before
    // with its SA gone and refuses it again (its history still holds the mark).
  }
  // A failed delete is found again by the next pass's guard (the key is retired, the SA still ours).
  await kernel.apply(unproven.map(({ sa }) => ({ op: 'delete-state' as const, id: sa.id }))).catch(() => undefined);
  return unproven.map(({ resource, key, sa, why }) => ({ resource, key, reason: 'NeedsRekey' as const, message: refusalMessage(resource, sa, why) }));
}

/**
 * After a failed or stopped run: settle the records from a fresh dump, so the ledger says what
 * the kernel holds after the rollback, and prove the resume values of the SAs the rollback
 * added back. Best effort: when the ledger cannot be written, the next run settles the same
 * records from its own dump.
 */
async function settleFromDump(kernel: KernelTables, ownership: OwnershipStore, options: ConvergeOptions, rolledBack: readonly Step[], neverInstalled: readonly NeverInstalled[] = []): Promise<SequenceRefusal[]> {
  try {
    const after = await survey(kernel, ownership, options);
    const { set, remove } = after.plan.ledger;
    const forget = unclaimedAfter(neverInstalled, set, remove, ownership);
    if (set.length > 0 || remove.length > 0 || forget.length > 0) await ownership.commit({ set, remove, forget });
    return await retireUnproven(kernel, ownership, rolledBack, after.observed, (options.now ?? wallClock)());
  } catch {
    return []; // see above
  }
}

/**
 * The install marks of refused new keys that go with this settlement: a key the kernel refused
 * never counted a packet, so once no record claims its content it is new again (when the cause
 * is fixed it installs from 0 instead of "installed before" with a counter the rule would have
 * to guess, ./sequence-rule.ts). In the same write as the records, never before: a mark gone
 * while an intent for the content stays would read as "installed before, no mark known". A
 * stop before this write keeps the mark: the careful side.
 */
function unclaimedAfter(refused: readonly NeverInstalled[], set: readonly OwnershipRecord[], remove: readonly string[], ownership: OwnershipStore): string[] {
  const removed = new Set(remove);
  const forget: string[] = [];
  for (const { usageKey, recordKey, sa } of refused) {
    const record = set.find((candidate) => candidate.key === recordKey) ?? (removed.has(recordKey) ? undefined : ownership.records().get(recordKey));
    if (!record || !recordClaims(record, ownership.intentFingerprint(sa))) forget.push(usageKey);
  }
  return forget;
}

function withoutResources(options: ConvergeOptions, resources: ReadonlySet<string>): ConvergeOptions {
  const desired: DesiredTables = {
    states: options.desired.states.filter((entry) => !resources.has(entry.resource)),
    policies: options.desired.policies.filter((entry) => !resources.has(entry.resource)),
  };
  return { ...options, desired, protect: new Set([...(options.protect ?? []), ...resources]) };
}
