/**
 * The targeted drift repair: someone else changed or removed a few identities of ours (the
 * kernel events named them, ./drift-watch.ts), so only those are read (GETSA / GETPOLICY),
 * planned and applied, instead of dumping and planning every table of the node.
 *
 * It runs the engine's one convergence pass (../engine/converge.ts) over a part of the node:
 * - the kernel: a "dump" that is the read of the touched identities, and the real writes;
 * - the ledger: the real one, seen through a view that holds the records of those identities
 *   only (every intent before the kernel change, every settlement after, every incarnation
 *   through the same commits: the ownership rules of docs/design.md, the sequence rule of
 *   ../engine/sequence-rule.ts — an SA added again resumes past its mark or is refused);
 * - the desired entries: those of the last full pass for those identities, with the resources
 *   it set aside protected as it protected them.
 * That is the part of the full plan the events can have changed: every other identity matched
 * in the last full pass, and what someone changes there meanwhile sends its own event. The
 * verifying pass reads the same identities back. A foreign entry now holding one of our
 * identities is a conflict, as in the full pass, and left alone.
 *
 * What it does not do, but leaves to the full reconcile (the caller runs it): identities of an
 * IpsecMesh (its rotation decides its entries each pass), SAs with UDP encapsulation (their
 * sockets follow a full dump), and any outcome that changes what a resource reports (a
 * conflict, a refusal, a kernel error, a resource the last full pass set aside): the report
 * comes from the full pass. The periodic full resync stays the safety net.
 *
 * Pure except `repairTouched`, which is the I/O edge.
 */
import type { StepFailure, OwnershipStore } from '../apply/applier.js';
import { converge, withRecordsOf, type ConvergeResult, type KernelTables } from '../engine/converge.js';
import type { OwnershipRecord } from '../ownership/records.js';
import { desiredPolicyKey, desiredStateKey, stateKey, stateLookupKey } from '../plan/identity.js';
import type { DesiredEntry, DesiredTables, Plan, Step } from '../plan/planner.js';
import type { PolicyId, SecurityAssociation, SecurityPolicy, StateId } from '../xfrm/types.js';
import type { Concern, TouchedIdentity } from './drift-watch.js';
import { MESH_RESOURCE_PREFIX } from './mesh-worker.js';

/** What the last full pass decided, which a targeted repair plans against. */
export interface RepairBasis {
  /** The desired entries the last full pass converged to (its last round), by identity key. */
  readonly states: ReadonlyMap<string, DesiredEntry<SecurityAssociation>>;
  readonly policies: ReadonlyMap<string, DesiredEntry<SecurityPolicy>>;
  /** Resources whose owned entries that pass kept though not desired (set aside, mesh). */
  readonly protect: ReadonlySet<string>;
  /** Resources that pass reported as not applied (a repair would change their report). */
  readonly setAside: ReadonlySet<string>;
  /** SA lookup keys (../plan/identity.ts stateLookupKey) of every desired and owned SA then. */
  readonly stateLookups: ReadonlySet<string>;
}

/** The basis from a full pass's desired tables and set-aside resources, and the ledger after it. */
export function repairBasis(desired: DesiredTables, protect: ReadonlySet<string>, setAside: ReadonlySet<string>, records: ReadonlyMap<string, OwnershipRecord>): RepairBasis {
  const states = new Map<string, DesiredEntry<SecurityAssociation>>();
  const stateLookups = new Set<string>();
  for (const entry of desired.states) {
    states.set(desiredStateKey(entry.entry.id), entry);
    stateLookups.add(stateLookupKey(entry.entry.id));
  }
  for (const record of records.values()) if (record.target === 'state') stateLookups.add(lookupOfKey(record.key));
  const policies = new Map<string, DesiredEntry<SecurityPolicy>>();
  for (const entry of desired.policies) policies.set(desiredPolicyKey(entry.entry.id), entry);
  return { states, policies, protect, setAside, stateLookups };
}

/** The lookup part of an SA identity key: stateKey is stateLookupKey followed by ` mark …`. */
function lookupOfKey(key: string): string {
  const at = key.indexOf(' mark ');
  return at < 0 ? key : key.slice(0, at);
}

/**
 * Whether an identity someone else touched is ours, and so whether the event queues anything:
 * `targeted` when the ledger records it or the last full pass desired it; `full` when it is an
 * SA that only shares the kernel's lookup with one of ours (another mark: the lookup under mask
 * may now find it for ours), or when there is no basis to judge by (before the first full
 * pass, or after the caches changed until the full pass they asked for); `none` for another
 * program's entry.
 */
export function concernOf(touched: TouchedIdentity, basis: RepairBasis | undefined, records: ReadonlyMap<string, OwnershipRecord>): Concern {
  const owner = records.get(touched.key)?.resource ?? (touched.target === 'state' ? basis?.states.get(touched.key) : basis?.policies.get(touched.key))?.resource;
  if (owner !== undefined) return owner.startsWith(MESH_RESOURCE_PREFIX) ? 'full' : 'targeted';
  if (!basis) return 'full';
  if (touched.target === 'state' && basis.stateLookups.has(stateLookupKey(touched.id))) return 'full';
  return 'none';
}

/** What a targeted repair plans over: the touched identities, their desired entries, what to read. */
export interface TargetedInputs {
  readonly keys: ReadonlySet<string>;
  readonly desired: DesiredTables;
  readonly ids: { readonly states: readonly StateId[]; readonly policies: readonly PolicyId[] };
  /** The resources these identities belong to (in the ledger or desired). */
  readonly resources: ReadonlySet<string>;
}

/** The inputs of a targeted repair, or why the full reconcile must do it instead. */
export function targetedInputs(touched: readonly TouchedIdentity[], basis: RepairBasis, records: ReadonlyMap<string, OwnershipRecord>): TargetedInputs | { readonly full: string } {
  const keys = new Set<string>();
  const states: DesiredEntry<SecurityAssociation>[] = [];
  const policies: DesiredEntry<SecurityPolicy>[] = [];
  const ids: { states: StateId[]; policies: PolicyId[] } = { states: [], policies: [] };
  const resources = new Set<string>();
  for (const identity of touched) {
    if (keys.has(identity.key)) continue;
    keys.add(identity.key);
    const desired = identity.target === 'state' ? basis.states.get(identity.key) : basis.policies.get(identity.key);
    const owner = records.get(identity.key)?.resource;
    for (const resource of [desired?.resource, owner]) {
      if (resource === undefined) continue;
      if (resource.startsWith(MESH_RESOURCE_PREFIX)) return { full: `${identity.key} belongs to ${resource}` };
      if (basis.setAside.has(resource)) return { full: `${resource} was set aside by the last full pass` };
      resources.add(resource);
    }
    if (identity.target === 'state') {
      const entry = desired as DesiredEntry<SecurityAssociation> | undefined;
      if (entry?.entry.encapsulation !== undefined) return { full: `${identity.key} is encapsulated (its socket follows a full dump)` };
      if (entry) states.push(entry);
      ids.states.push(identity.id);
    } else {
      if (desired) policies.push(desired as DesiredEntry<SecurityPolicy>);
      ids.policies.push(identity.id);
    }
  }
  return { keys, desired: { states, policies }, ids, resources };
}

/** A targeted repair's result: what it changed, and whether the full reconcile must follow. */
export interface TargetedRepair {
  /** Kernel changes made (0: the kernel already matched, or nothing could be done here). */
  readonly changes: number;
  readonly applied: readonly Step[];
  readonly failures: readonly StepFailure[];
  /** Why the full reconcile must run now (its report, or what this could not do), if it must. */
  readonly full: string | undefined;
  /** The plan this repair applied (empty when it applied nothing). */
  readonly plan: Plan;
}

/** Why a converge over the touched identities leaves something to the full pass, or undefined. */
export function leftToFullPass(result: ConvergeResult): string | undefined {
  if (result.outcome === 'failed') return result.report.stopped ?? `the kernel refused ${result.report.failures.length} change(s)`;
  if (result.outcome !== 'applied') return `outcome ${result.outcome}`;
  if (result.plan.conflicts.length > 0) return `conflict: ${result.plan.conflicts[0]!.key}: ${result.plan.conflicts[0]!.reason}`;
  if (result.sequence.length > 0) return `sequence rule: ${result.sequence[0]!.reason}`;
  if (result.unsupported.length > 0) return 'unsupported by the kernel';
  if (result.remaining.steps.length > 0) return 'not converged after the repair';
  return undefined;
}

/** The kernel as a targeted repair sees it: its "dump" reads just these identities. */
export function touchedTables(kernel: KernelTables & Required<Pick<KernelTables, 'read'>>, ids: TargetedInputs['ids']): KernelTables {
  return {
    ...(kernel.features ? { features: kernel.features } : {}),
    dump: () => kernel.read(ids),
    read: (some) => kernel.read(some),
    apply: (changes) => kernel.apply(changes),
  };
}

/**
 * The repair itself: read, plan, apply through the ledger, read back — over the touched
 * identities only. Throws only what converge throws (the ledger or the socket failed).
 */
export async function repairTouched(
  inputs: TargetedInputs,
  basis: RepairBasis,
  kernel: KernelTables & Required<Pick<KernelTables, 'read'>>,
  ledger: OwnershipStore,
): Promise<TargetedRepair> {
  const result = await converge(touchedTables(kernel, inputs.ids), withRecordsOf(ledger, inputs.keys), {
    desired: inputs.desired,
    prune: true,
    dryRun: false,
    conflicts: 'skip',
    protect: basis.protect,
  });
  const full = leftToFullPass(result);
  const applied = result.outcome === 'applied' || result.outcome === 'not-kept' || result.outcome === 'failed' ? result.report.applied : [];
  const failures = result.outcome === 'failed' ? result.report.failures : [];
  return { changes: result.outcome === 'applied' || result.outcome === 'not-kept' ? result.plan.steps.length : 0, applied, failures, full, plan: result.plan };
}

/** The SAs among the touched identities, as keys (for the bookkeeping after a repair). */
export function touchedStateKeys(inputs: TargetedInputs): Set<string> {
  return new Set(inputs.ids.states.map((id) => stateKey(id)));
}
