/**
 * The IpsecMesh contract between the controller and the agents: what each agent publishes about
 * its part of a mesh (in its IpsecNodeState, `status.meshes[]`) and what the controller writes
 * to schedule rotations (in the IpsecMesh, `status.rotationRequests[]`). Both sides import these
 * types from here, so neither process depends on the other (like ./node-state.ts).
 *
 * No key material crosses this contract: an advertisement holds public keys, SPIs, generations
 * and boot ids only (src/mesh/types.ts).
 *
 * Rotation is requested by the controller and carried out by the agent; the request names
 * itself (`requestId`) so that an agent restarted mid-rotation, or a status rewritten with the
 * same request, never starts a second generation for one request:
 *
 *   controller: rotationRequests += {node, requestId}          (bounded by maxConcurrent)
 *   agent:      sees a requestId it has not acted on -> startRotation, persists requestId with
 *               the new generation in its key store, publishes rotation {requestId, Rotating}
 *   agent:      once the old generation retired (rule 4 of src/mesh/rotation.ts): {.., Done}
 *   controller: sees Done for the requestId -> drops the request, schedules the next node
 *
 * `rotation {requestId, Rotating}` is the agent's acknowledgement that it acted on a request:
 * it is published in the same report that clears `rotationWanted` (the new generation's SAs
 * have not reached any soft limit), so the controller never asks twice for one SoftLimit.
 *
 * Readers of reports from the API (the controller, peers' agents) go through
 * `normalizeMeshReport`: a report that lost its empty lists on the way still reads as one.
 */
import type { MeshAead } from '../mesh/aead.js';
import type { MeshAdvertisement } from '../mesh/types.js';
import type { MESH_EXEMPT_PROTOCOLS } from './mesh-schema.js';
import type { LabelSelector } from './types.js';

/** Why a rotation was asked for. */
export type MeshRotationReason = 'Interval' | 'Manual' | 'SoftLimit';

/** One rotation the controller asks one node to make (`IpsecMesh.status.rotationRequests[]`). */
export interface MeshRotationRequest {
  readonly node: string;
  /** Unique per request (the controller's choice, e.g. `<keyGeneration>-<node>`). */
  readonly requestId: string;
  readonly reason: MeshRotationReason;
  /** RFC 3339. */
  readonly requestedAt: string;
}

/** Where a node stands on the last request it acted on. */
export interface MeshRotationProgress {
  readonly requestId: string;
  readonly state: 'Rotating' | 'Done';
  /** The generation the request made. */
  readonly generation: number;
  /** RFC 3339. */
  readonly startedAt: string;
  /** RFC 3339; set with `Done`. */
  readonly completedAt?: string;
}

/** One mesh as one node's agent reports it (`IpsecNodeState.status.meshes[]`). */
export interface NodeMeshReport {
  /** The IpsecMesh's name and uid (a mesh deleted and created again under the same name is another mesh). */
  readonly mesh: string;
  readonly uid: string;
  /** The protocol data peers act on. Published only once the kernel holds what it claims. */
  readonly advertisement: MeshAdvertisement;
  readonly rotation?: MeshRotationProgress;
  /** The agent asks for a rotation: an SA of this node reached a soft packet/byte limit or a soft expiry. */
  readonly rotationWanted?: 'SoftLimit';
  /** Peers this node should have SAs with, and those it has in both directions. */
  readonly expectedPeers: number;
  readonly readyPeers: number;
  /** Highest fraction of sequence space used by an outbound SA of this mesh (0..1). */
  readonly sequenceUsage?: number;
  /** CamelCase, when the node cannot take part (e.g. NoAddress, KernelUnsupported). */
  readonly reason?: string;
  readonly message?: string;
}

/**
 * `IpsecMesh.spec` as the schema (./mesh-schema.ts) defines it. Optional where the schema has a
 * default: the API server fills those in, a reader of an object from elsewhere (a unit fake,
 * a file) must apply the same defaults.
 */
export interface IpsecMeshSpec {
  readonly nodeSelector?: LabelSelector;
  readonly addressFamilies?: readonly ('IPv4' | 'IPv6')[];
  readonly addressType?: 'InternalIP' | 'ExternalIP';
  readonly mode?: 'transport' | 'tunnel';
  readonly aead?: MeshAead;
  readonly esn?: boolean;
  readonly replayWindow?: number;
  readonly natTraversal?: { readonly sourcePort?: number; readonly destinationPort?: number };
  readonly failClosed?: boolean;
  readonly exemptions?: readonly { readonly protocol: (typeof MESH_EXEMPT_PROTOCOLS)[number]; readonly port?: number }[];
  readonly rotation?: {
    /** Go durations. */
    readonly interval?: string;
    readonly gracePeriod?: string;
    readonly backstop?: string;
    readonly softPacketLimit?: number;
    readonly softByteLimit?: number;
    readonly maxConcurrent?: number;
  };
}

/** The part of `IpsecMesh.status` the agents read (the controller owns the rest of the status). */
export interface IpsecMeshStatusContract {
  readonly rotationRequests?: readonly MeshRotationRequest[];
}

/** An IpsecMesh as the API returns it (cluster-scoped). */
export interface IpsecMeshObject {
  readonly apiVersion?: string;
  readonly kind?: 'IpsecMesh';
  readonly metadata: {
    readonly name?: string;
    readonly uid?: string;
    readonly generation?: number;
    readonly resourceVersion?: string;
    readonly annotations?: Readonly<Record<string, string>>;
    readonly deletionTimestamp?: string | Date;
    readonly creationTimestamp?: string | Date;
  };
  readonly spec: IpsecMeshSpec;
  readonly status?: IpsecMeshStatusContract & Readonly<Record<string, unknown>>;
}

/** A report as read from the API, with its empty lists put back (the schema requires them, a hand-written or older object may lack them). */
export function normalizeMeshReport(report: NodeMeshReport): NodeMeshReport {
  const ad = (report.advertisement ?? {}) as Partial<MeshAdvertisement>;
  return {
    ...report,
    advertisement: {
      node: ad.node ?? '',
      bootId: ad.bootId ?? '',
      addresses: ad.addresses ?? {},
      podCIDRs: ad.podCIDRs ?? [],
      generations: ad.generations ?? [],
      inbound: ad.inbound ?? [],
      outbound: ad.outbound ?? [],
      peers: ad.peers ?? [],
      leaving: ad.leaving ?? false,
    },
  };
}

/** This node state's report for one mesh (by name and uid), normalized; undefined when it has none. */
export function meshReportOf(status: { readonly meshes?: readonly NodeMeshReport[] } | undefined, mesh: string, uid: string): NodeMeshReport | undefined {
  const report = status?.meshes?.find((entry) => entry.mesh === mesh && entry.uid === uid);
  return report === undefined ? undefined : normalizeMeshReport(report);
}
