/**
 * The agent's IpsecMesh metrics (docs/operations.md), from the reports a pass publishes
 * (./mesh-worker.ts publish): the node's side of each mesh, which the controller's mesh
 * metrics (../controller/mesh-status.ts) sum up cluster-wide. Per mesh: peers expected and
 * ready, the highest fraction of sequence space an outbound SA of the mesh has used, the
 * node's current key generation, whether it is rotating, and the rotations it completed with
 * their duration (from the rotation record's start to its completion, as published).
 *
 * Labels are bounded: the mesh's name (one per IpsecMesh that selects this node) and fixed
 * words; a mesh the node no longer reports loses its series. No key byte, SPI or address.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { NodeMeshReport } from '../crd/mesh-contract.js';

const P = 'ipsec_operator_mesh_node_';

/** Seconds; a rotation waits for every peer's acknowledgement and a grace period of idleness. */
export const ROTATION_DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600];

export class MeshMetrics {
  readonly peers: Gauge<'mesh' | 'state'>;
  readonly sequenceSpaceUsed: Gauge<'mesh'>;
  readonly keyGeneration: Gauge<'mesh'>;
  readonly rotating: Gauge<'mesh'>;
  readonly rotations: Counter<'mesh'>;
  readonly rotationDuration: Histogram<'mesh'>;
  /** Per mesh uid: the last rotation request seen and whether it was done then. */
  readonly #lastRotation = new Map<string, { readonly requestId: string; readonly done: boolean }>();
  /** Mesh names that have series now. */
  #meshes = new Set<string>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.peers = new Gauge({
      name: `${P}peers`,
      help: 'Peers of this node in each IpsecMesh, by state: expected (the other members) and ready (an SA in use both ways, acknowledged by the receiver).',
      labelNames: ['mesh', 'state'],
      registers,
    });
    this.sequenceSpaceUsed = new Gauge({
      name: `${P}sequence_space_used_ratio`,
      help: "Highest outbound sequence number of this node's SAs in each IpsecMesh over its space (2^32, or 2^64 with ESN).",
      labelNames: ['mesh'],
      registers,
    });
    this.keyGeneration = new Gauge({ name: `${P}key_generation`, help: "This node's current (newest published) key generation in each IpsecMesh.", labelNames: ['mesh'], registers });
    this.rotating = new Gauge({ name: `${P}rotating`, help: 'Whether this node is in a rotation of each IpsecMesh (1) or not (0).', labelNames: ['mesh'], registers });
    this.rotations = new Counter({ name: `${P}rotations_total`, help: 'Rotations this node completed in each IpsecMesh (all pairs switched, old SAs gone).', labelNames: ['mesh'], registers });
    this.rotationDuration = new Histogram({
      name: `${P}rotation_duration_seconds`,
      help: "This node's rotations in each IpsecMesh, from its new key generation to the old generation's SAs gone (whole seconds, as published).",
      labelNames: ['mesh'],
      buckets: ROTATION_DURATION_BUCKETS,
      registers,
    });
  }

  /** The reports of one pass; a mesh missing from them (left, deleted) loses its series. */
  record(reports: readonly NodeMeshReport[]): void {
    const meshes = new Set<string>();
    for (const report of reports) {
      const mesh = report.mesh;
      meshes.add(mesh);
      this.peers.set({ mesh, state: 'expected' }, report.expectedPeers);
      this.peers.set({ mesh, state: 'ready' }, report.readyPeers);
      this.sequenceSpaceUsed.set({ mesh }, report.sequenceUsage ?? 0);
      const generations = report.advertisement.generations;
      this.keyGeneration.set({ mesh }, generations.length === 0 ? 0 : generations[generations.length - 1]!.generation);
      this.rotating.set({ mesh }, report.rotation?.state === 'Rotating' ? 1 : 0);
      this.rotations.inc({ mesh }, 0);
      this.#rotationProgress(report);
    }
    for (const mesh of this.#meshes) if (!meshes.has(mesh)) this.#remove(mesh);
    const uids = new Set(reports.map((report) => report.uid));
    for (const uid of [...this.#lastRotation.keys()]) if (!uids.has(uid)) this.#lastRotation.delete(uid);
    this.#meshes = meshes;
  }

  /**
   * A rotation counts once, when this process sees it go from Rotating to Done (one already
   * Done when first seen finished before this agent started, and was counted by its
   * predecessor).
   */
  #rotationProgress(report: NodeMeshReport): void {
    const rotation = report.rotation;
    if (rotation === undefined) return;
    const before = this.#lastRotation.get(report.uid);
    const done = rotation.state === 'Done';
    this.#lastRotation.set(report.uid, { requestId: rotation.requestId, done });
    const wasRunning = before !== undefined && (before.requestId !== rotation.requestId || !before.done);
    if (!done || !wasRunning || rotation.completedAt === undefined) return;
    this.rotations.inc({ mesh: report.mesh });
    const seconds = (Date.parse(rotation.completedAt) - Date.parse(rotation.startedAt)) / 1000;
    if (Number.isFinite(seconds) && seconds >= 0) this.rotationDuration.observe({ mesh: report.mesh }, seconds);
  }

  #remove(mesh: string): void {
    for (const state of ['expected', 'ready']) this.peers.remove({ mesh, state });
    this.sequenceSpaceUsed.remove({ mesh });
    this.keyGeneration.remove({ mesh });
    this.rotating.remove({ mesh });
    this.rotations.remove({ mesh });
    this.rotationDuration.remove({ mesh });
  }
}
