/**
 * The controller's IpsecMesh part: reads a mesh, its members (Nodes matching its nodeSelector)
 * and their agents' reports (IpsecNodeState status.meshes[]) from the caches, computes the next
 * status with ./mesh-status.ts, writes it when it differs, removes the rotate annotation once
 * the status says it was acted on, and turns what happened into Events and metrics. The I/O
 * edge of the mesh; the decisions are pure (./mesh-schedule.ts, ./mesh-status.ts).
 *
 * The order of writes is what makes a restart safe: the status (with the requests and the
 * record that the annotation was acted on) first, the annotation's removal second.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { PatchStrategy, setHeaderOptions, type CustomObjectsApi, type V1Node } from '@kubernetes/client-node';
import { meshReportOf, type IpsecMeshObject, type NodeMeshReport } from '../crd/mesh-contract.js';
import { MESH_ROTATE_ANNOTATION } from '../crd/mesh-schema.js';
import type { IpsecMeshStatus } from '../crd/mesh-object.js';
import { reportedNode, type IpsecNodeState } from '../crd/node-state.js';
import { API_GROUP, API_VERSION } from '../crd/types.js';
import type { IpsecStatusWriter } from '../kube/client.js';
import type { EventRecorder } from '../kube/events.js';
import type { Informer } from '../kube/informer.js';
import { statusEqual } from '../kube/status.js';
import { isConflict, isNotFound } from '../kube/api-errors.js';
import type { Logger } from '../kube/logger.js';
import { selectsNode } from '../model/node-selector.js';
import { hashJitter, type JitterSource, type ScheduleHappening } from './mesh-schedule.js';
import { meshStatus } from './mesh-status.js';

export const MESH_KEY_PREFIX = 'IpsecMesh/';
/** Looking again at least this often when nothing changes (timers past it are re-armed then). */
const MAX_WAKE_MS = 3_600_000;
/** How soon a mesh whose annotation removal met a newer object (409) is looked at again. */
const CONFLICT_RETRY_MS = 1000;

/** The controller's mesh metrics, on its registry. */
export class MeshMetrics {
  readonly members: Gauge<'mesh' | 'state'>;
  readonly missingPairs: Gauge<'mesh'>;
  readonly stuck: Gauge<'mesh'>;
  readonly keyGeneration: Gauge<'mesh'>;
  readonly scheduled: Counter<'mesh' | 'reason'>;
  readonly completed: Counter<'mesh' | 'reason'>;
  readonly duration: Histogram<'mesh'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.members = new Gauge({ name: 'ipsec_operator_mesh_members', help: 'IpsecMesh members by state: selected, ready (SAs with every peer), rotating.', labelNames: ['mesh', 'state'], registers });
    this.missingPairs = new Gauge({ name: 'ipsec_operator_mesh_missing_pairs', help: 'Ordered member pairs (per address family) without an SA in use that the receiver has installed.', labelNames: ['mesh'], registers });
    this.stuck = new Gauge({ name: 'ipsec_operator_mesh_rotations_stuck', help: 'Rotation requests not done after the backstop plus the grace period.', labelNames: ['mesh'], registers });
    this.keyGeneration = new Gauge({ name: 'ipsec_operator_mesh_key_generation', help: 'Mesh-wide rotations scheduled (status.keyGeneration).', labelNames: ['mesh'], registers });
    this.scheduled = new Counter({ name: 'ipsec_operator_mesh_rotations_scheduled_total', help: 'Node rotations the controller requested, by reason.', labelNames: ['mesh', 'reason'], registers });
    this.completed = new Counter({ name: 'ipsec_operator_mesh_rotations_completed_total', help: 'Node rotations reported Done, by reason.', labelNames: ['mesh', 'reason'], registers });
    this.duration = new Histogram({
      name: 'ipsec_operator_mesh_rotation_duration_seconds',
      help: 'From a rotation request to its node reporting Done.',
      labelNames: ['mesh'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200],
      registers,
    });
  }

  forget(mesh: string): void {
    for (const state of ['selected', 'ready', 'rotating']) this.members.remove({ mesh, state });
    this.missingPairs.remove({ mesh });
    this.stuck.remove({ mesh });
    this.keyGeneration.remove({ mesh });
  }
}

export interface MeshReconcilerOptions {
  readonly meshes: Informer<IpsecMeshObject>;
  readonly nodes: Informer<V1Node>;
  readonly nodeStates: Informer<IpsecNodeState>;
  readonly statusWriter: IpsecStatusWriter;
  readonly api: CustomObjectsApi;
  readonly events: EventRecorder;
  readonly metrics: MeshMetrics;
  readonly logger: Logger;
  /** Re-queue a mesh key after some milliseconds (the scheduler's next due time). */
  readonly requeueAfter: (key: string, ms: number) => void;
  readonly now?: () => number;
  readonly jitter?: JitterSource;
}

/** The reports of one mesh (by name and uid: a mesh made again under the same name is another), by node. */
export function meshReports(states: readonly IpsecNodeState[], mesh: string, uid: string): Map<string, NodeMeshReport> {
  const reports = new Map<string, NodeMeshReport>();
  for (const state of states) {
    const report = meshReportOf(state.status, mesh, uid);
    if (report !== undefined) reports.set(reportedNode(state), report);
  }
  return reports;
}

export function meshReconciler(options: MeshReconcilerOptions) {
  const { meshes, nodes, nodeStates, metrics, events, logger } = options;
  const now = options.now ?? Date.now;
  const jitter = options.jitter ?? hashJitter('ipsec-operator');
  // What this term wrote (the cache lags behind our own writes; see controller.ts), and the
  // verdicts it announced, so an Event marks a change rather than every reconcile.
  const written = new Map<string, { status: IpsecMeshStatus; generation: number | undefined; uid: string | undefined }>();
  const announced = new Map<string, { ready: string; stuck: string }>();

  const subject = (mesh: IpsecMeshObject) => ({ apiVersion: `${API_GROUP}/${API_VERSION}`, kind: 'IpsecMesh', name: mesh.metadata.name ?? '', ...(mesh.metadata.uid ? { uid: mesh.metadata.uid } : {}) });

  const record = (mesh: IpsecMeshObject, happening: ScheduleHappening) => {
    const name = mesh.metadata.name ?? '';
    switch (happening.kind) {
      case 'RoundStarted':
        events.normal(subject(mesh), 'RotationStarted', `key generation ${happening.keyGeneration} (${happening.reason}): ${happening.nodes} node(s) to rotate`);
        break;
      case 'RoundSuperseded':
        events.normal(subject(mesh), 'RotationSuperseded', `key generation ${happening.keyGeneration} superseded by a manual rotation`);
        break;
      case 'RoundCompleted':
        events.normal(subject(mesh), 'RotationCompleted', `key generation ${happening.keyGeneration} (${happening.reason}) completed in ${Math.round(happening.durationMs / 1000)}s`);
        break;
      case 'Requested':
        metrics.scheduled.inc({ mesh: name, reason: happening.request.reason });
        if (happening.request.reason === 'SoftLimit') events.normal(subject(mesh), 'RotationRequested', `node ${happening.request.node} reached a soft limit: rotating its keys (request ${happening.request.requestId})`);
        break;
      case 'Completed':
        metrics.completed.inc({ mesh: name, reason: happening.request.reason });
        metrics.duration.observe({ mesh: name }, happening.durationMs / 1000);
        break;
      case 'Dropped':
        events.normal(subject(mesh), 'RotationDropped', `node ${happening.request.node} left the mesh; request ${happening.request.requestId} dropped`);
        break;
      case 'Skipped':
        events.warning(subject(mesh), 'RotationSkipped', `node ${happening.node} skipped in key generation ${happening.keyGeneration}: ${happening.why}`);
        break;
    }
  };

  const reconcile = async (name: string): Promise<void> => {
    const key = `${MESH_KEY_PREFIX}${name}`;
    const mesh = meshes.get(name);
    if (!mesh || mesh.metadata.deletionTimestamp) {
      written.delete(key);
      announced.delete(key);
      metrics.forget(name);
      return;
    }
    const uid = mesh.metadata.uid ?? '';
    const mine = written.get(key);
    const previous = mine && mine.generation === mesh.metadata.generation && mine.uid === uid ? mine.status : (mesh.status as IpsecMeshStatus | undefined);
    const members = nodes
      .list()
      .filter((node) => selectsNode(mesh.spec.nodeSelector, node.metadata?.labels ?? {}))
      .map((node) => node.metadata?.name ?? '')
      .filter((node) => node !== '')
      .sort();
    const time = now();
    const result = meshStatus({ mesh, members, reports: meshReports(nodeStates.list(), name, uid), previous, now: time, jitter });

    let resourceVersion = mesh.metadata.resourceVersion;
    if (!statusEqual(previous, result.status)) {
      const write = await options.statusWriter.write('ipsecmeshes', name, mesh.status, result.status as Record<string, unknown>);
      written.set(key, { status: result.status, generation: mesh.metadata.generation, uid });
      if (write.written) resourceVersion = (write.object as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion ?? resourceVersion;
    }
    for (const happening of result.happenings) record(mesh, happening);

    const selected = result.status.members?.selected ?? 0;
    metrics.members.set({ mesh: name, state: 'selected' }, selected);
    metrics.members.set({ mesh: name, state: 'ready' }, result.status.members?.ready ?? 0);
    metrics.members.set({ mesh: name, state: 'rotating' }, result.status.members?.rotating ?? 0);
    metrics.missingPairs.set({ mesh: name }, result.missingPairs);
    metrics.stuck.set({ mesh: name }, result.stuck.length);
    metrics.keyGeneration.set({ mesh: name }, result.status.keyGeneration ?? 0);

    const before = announced.get(key);
    const stuckKey = result.stuck.map((request) => request.requestId).join(',');
    if (before?.ready !== `${result.ready.reason}:${result.ready.message}`) {
      if (result.ready.status) events.normal(subject(mesh), result.ready.reason, result.ready.message);
      else if (before !== undefined || result.ready.reason !== 'AgentMissing') events.warning(subject(mesh), result.ready.reason, result.ready.message);
    }
    if (stuckKey !== '' && before?.stuck !== stuckKey) {
      events.warning(subject(mesh), 'RotationStuck', result.stuck.map((request) => `node ${request.node} has not completed request ${request.requestId} (${request.reason}, asked ${request.requestedAt})`).join('; '));
    }
    announced.set(key, { ready: `${result.ready.reason}:${result.ready.message}`, stuck: stuckKey });

    if (result.clearAnnotation && mesh.metadata.annotations?.[MESH_ROTATE_ANNOTATION] !== undefined) {
      try {
        await options.api.patchClusterCustomObject(
          {
            group: API_GROUP,
            version: API_VERSION,
            plural: 'ipsecmeshes',
            name,
            // Only this annotation, and only as of our own status write: had someone annotated
            // again since, the 409 makes the next reconcile look at it (not remove it unseen).
            body: { metadata: { annotations: { [MESH_ROTATE_ANNOTATION]: null }, ...(resourceVersion !== undefined ? { resourceVersion } : {}) } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        logger.info('mesh rotation requested by annotation; annotation removed', { mesh: name });
      } catch (error) {
        if (isConflict(error)) {
          // Expected, not a failure: the object moved past the version we acted on (someone
          // annotated again, or our cache had not seen our last status write yet). The newer
          // object's watch event brings the mesh back; the requeue is in case it came already.
          logger.debug('mesh rotate annotation changed since our status write; looking again before removing it', { mesh: name });
          options.requeueAfter(key, CONFLICT_RETRY_MS);
          return;
        }
        if (!isNotFound(error)) throw error;
      }
    }
    if (result.wakeAt !== undefined) options.requeueAfter(key, Math.min(MAX_WAKE_MS, Math.max(1000, result.wakeAt - time)));
  };

  /** Every mesh's key: a Node or an IpsecNodeState changed, which any mesh may select or hear from. */
  const allKeys = (): string[] => meshes.keys().length === 0 ? [] : meshes.list().map((mesh) => `${MESH_KEY_PREFIX}${mesh.metadata.name ?? ''}`);

  return { reconcile, allKeys };
}
