/**
 * One convergence pass for one namespace: dump the kernel, plan against the desired tables and
 * the ledger, apply, then dump and plan again to verify that the kernel now matches. The CLI's
 * `apply` and the node agent both run exactly this.
 */
import { applyPlan, type ApplyReport, type KernelWriter, type OwnershipStore } from '../apply/applier.js';
import { plan, type DesiredTables, type ObservedTables, type Plan, type Step } from '../plan/planner.js';
import { describePolicy, describeState } from '../plan/describe.js';
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { stateKey } from '../plan/identity.js';
import { unsupportedFields, type KernelFeatures } from '../xfrm/kernel-features.js';
import type { OwnershipView } from '../ownership/settle.js';

export interface KernelTables extends KernelWriter {
  /** A consistent dump of both tables (socket policies excluded). */
  dump(): Promise<ObservedTables>;
  /**
   * What the kernel keeps (learned when the tables were opened, ./kernel.ts). Absent (fakes
   * of older tests): desired fields are not checked before planning; the verifying pass still
   * stops on a field the kernel did not keep.
   */
  readonly features?: KernelFeatures;
}

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
}

/**
 * Every outcome carries `unsupported`: with conflicts `skip` those entries were left out (and
 * their resources protected) and the rest went ahead; with `refuse` any of them is outcome
 * `unsupported` and nothing is applied (`plan` then shows the rest, not applied).
 */
export type ConvergeResult = (
  | { readonly outcome: 'planned'; readonly plan: Plan }
  | { readonly outcome: 'unsupported'; readonly plan: Plan }
  | { readonly outcome: 'conflict'; readonly plan: Plan }
  | { readonly outcome: 'failed'; readonly plan: Plan; readonly report: ApplyReport }
  | { readonly outcome: 'applied'; readonly plan: Plan; readonly report: ApplyReport; readonly remaining: Plan }
  | { readonly outcome: 'not-kept'; readonly plan: Plan; readonly report: ApplyReport; readonly remaining: Plan; readonly notKept: readonly NotKept[] }
) & { readonly unsupported: readonly UnsupportedEntry[] };

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
  ownership: OwnershipView,
  options: Pick<ConvergeOptions, 'desired' | 'prune' | 'protect'>,
): Promise<Plan> {
  const observed = await kernel.dump();
  const full = plan({ desired: options.desired, observed, ownership });
  const protect = options.protect ?? new Set<string>();
  const keep = (step: Plan['steps'][number]) => step.op !== 'delete' || (options.prune && !protect.has(step.resource));
  return { ...full, steps: full.steps.filter(keep) };
}

export async function converge(kernel: KernelTables, ownership: OwnershipStore, given: ConvergeOptions): Promise<ConvergeResult> {
  // Known before planning: an entry the kernel would install without one of its fields is
  // never planned (it would be replaced on every pass). It is left out and its resource's
  // existing entries are protected, like any other resource set aside.
  const unsupported = kernelUnsupported(given.desired, kernel.features);
  const options = unsupported.length === 0 ? given : withoutResources(given, new Set(unsupported.map((entry) => entry.resource)));
  const refuse = (options.conflicts ?? 'refuse') === 'refuse';
  const planned = await planFor(kernel, ownership, options);
  if (unsupported.length > 0 && refuse) return { outcome: 'unsupported', plan: planned, unsupported };
  if (options.dryRun) return { outcome: 'planned', plan: planned, unsupported };
  // All or nothing: a conflict would leave the set half-applied, so nothing is done.
  if (planned.conflicts.length > 0 && refuse) return { outcome: 'conflict', plan: planned, unsupported };
  const report = await applyPlan(planned, kernel, ownership);
  if (report.failures.length > 0 || report.stopped !== undefined) {
    await settleFromDump(kernel, ownership, options);
    return { outcome: 'failed', plan: planned, report, unsupported };
  }
  // An empty plan wrote no intents and changed nothing in the kernel: the dump it was made from
  // already verifies it (a second dump of 10,000 entries would only find the same again).
  if (planned.steps.length === 0) return { outcome: 'applied', plan: planned, report, remaining: planned, unsupported };
  const remaining = await planFor(kernel, ownership, options);
  // The verifying dump settles the intents this run wrote (creations become `present` with the
  // incarnation the kernel gave them), so the ledger ends the run as exact as the kernel.
  if (remaining.ledger.set.length > 0 || remaining.ledger.remove.length > 0) await ownership.commit({ set: remaining.ledger.set, remove: remaining.ledger.remove });
  const dropped = notKept(report.applied, remaining);
  if (dropped.length > 0) return { outcome: 'not-kept', plan: planned, report, remaining, notKept: dropped, unsupported };
  return { outcome: 'applied', plan: planned, report, remaining, unsupported };
}

/**
 * After a failed or stopped run: settle the records from a fresh dump, so the ledger says what
 * the kernel holds after the rollback. Best effort: when the ledger cannot be written, the next
 * run settles the same records from its own dump.
 */
async function settleFromDump(kernel: KernelTables, ownership: OwnershipStore, options: ConvergeOptions): Promise<void> {
  try {
    const after = await planFor(kernel, ownership, options);
    if (after.ledger.set.length > 0 || after.ledger.remove.length > 0) await ownership.commit({ set: after.ledger.set, remove: after.ledger.remove });
  } catch {
    // see above
  }
}

function withoutResources(options: ConvergeOptions, resources: ReadonlySet<string>): ConvergeOptions {
  const desired: DesiredTables = {
    states: options.desired.states.filter((entry) => !resources.has(entry.resource)),
    policies: options.desired.policies.filter((entry) => !resources.has(entry.resource)),
  };
  return { ...options, desired, protect: new Set([...(options.protect ?? []), ...resources]) };
}
