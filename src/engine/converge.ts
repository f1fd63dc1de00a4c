/**
 * One convergence pass for one namespace: dump the kernel, plan against the desired tables and
 * the ledger, apply, then dump and plan again to verify that the kernel now matches. The CLI's
 * `apply` and the node agent both run exactly this.
 */
import { applyPlan, type ApplyReport, type KernelWriter, type OwnershipStore } from '../apply/applier.js';
import { plan, type DesiredTables, type ObservedTables, type Plan } from '../plan/planner.js';

export interface KernelTables extends KernelWriter {
  /** A consistent dump of both tables (socket policies excluded). */
  dump(): Promise<ObservedTables>;
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

export type ConvergeResult =
  | { readonly outcome: 'planned'; readonly plan: Plan }
  | { readonly outcome: 'conflict'; readonly plan: Plan }
  | { readonly outcome: 'failed'; readonly plan: Plan; readonly report: ApplyReport }
  | { readonly outcome: 'applied'; readonly plan: Plan; readonly report: ApplyReport; readonly remaining: Plan };

export async function planFor(
  kernel: KernelTables,
  ownership: Pick<OwnershipStore, 'records' | 'fingerprint'>,
  options: Pick<ConvergeOptions, 'desired' | 'prune' | 'protect'>,
): Promise<Plan> {
  const observed = await kernel.dump();
  const full = plan({ desired: options.desired, observed, owned: ownership.records(), fingerprint: (entry) => ownership.fingerprint(entry) });
  const protect = options.protect ?? new Set<string>();
  const keep = (step: Plan['steps'][number]) => step.op !== 'delete' || (options.prune && !protect.has(step.resource));
  return { ...full, steps: full.steps.filter(keep), forget: full.forget };
}

export async function converge(kernel: KernelTables, ownership: OwnershipStore, options: ConvergeOptions): Promise<ConvergeResult> {
  const planned = await planFor(kernel, ownership, options);
  if (options.dryRun) return { outcome: 'planned', plan: planned };
  // All or nothing: a conflict would leave the set half-applied, so nothing is done.
  if (planned.conflicts.length > 0 && (options.conflicts ?? 'refuse') === 'refuse') return { outcome: 'conflict', plan: planned };
  const report = await applyPlan(planned, kernel, ownership);
  if (report.failures.length > 0) return { outcome: 'failed', plan: planned, report };
  const remaining = await planFor(kernel, ownership, options);
  return { outcome: 'applied', plan: planned, report, remaining };
}
