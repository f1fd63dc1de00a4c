/**
 * The IpsecNodeState contract: what a node's agent writes about its node and what the
 * controller reads back. Both sides import these types from here (the API package), so neither
 * process depends on the other; the OpenAPI schema (`ipsecNodeStateSpec` and
 * `ipsecNodeStateStatus` in ./schema.ts) is the source of truth the API server enforces, and
 * test/unit/crd-node-state.test.ts checks these shapes against it.
 */
import type { Condition } from '../kube/conditions.js';
import type { NodeMeshReport } from './mesh-contract.js';

/** How one resource stands on one node (`status.resources[]`). */
export interface ResourceReport {
  readonly kind: 'SecurityAssociation' | 'IpsecPolicy';
  readonly name: string;
  /** The resource's generation the agent applied or tried. */
  readonly generation?: number;
  /** Applied: the kernel holds it. Failed: see reason and message. Removed: its entries are gone. */
  readonly state: 'Applied' | 'Failed' | 'Removed';
  /** CamelCase: Applied, KernelRejected, InvalidKey, MissingSecret, Conflict, ... */
  readonly reason?: string;
  /** Detail, with the kernel's reason where there is one. Never key material. */
  readonly message?: string;
  /** Kernel entries of this resource that ipsec-operator holds on this node. */
  readonly entries?: number;
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
  readonly resources?: readonly ResourceReport[];
  readonly encapsulationSockets?: readonly EncapsulationSocketReport[];
  /** The IpsecMeshes this node takes part in or is leaving (./mesh-contract.ts); absent when none. */
  readonly meshes?: readonly NodeMeshReport[];
  readonly conditions?: readonly Condition[];
}

/** An IpsecNodeState as the API returns it (cluster-scoped, named after its node). */
export interface IpsecNodeState {
  readonly apiVersion?: string;
  readonly kind?: 'IpsecNodeState';
  readonly metadata?: { readonly name?: string; readonly resourceVersion?: string };
  readonly spec?: IpsecNodeStateSpec;
  readonly status?: IpsecNodeStateStatus;
}

/** The node an IpsecNodeState reports on: its spec says so; its name is the fallback. */
export function reportedNode(state: IpsecNodeState): string {
  return state.spec?.nodeName ?? state.metadata?.name ?? '';
}
