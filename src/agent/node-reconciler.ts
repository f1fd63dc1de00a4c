/**
 * One reconcile of one node: from the resources the agent's caches hold to the kernel, with a
 * report per resource for the node's IpsecNodeState.
 *
 * Isolation between resources is the point of this module. The engine applies a plan all or
 * nothing; here a resource that cannot be built (missing Secret, wrong key), loses an identity
 * to an older resource, or is refused by the kernel is set aside — its last good entries are
 * kept, never pruned — and everything else is applied without it.
 */
import type { IpsecResource } from '../crd/types.js';
import { desiredTables } from '../model/desired.js';
import type { ResourceSet } from '../model/manifests.js';
import { compareResourceAge, resourceName } from '../model/ordering.js';
import { selectsNode } from '../model/node-selector.js';
import { converge, type KernelTables } from '../engine/converge.js';
import type { OwnershipStore, StepFailure } from '../apply/applier.js';
import type { DesiredTables, Plan, Step } from '../plan/planner.js';
import { describeStep } from '../plan/describe.js';
import { stateKey } from '../plan/identity.js';
import { refusedEncapsulations } from './encap-sockets.js';
import { exemptionOptOuts, withEncapExemptions } from './encap-exemptions.js';
import type { ResourceOutcome } from './node-state-report.js';
import type { SecurityAssociation } from '../xfrm/types.js';

export interface NodeInputs {
  /** Every SecurityAssociation and IpsecPolicy in the cluster (the agent filters). */
  readonly resources: readonly (IpsecResource & { metadata: { creationTimestamp?: string } })[];
  readonly secrets: ResourceSet['secrets'];
  readonly nodeLabels: Readonly<Record<string, string>>;
  readonly resolveDevice: (name: string) => number | undefined;
  /**
   * Resources whose applied change the kernel acknowledged and did not keep (KernelDidNotKeep),
   * by name, with the generation that asked for it. The agent keeps this map across passes and
   * reconcileNode updates it: such a resource stays set aside until it changes, instead of being
   * applied again (an SA replaced) on every resync.
   */
  readonly notKept?: Map<string, { readonly generation: number; readonly message: string }>;
  /**
   * Entries that are not built from resources here: the IpsecMeshes' (./mesh-worker.ts), under
   * their own resource names, with the mesh resources whose entries must be kept as they are.
   */
  readonly extra?: { readonly desired: DesiredTables; readonly protect: ReadonlySet<string> };
}

export interface NodeReconcileResult {
  /** Every selected resource (and every one this node still holds entries of), Applied ones too. */
  readonly reports: ResourceOutcome[];
  /** Steps the kernel accepted and kept, over every round. */
  readonly applied: readonly Step[];
  /** Kernel refusals, over every round (each set its resource aside). */
  readonly failures: readonly StepFailure[];
  /** Kernel changes made by this pass (0 when the kernel already matched). */
  readonly changes: number;
  /** Whether the kernel matches everything that could be applied. */
  readonly converged: boolean;
  readonly plan: Plan;
  /**
   * The SAs every selected resource asks for, refused ones included, and whether every resource
   * could be built (else some key is unknown): what the usage history's retention
   * (../ownership/retention.ts) must keep.
   */
  readonly desiredKeys: { readonly states: readonly SecurityAssociation[]; readonly complete: boolean };
  /** Every resource set aside by this pass (hand-written or not), with why. */
  readonly setAside: ReadonlyMap<string, { readonly reason: string; readonly message: string }>;
  /**
   * The desired tables the last round converged to and the resources it protected: what a
   * targeted drift repair plans against until the next full pass (./drift-repair.ts).
   */
  readonly basis: { readonly desired: DesiredTables; readonly protect: ReadonlySet<string> };
}

/** Bound on retries after kernel refusals: each round sets at least one resource aside. */
const MAX_ROUNDS = 8;

export async function reconcileNode(inputs: NodeInputs, kernel: KernelTables, ownership: OwnershipStore): Promise<NodeReconcileResult> {
  const ordered = [...inputs.resources].sort(compareResourceAge);
  const selected = ordered.filter((resource) => selectsNode(resource.spec.nodeSelector, inputs.nodeLabels));
  const live = selected.filter((resource) => !resource.metadata.deletionTimestamp);
  const set: ResourceSet = {
    securityAssociations: live.filter(isSa).map((resource) => ({ resource, source: undefined })),
    policies: live.filter(isPolicy).map((resource) => ({ resource, source: undefined })),
    secrets: inputs.secrets,
  };
  const built = desiredTables(set, { labels: undefined, resolveDevice: inputs.resolveDevice });
  const failures = new Map<string, { reason: string; message: string }>();
  for (const error of built.errors) {
    const object = error.object ?? '';
    const previous = failures.get(object);
    const reason = error.reason ?? 'InvalidSpec';
    failures.set(object, { reason: previous?.reason ?? reason, message: [previous?.message, `${error.path}: ${error.message}`].filter(Boolean).join('; ') });
  }
  for (const [resource, message] of refusedEncapsulations(built.tables.states)) failures.set(resource, { reason: 'UnsupportedEncapsulation', message });

  const generations = new Map(live.map((resource) => [resourceName(resource), resource.metadata.generation ?? 0]));
  for (const [name, seen] of inputs.notKept ?? []) {
    if (generations.get(name) !== seen.generation) inputs.notKept!.delete(name); // changed or gone: try again
    else if (!failures.has(name)) failures.set(name, { reason: 'KernelDidNotKeep', message: seen.message });
  }

  // An SA that vanished (a hand flush, a reboot) is restored by the engine's sequence rule
  // (../engine/sequence-rule.ts): past its persisted mark, or not at all (NeedsRekey, Expired).
  let desired: DesiredTables = inputs.extra
    ? { states: [...built.tables.states, ...inputs.extra.desired.states], policies: [...built.tables.policies, ...inputs.extra.desired.policies] }
    : built.tables;
  const kept = inputs.extra?.protect ?? new Set<string>();
  // ESP in TCP is set aside (above); inbound ESP in UDP gets the exemption for its carrier datagrams.
  desired = withEncapExemptions(without(desired, new Set(failures.keys())), { skip: exemptionOptOuts(live) });
  let changes = 0;
  const applied: Step[] = [];
  const refused: StepFailure[] = [];
  let lastPlan: Plan | undefined;
  let converged = false;
  let protect: ReadonlySet<string> = new Set();
  for (let round = 0; round < MAX_ROUNDS; round++) {
    protect = new Set([...failures.keys(), ...kept]);
    const result = await converge(kernel, ownership, { desired, prune: true, dryRun: false, conflicts: 'skip', protect });
    lastPlan = result.plan;
    // Keys the sequence rule will not install again: set aside (protected), reason NeedsRekey/Expired.
    for (const refusal of result.sequence) failures.set(refusal.resource, { reason: refusal.reason, message: refusal.message });
    // Fields this kernel would drop: refused before planning, the resource set aside.
    for (const entry of result.unsupported) failures.set(entry.resource, { reason: 'KernelUnsupported', message: `${entry.path}: ${entry.message}` });
    if (result.outcome === 'not-kept') {
      for (const entry of result.notKept) {
        failures.set(entry.resource, { reason: 'KernelDidNotKeep', message: entry.message });
        inputs.notKept?.set(entry.resource, { generation: generations.get(entry.resource) ?? 0, message: entry.message });
      }
    }
    for (const conflict of result.plan.conflicts) {
      if (!failures.has(conflict.resource)) failures.set(conflict.resource, { reason: 'Conflict', message: conflict.reason });
    }
    if (result.outcome === 'failed') {
      // The ledger could not be written, or the kernel's answer is unknown: nothing is set
      // aside (no resource is at fault); the reconcile fails and is retried with backoff.
      if (result.report.failures.length === 0 && result.report.stopped !== undefined) throw new Error(result.report.stopped);
      refused.push(...result.report.failures);
      for (const failure of result.report.failures) {
        failures.set(failure.step.resource, { reason: 'KernelRejected', message: `${describeStep(failure.step)}: ${failure.message} (${failure.code})` });
      }
      desired = without(desired, new Set(failures.keys()));
      continue;
    }
    if (result.outcome === 'applied' || result.outcome === 'not-kept') {
      changes += result.plan.steps.length;
      applied.push(...result.report.applied);
      converged = result.remaining.steps.length === 0;
    }
    break;
  }

  const entriesByResource = new Map<string, number>();
  for (const record of ownership.records().values()) entriesByResource.set(record.resource, (entriesByResource.get(record.resource) ?? 0) + 1);
  const reports: ResourceOutcome[] = selected.map((resource): ResourceOutcome => {
    const name = resourceName(resource);
    const entries = entriesByResource.get(name) ?? 0;
    const base = { kind: resource.kind, name: resource.metadata.name, uid: resource.metadata.uid ?? '', generation: resource.metadata.generation ?? 0, entries };
    if (resource.metadata.deletionTimestamp) return { ...base, state: entries === 0 ? 'Removed' : 'Failed', reason: entries === 0 ? 'Removed' : 'Deleting', message: entries === 0 ? 'entries removed' : 'entries not yet removed' };
    const failure = failures.get(name);
    if (failure) return { ...base, state: 'Failed', reason: failure.reason, message: failure.message };
    return { ...base, state: 'Applied', reason: 'Applied', message: `${entries} kernel entr${entries === 1 ? 'y' : 'ies'}` };
  });
  // Resources this node still holds entries for but no longer selects (or that are gone).
  const reported = new Set(reports.map((report) => `${report.kind}/${report.name}`));
  for (const [name, entries] of entriesByResource) {
    if (reported.has(name)) continue;
    const [kind, ...rest] = name.split('/');
    if (kind !== 'SecurityAssociation' && kind !== 'IpsecPolicy') continue;
    reports.push({ kind, name: rest.join('/'), state: 'Failed', reason: 'Deleting', message: 'entries of a resource this node no longer selects are being removed', entries });
  }
  return {
    reports,
    applied,
    failures: refused,
    changes,
    converged,
    plan: lastPlan ?? { steps: [], conflicts: [], ledger: { set: [], remove: [] } },
    desiredKeys: {
      states: [...built.tables.states, ...(inputs.extra?.desired.states ?? [])].map((entry) => entry.entry),
      complete: built.errors.length === 0 && kept.size === 0,
    },
    setAside: failures,
    basis: { desired, protect: new Set([...protect, ...failures.keys()]) },
  };
}

function isSa(resource: IpsecResource): resource is Extract<IpsecResource, { kind: 'SecurityAssociation' }> {
  return resource.kind === 'SecurityAssociation';
}

function isPolicy(resource: IpsecResource): resource is Extract<IpsecResource, { kind: 'IpsecPolicy' }> {
  return resource.kind === 'IpsecPolicy';
}

function without(tables: DesiredTables, resources: ReadonlySet<string>): DesiredTables {
  return {
    states: tables.states.filter((entry) => !resources.has(entry.resource)),
    policies: tables.policies.filter((entry) => !resources.has(entry.resource)),
  };
}
