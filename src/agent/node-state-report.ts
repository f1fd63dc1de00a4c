/**
 * The node's IpsecNodeState status after a reconcile, from what the pass found and did. Pure:
 * the agent gathers the inputs (kernel dump, ledger, /proc/crypto, the clock) and writes the
 * result; the shape is the contract in ../crd/node-state.ts.
 */
import { setCondition, type Condition } from '../kube/conditions.js';
import { statusEqual } from '../kube/status.js';
import { MAX_LISTED_REPORTS, MAX_REPORT_MESSAGE, type EncapsulationSocketReport, type IpsecNodeStateStatus, type ResourceReport } from '../crd/node-state.js';
import type { NodeMeshReport } from '../crd/mesh-contract.js';
import { appliedSetDigest } from '../crd/applied-set.js';
import { capMessage } from '../crd/echo.js';

/**
 * How one selected resource (or one this node still holds entries of) came out of a pass
 * (./node-reconciler.ts). Applied ones carry what the digest of `status.applied` needs; the
 * others become the reports of `status.resources`.
 */
export type ResourceOutcome =
  | (ResourceReport & { readonly uid?: string })
  | {
      readonly kind: ResourceReport['kind'];
      readonly name: string;
      readonly uid: string;
      readonly generation: number;
      readonly state: 'Applied';
      readonly reason?: string;
      readonly message?: string;
      readonly entries?: number;
    };

/**
 * How stale lastAttemptTime and lastSyncTime may grow while nothing else changes. Refreshing
 * them on every resync would make every resync of every agent a write (and a watch event to
 * the controller and every other watcher); a heartbeat of minutes still shows an agent that
 * stopped reconciling.
 */
export const HEARTBEAT_SECONDS = 300;

export interface NodeStateInputs {
  readonly converged: boolean;
  readonly reports: readonly ResourceOutcome[];
  /** Entries in the kernel dump after the pass. */
  readonly kernelStates: number;
  readonly kernelPolicies: number;
  /** What the ledger says is ours. */
  readonly owned: Iterable<{ readonly target: 'state' | 'policy' }>;
  readonly lastSync: Date | undefined;
  /** The conditions last written (lastTransitionTime moves only when a status changes). */
  readonly conditions: readonly Condition[];
  readonly now: Date;
  readonly agentVersion: string;
  readonly kernelRelease: string;
  readonly algorithms: Readonly<Record<string, readonly string[]>>;
  readonly driftRepairs: number;
  readonly encapsulationSockets: readonly EncapsulationSocketReport[];
  /** The meshes' reports (../agent/mesh-worker.ts); absent or empty: none. */
  readonly meshes?: readonly NodeMeshReport[];
  /** The status as last written (or read back): its times are kept while nothing else moved. */
  readonly previous?: IpsecNodeStateStatus | undefined;
  /** Default HEARTBEAT_SECONDS. */
  readonly heartbeatSeconds?: number;
}

/** metav1.Time: RFC 3339 with whole seconds. */
export function apiTime(time: Date): string {
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The status to write. Equal to `previous` (so the writer skips the write) when only the
 * times would move and the previous attempt is younger than the heartbeat.
 */
export function nodeStateStatus(inputs: NodeStateInputs): IpsecNodeStateStatus & { readonly conditions: Condition[] } {
  const next = freshStatus(inputs);
  const previous = inputs.previous;
  const heartbeatMs = (inputs.heartbeatSeconds ?? HEARTBEAT_SECONDS) * 1000;
  const lastAttempt = previous?.lastAttemptTime === undefined ? Number.NaN : Date.parse(previous.lastAttemptTime);
  if (previous === undefined || !(inputs.now.getTime() - lastAttempt < heartbeatMs)) return next;
  const withoutTimes = ({ lastAttemptTime: _attempt, lastSyncTime: _sync, ...rest }: IpsecNodeStateStatus) => rest;
  if (!statusEqual(withoutTimes(next), withoutTimes(previous))) return next;
  // Both converged or both not: a lastSyncTime appears once and then only moves on.
  if ((next.lastSyncTime === undefined) !== (previous.lastSyncTime === undefined)) return next;
  return { ...next, lastAttemptTime: previous.lastAttemptTime!, ...(previous.lastSyncTime === undefined ? {} : { lastSyncTime: previous.lastSyncTime }) };
}

function freshStatus(inputs: NodeStateInputs): IpsecNodeStateStatus & { readonly conditions: Condition[] } {
  const failed = inputs.reports.filter((report) => report.state === 'Failed').length;
  const { applied, listed, unlisted } = resourcesPart(inputs.reports);
  const conditions = setCondition(
    [...inputs.conditions],
    inputs.converged && failed === 0
      ? { type: 'Ready', status: 'True', reason: 'Synced', message: 'the kernel holds every selected resource' }
      : { type: 'Ready', status: 'False', reason: failed > 0 ? 'ResourcesFailed' : 'NotConverged', message: failed > 0 ? `${failed} resource(s) not applied` : 'the kernel does not match yet' },
    inputs.now,
  );
  let ownedStates = 0;
  let ownedPolicies = 0;
  for (const record of inputs.owned) {
    if (record.target === 'state') ownedStates++;
    else ownedPolicies++;
  }
  return {
    ...(inputs.lastSync ? { lastSyncTime: apiTime(inputs.lastSync) } : {}),
    lastAttemptTime: apiTime(inputs.now),
    agentVersion: inputs.agentVersion,
    kernelRelease: inputs.kernelRelease,
    algorithms: inputs.algorithms,
    entries: {
      ownedStates,
      ownedPolicies,
      // Never negative: a record whose entry is gone (being repaired) is not someone else's entry.
      foreignStates: Math.max(0, inputs.kernelStates - ownedStates),
      foreignPolicies: Math.max(0, inputs.kernelPolicies - ownedPolicies),
    },
    driftRepairs: inputs.driftRepairs,
    applied,
    resources: listed,
    ...(unlisted > 0 ? { unlistedReports: unlisted } : {}),
    encapsulationSockets: inputs.encapsulationSockets,
    ...meshesOf(inputs),
    conditions,
  };
}

/**
 * The bounded form of the pass's outcomes: the applied ones as a count and a digest, the others
 * listed (at most MAX_LISTED_REPORTS, removals first: a deletion waits for them) with their
 * messages capped, and the rest counted. The order within each group is the pass's (resources
 * by age), so the same outcomes give the same status and no write.
 */
function resourcesPart(outcomes: readonly ResourceOutcome[]): { applied: NonNullable<IpsecNodeStateStatus['applied']>; listed: ResourceReport[]; unlisted: number } {
  const appliedMembers = [];
  const removals: ResourceReport[] = [];
  const others: ResourceReport[] = [];
  for (const outcome of outcomes) {
    if (outcome.state === 'Applied') {
      appliedMembers.push({ kind: outcome.kind, name: outcome.name, uid: outcome.uid, generation: outcome.generation });
      continue;
    }
    const { uid: _uid, ...report } = outcome;
    const capped = report.message === undefined ? report : { ...report, message: capMessage(report.message, MAX_REPORT_MESSAGE) };
    (report.state === 'Removed' || report.reason === 'Deleting' ? removals : others).push(capped);
  }
  const all = [...removals, ...others];
  return { applied: appliedSetDigest(appliedMembers), listed: all.slice(0, MAX_LISTED_REPORTS), unlisted: Math.max(0, all.length - MAX_LISTED_REPORTS) };
}

/** Absent when there are none: a cluster without meshes writes what it wrote before meshes existed. */
function meshesOf(inputs: NodeStateInputs): { meshes?: readonly NodeMeshReport[] } {
  return inputs.meshes !== undefined && inputs.meshes.length > 0 ? { meshes: inputs.meshes } : {};
}
