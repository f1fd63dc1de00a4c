/**
 * The node's IpsecNodeState status after a reconcile, from what the pass found and did. Pure:
 * the agent gathers the inputs (kernel dump, ledger, /proc/crypto, the clock) and writes the
 * result; the shape is the contract in ../crd/node-state.ts.
 */
import { setCondition, type Condition } from '../kube/conditions.js';
import type { EncapsulationSocketReport, IpsecNodeStateStatus, ResourceReport } from '../crd/node-state.js';

export interface NodeStateInputs {
  readonly converged: boolean;
  readonly reports: readonly ResourceReport[];
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
}

/** metav1.Time: RFC 3339 with whole seconds. */
export function apiTime(time: Date): string {
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function nodeStateStatus(inputs: NodeStateInputs): IpsecNodeStateStatus & { readonly conditions: Condition[] } {
  const failed = inputs.reports.filter((report) => report.state === 'Failed').length;
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
    resources: inputs.reports,
    encapsulationSockets: inputs.encapsulationSockets,
    conditions,
  };
}
