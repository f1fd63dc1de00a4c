/**
 * The IpsecNodeState contract: what a node's agent writes about its node and what the
 * controller reads back. Both sides import these types from here (the API package), so neither
 * process depends on the other; the OpenAPI schema (`ipsecNodeStateSpec` and
 * `ipsecNodeStateStatus` in ./schema.ts) is the source of truth the API server enforces, and
 * test/unit/crd-node-state.test.ts checks these shapes against it.
 */
import type { Condition } from '../kube/conditions.js';
import type { NodeMeshReport } from './mesh-contract.js';

/**
 * A resource this node has not applied (`status.resources[]`): it failed, or it is being
 * removed (deleted, or no longer selected) and its entries are gone or still there. Applied
 * resources are not listed: `status.applied` proves them as a set (see AppliedSet).
 */
export interface ResourceReport {
  readonly kind: 'SecurityAssociation' | 'IpsecPolicy';
  readonly name: string;
  /** The resource's generation the agent tried. */
  readonly generation?: number;
  /** Failed: see reason and message (Deleting: entries not yet removed). Removed: its entries are gone. */
  readonly state: 'Failed' | 'Removed';
  /** CamelCase: KernelRejected, InvalidKey, MissingSecret, Conflict, Deleting, Removed, ... */
  readonly reason?: string;
  /** Detail, with the kernel's reason where there is one. Never key material. */
  readonly message?: string;
  /** Kernel entries of this resource that ipsec-operator holds on this node. */
  readonly entries?: number;
}

/**
 * At most this many reports are listed (the first ones in the order the agent reports: those
 * of resources being removed first, since deletions wait for them); the rest are counted in
 * `unlistedReports`. With 1 KiB messages, the list stays under 400 KB whatever the number of
 * resources.
 */
export const MAX_LISTED_REPORTS = 256;
/** Messages of listed reports are cut to this many characters (../crd/echo.ts capMessage). */
export const MAX_REPORT_MESSAGE = 1024;

/**
 * The resources the node applied, as a count and a digest (./applied-set.ts) of the set of
 * (kind, name, uid, generation): every resource the node selects, holds at that generation,
 * and does not list in `resources` — none of them is named. The controller compares it with
 * the set it expects (../controller/node-proofs.ts) and keeps the last set it proved.
 */
export interface AppliedSet {
  readonly resources: number;
  /** 32 lowercase hex digits. */
  readonly digest: string;
}

/**
 * A report of the first format (agents before `status.applied`): one per selected resource,
 * Applied ones included. The controller still reads a status of that format (an agent not yet
 * upgraded); no agent writes it any more.
 */
export interface LegacyResourceReport extends Omit<ResourceReport, 'state'> {
  readonly state: ResourceReport['state'] | 'Applied';
}

/** Counts of the node's kernel entries (`status.entries`). */
export interface NodeEntryCounts {
  readonly ownedStates: number;
  readonly ownedPolicies: number;
  /** Entries of other software: counted, never touched. */
  readonly foreignStates: number;
  readonly foreignPolicies: number;
}

/** A UDP encapsulation (NAT-T) socket the node's SAs need (`status.encapsulationSockets[]`). */
export interface EncapsulationSocketReport {
  /** Local address: the destination of the SAs. */
  readonly address: string;
  readonly port: number;
  readonly encapsulation: 'espinudp' | 'espinudp-nonike' | 'espintcp';
  readonly state: 'Held' | 'HeldElsewhere' | 'NotLocal' | 'Failed' | 'Unsupported' | 'Conflict';
  readonly message?: string;
  /** SecurityAssociation names. */
  readonly resources?: readonly string[];
}

export interface IpsecNodeStateSpec {
  readonly nodeName: string;
}

/** `status` of an IpsecNodeState. Written by that node's agent only. */
export interface IpsecNodeStateStatus {
  /** RFC 3339, whole seconds: when the kernel last matched the desired state (refreshed like lastAttemptTime). */
  readonly lastSyncTime?: string;
  /**
   * RFC 3339, whole seconds: when the agent last reconciled and wrote. Refreshed with any
   * other change of the status and at a heartbeat (../agent/node-state-report.ts
   * HEARTBEAT_SECONDS), not on every resync: a write per resync per node would wake every
   * watcher of IpsecNodeStates for nothing.
   */
  readonly lastAttemptTime?: string;
  readonly agentVersion?: string;
  /** `uname -r` of the node. */
  readonly kernelRelease?: string;
  /** Algorithms the kernel's crypto API offers, by kind (from /proc/crypto). */
  readonly algorithms?: Readonly<Record<string, readonly string[]>>;
  readonly entries?: NodeEntryCounts;
  readonly driftRepairs?: number;
  /** The resources applied: a count and a digest, never a list. */
  readonly applied?: AppliedSet;
  /** Resources not applied, at most MAX_LISTED_REPORTS of them. */
  readonly resources?: readonly ResourceReport[];
  /** Reports beyond MAX_LISTED_REPORTS: not listed, so this node proves no applied set meanwhile. */
  readonly unlistedReports?: number;
  readonly encapsulationSockets?: readonly EncapsulationSocketReport[];
  /** The IpsecMeshes this node takes part in or is leaving (./mesh-contract.ts); absent when none. */
  readonly meshes?: readonly NodeMeshReport[];
  readonly conditions?: readonly Condition[];
}

/** A status written by an agent of the first format: every resource listed, no `applied`. */
export type LegacyNodeStateStatus = Omit<IpsecNodeStateStatus, 'applied' | 'resources' | 'unlistedReports'> & {
  readonly applied?: undefined;
  readonly unlistedReports?: undefined;
  readonly resources?: readonly LegacyResourceReport[];
};

/**
 * An IpsecNodeState as the API returns it (cluster-scoped, named after its node). Its status is
 * of the current format (`applied` set) or, from an agent not yet upgraded, of the first.
 */
export interface IpsecNodeState {
  readonly apiVersion?: string;
  readonly kind?: 'IpsecNodeState';
  readonly metadata?: { readonly name?: string; readonly resourceVersion?: string };
  readonly spec?: IpsecNodeStateSpec;
  readonly status?: IpsecNodeStateStatus | LegacyNodeStateStatus;
}

/** What the controller reads of a status about the node's resources, in either format. */
export type ResourceStanding =
  | { readonly format: 'digest'; readonly applied: AppliedSet; readonly reports: readonly ResourceReport[]; readonly unlisted: number }
  | { readonly format: 'legacy'; readonly reports: readonly LegacyResourceReport[] };

export function resourceStanding(status: IpsecNodeState['status']): ResourceStanding {
  if (status?.applied !== undefined) return { format: 'digest', applied: status.applied, reports: status.resources ?? [], unlisted: status.unlistedReports ?? 0 };
  return { format: 'legacy', reports: status?.resources ?? [] };
}

/** The node an IpsecNodeState reports on: its spec says so; its name is the fallback. */
export function reportedNode(state: IpsecNodeState): string {
  return state.spec?.nodeName ?? state.metadata?.name ?? '';
}
