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
}

export type ConvergeResult =
  | { readonly outcome: 'planned'; readonly plan: Plan }
  | { readonly outcome: 'conflict'; readonly plan: Plan }
  | { readonly outcome: 'failed'; readonly plan: Plan; readonly report: ApplyReport }
  | { readonly outcome: 'applied'; readonly plan: Plan; readonly report: ApplyReport; readonly remaining: Plan };

export async function planFor(kernel: KernelTables, ownership: Pick<OwnershipStore, 'records' | 'fingerprint'>, options: Pick<ConvergeOptions, 'desired' | 'prune'>): Promise<Plan> {
  const observed = await kernel.dump();
  const full = plan({ desired: options.desired, observed, owned: ownership.records(), fingerprint: (entry) => ownership.fingerprint(entry) });
  return options.prune ? full : { ...full, steps: full.steps.filter((step) => step.op !== 'delete') };
}

export async function converge(kernel: KernelTables, ownership: OwnershipStore, options: ConvergeOptions): Promise<ConvergeResult> {
  const planned = await planFor(kernel, ownership, options);
  if (options.dryRun) return { outcome: 'planned', plan: planned };
  // All or nothing: a conflict would leave the set half-applied, so nothing is done.
  if (planned.conflicts.length > 0) return { outcome: 'conflict', plan: planned };
  const report = await applyPlan(planned, kernel, ownership);
  if (report.failures.length > 0) return { outcome: 'failed', plan: planned, report };
  const remaining = await planFor(kernel, ownership, options);
  return { outcome: 'applied', plan: planned, report, remaining };
}
