/**
 * An IpsecMesh's status, pure: from the mesh, its members and their agents' reports (and the
 * status last written), the next status, with the scheduler's decision (./mesh-schedule.ts)
 * folded in. The controller writes it when it differs, removes the rotate annotation when told,
 * and turns the happenings into Events and metrics.
 *
 * Ready means every ordered pair of members has an SA in use that its receiver has installed,
 * in every address family both publish an address in: the sender's advertisement names the SA
 * it sends on (outbound use, with the receiver's boot id) and the receiver's names the same SPI
 * from that sender and generation (inbound ack, with the sender's boot id). Each agent's own
 * count (readyPeers of expectedPeers, from its kernel) must agree. The controller sees only
 * what agents publish; agents publish only what their kernels hold (src/mesh/rotation.ts rule 2).
 */
import type { MeshRotationRequest, NodeMeshReport, IpsecMeshObject } from '../crd/mesh-contract.js';
import { MESH_ROTATE_ANNOTATION } from '../crd/mesh-schema.js';
import { parseDuration, type IpsecMeshStatus, type MeshNodeSummary } from '../crd/mesh-object.js';
import { setCondition, type Condition } from '../kube/conditions.js';
import type { AddressFamily } from '../xfrm/types.js';
import { INITIAL_SCHEDULE, nonParticipation, schedule, type JitterSource, type ScheduleHappening, type ScheduleState, type ScheduleTimings } from './mesh-schedule.js';

const FAMILY: Readonly<Record<'IPv4' | 'IPv6', AddressFamily>> = { IPv4: 'inet', IPv6: 'inet6' };
const FAMILY_NAME: Readonly<Record<AddressFamily, string>> = { inet: 'IPv4', inet6: 'IPv6' };
/** How many nodes a condition message names before it says "and N more". */
const MESSAGE_NODES = 10;

/** The rotation spec with the schema's defaults (the API server applies them; a fake may not). */
export function meshTimings(mesh: IpsecMeshObject): ScheduleTimings {
  const rotation = mesh.spec.rotation ?? {};
  return {
    intervalMs: parseDuration(rotation.interval ?? '24h'),
    gracePeriodMs: parseDuration(rotation.gracePeriod ?? '30s'),
    backstopMs: parseDuration(rotation.backstop ?? '1h'),
    maxConcurrent: rotation.maxConcurrent ?? 1,
  };
}

/** The scheduler's state as the status holds it. */
export function scheduleState(status: IpsecMeshStatus | undefined): ScheduleState {
  if (status === undefined) return INITIAL_SCHEDULE;
  const nodeRotations: Record<string, string> = {};
  for (const node of status.nodes ?? []) if (node.lastRotationTime !== undefined) nodeRotations[node.name] = node.lastRotationTime;
  return {
    keyGeneration: status.keyGeneration ?? 0,
    ...(status.lastRotationTime !== undefined ? { lastRotationTime: status.lastRotationTime } : {}),
    ...(status.round !== undefined ? { round: { ...status.round, pending: status.round.pending ?? [] } } : {}),
    requests: status.rotationRequests ?? [],
    requestSerial: status.requestSerial ?? 0,
    rotateAnnotationHandled: status.rotateAnnotationHandled ?? false,
    nodeRotations,
  };
}

export interface PairView {
  /** Per member: the other members it has working SAs with in both directions. */
  readonly peers: ReadonlyMap<string, number>;
  /** Ordered pairs (sender -> receiver) without a working SA, as `sender -> receiver (family)`. */
  readonly missing: readonly string[];
}

/** Which member pairs have SAs both ways, from the advertisements. */
export function pairView(members: readonly string[], reports: ReadonlyMap<string, NodeMeshReport>, families: readonly AddressFamily[]): PairView {
  const peers = new Map<string, number>(members.map((node) => [node, 0]));
  const missing: string[] = [];
  const sends = (from: NodeMeshReport, to: NodeMeshReport, family: AddressFamily): boolean => {
    const use = from.advertisement.outbound.find((o) => o.to === to.advertisement.node && o.family === family && o.toBootId === to.advertisement.bootId);
    if (use === undefined) return false;
    return to.advertisement.inbound.some(
      (ack) => ack.from === from.advertisement.node && ack.family === family && ack.fromBootId === from.advertisement.bootId && ack.spi === use.spi && ack.fromGeneration === use.generation && ack.generation === use.toGeneration,
    );
  };
  for (let i = 0; i < members.length; i++) {
    for (let j = i + 1; j < members.length; j++) {
      const a = members[i]!;
      const b = members[j]!;
      const ra = reports.get(a);
      const rb = reports.get(b);
      let ok = ra !== undefined && rb !== undefined;
      let common = 0;
      if (ra !== undefined && rb !== undefined) {
        for (const family of families) {
          if (ra.advertisement.addresses[family] === undefined || rb.advertisement.addresses[family] === undefined) continue;
          common += 1;
          if (!sends(ra, rb, family)) {
            ok = false;
            missing.push(`${a} -> ${b} (${FAMILY_NAME[family]})`);
          }
          if (!sends(rb, ra, family)) {
            ok = false;
            missing.push(`${b} -> ${a} (${FAMILY_NAME[family]})`);
          }
        }
      }
      if (common === 0) {
        ok = false;
        if (ra !== undefined && rb !== undefined) missing.push(`${a} <-> ${b} (no common address family)`);
      }
      if (ok) {
        peers.set(a, peers.get(a)! + 1);
        peers.set(b, peers.get(b)! + 1);
      }
    }
  }
  return { peers, missing };
}

export interface MeshStatusInput {
  readonly mesh: IpsecMeshObject;
  /** The selected nodes, ascending. */
  readonly members: readonly string[];
  /** Reports for this mesh (name and uid) by node. */
  readonly reports: ReadonlyMap<string, NodeMeshReport>;
  /** The status as last written (ours, or the cache's). */
  readonly previous: IpsecMeshStatus | undefined;
  readonly now: number;
  readonly jitter: JitterSource;
}

export interface MeshStatusResult {
  readonly status: IpsecMeshStatus;
  readonly clearAnnotation: boolean;
  readonly happenings: readonly ScheduleHappening[];
  readonly stuck: readonly MeshRotationRequest[];
  readonly missingPairs: number;
  readonly wakeAt?: number;
  readonly ready: { readonly status: boolean; readonly reason: string; readonly message: string };
}

const named = (nodes: readonly string[]): string =>
  nodes.length <= MESSAGE_NODES ? nodes.join(', ') : `${nodes.slice(0, MESSAGE_NODES).join(', ')} and ${nodes.length - MESSAGE_NODES} more`;

export function meshStatus(input: MeshStatusInput): MeshStatusResult {
  const { mesh, members, reports, now } = input;
  const generation = mesh.metadata.generation ?? 0;
  const timings = meshTimings(mesh);
  const createdAt = mesh.metadata.creationTimestamp !== undefined ? new Date(mesh.metadata.creationTimestamp).getTime() : now;
  const decision = schedule({
    now,
    meshUid: mesh.metadata.uid ?? '',
    createdAt: Number.isFinite(createdAt) ? createdAt : now,
    timings,
    rotateAnnotation: mesh.metadata.annotations?.[MESH_ROTATE_ANNOTATION] !== undefined,
    members,
    reports,
    state: scheduleState(input.previous),
    jitter: input.jitter,
  });
  const state = decision.state;

  const families = (mesh.spec.addressFamilies ?? ['IPv4']).map((family) => FAMILY[family]);
  const pairs = pairView(members, reports, families);
  const requested = new Set(state.requests.map((request) => request.node));
  const nodes: MeshNodeSummary[] = [];
  const notReady: string[] = [];
  const absent: string[] = [];
  const cannot: string[] = [];
  let ready = 0;
  let rotating = 0;
  for (const node of members) {
    const report = reports.get(node);
    const why = nonParticipation(report);
    const peers = pairs.peers.get(node) ?? 0;
    const expectedPeers = members.length - 1;
    const agentAgrees = report !== undefined && report.readyPeers >= report.expectedPeers;
    const isRotating = requested.has(node) || report?.rotation?.state === 'Rotating';
    const current = report?.advertisement.generations.at(-1)?.generation;
    if (why === 'AgentMissing') absent.push(node);
    else if (why !== undefined) cannot.push(`${node} (${why}${report?.message ? `: ${report.message}` : ''})`);
    if (why === undefined && peers === expectedPeers && agentAgrees) ready += 1;
    else if (why === undefined) notReady.push(node);
    if (isRotating) rotating += 1;
    nodes.push({
      name: node,
      ...(current !== undefined ? { generation: current } : {}),
      peers,
      expectedPeers,
      rotating: isRotating,
      ...(state.nodeRotations[node] !== undefined ? { lastRotationTime: state.nodeRotations[node] } : {}),
      ...(why !== undefined ? { reason: why } : {}),
    });
  }

  let readyCondition: MeshStatusResult['ready'];
  if (members.length === 0) readyCondition = { status: false, reason: 'NoMembers', message: 'the nodeSelector selects no node' };
  else if (absent.length > 0) readyCondition = { status: false, reason: 'AgentMissing', message: `no report from the agent of ${named(absent)}` };
  else if (cannot.length > 0) readyCondition = { status: false, reason: 'MemberCannotJoin', message: `not taking part: ${named(cannot)}` };
  else if (notReady.length > 0 || pairs.missing.length > 0) {
    readyCondition = {
      status: false,
      reason: 'PeersMissing',
      message: `${ready} of ${members.length} members have SAs with every peer; missing: ${pairs.missing.length > 0 ? named(pairs.missing) : `the agents of ${named(notReady)} report peers not ready`}`,
    };
  } else readyCondition = { status: true, reason: 'AllPairsKeyed', message: members.length === 1 ? 'one member: no pair to key' : `${members.length} members, every pair has SAs in both directions` };

  let rotatingCondition: { status: 'True' | 'False'; reason: string; message: string };
  const inFlight = state.requests.map((request) => `${request.node} (${request.reason})`);
  if (decision.stuck.length > 0) {
    rotatingCondition = { status: 'True', reason: 'RotationStuck', message: `not done after ${Math.round((timings.backstopMs + timings.gracePeriodMs) / 1000)}s: ${named(decision.stuck.map((request) => `${request.node} (request ${request.requestId})`))}` };
  } else if (state.round !== undefined) {
    rotatingCondition = {
      status: 'True',
      reason: state.round.reason === 'Manual' ? 'ManualRotation' : 'IntervalRotation',
      message: `key generation ${state.round.keyGeneration}: rotating ${inFlight.length > 0 ? named(inFlight) : 'none'}; waiting: ${state.round.pending.length > 0 ? named(state.round.pending) : 'none'}`,
    };
  } else if (state.requests.length > 0) rotatingCondition = { status: 'True', reason: 'NodeRotation', message: `rotating ${named(inFlight)}` };
  else rotatingCondition = { status: 'False', reason: 'Idle', message: state.lastRotationTime !== undefined ? `key generation ${state.keyGeneration} completed ${state.lastRotationTime}` : 'no rotation yet' };

  const when = new Date(now);
  let conditions: Condition[] = setCondition(input.previous?.conditions, { type: 'Ready', status: readyCondition.status ? 'True' : 'False', reason: readyCondition.reason, message: readyCondition.message, observedGeneration: generation }, when);
  conditions = setCondition(conditions, { type: 'Rotating', ...rotatingCondition, observedGeneration: generation }, when);

  const status: IpsecMeshStatus = {
    observedGeneration: generation,
    conditions,
    keyGeneration: state.keyGeneration,
    ...(state.lastRotationTime !== undefined ? { lastRotationTime: state.lastRotationTime } : {}),
    members: { selected: members.length, ready, rotating },
    // No empty lists: the API server does not store them, and the status we compare with
    // (ours or the cache's) must look like what it stores, or every reconcile would write.
    ...(nodes.length > 0 ? { nodes } : {}),
    ...(state.requests.length > 0 ? { rotationRequests: [...state.requests] } : {}),
    ...(state.round !== undefined ? { round: state.round.pending.length > 0 ? state.round : { keyGeneration: state.round.keyGeneration, reason: state.round.reason, startedAt: state.round.startedAt } } : {}),
    requestSerial: state.requestSerial,
    rotateAnnotationHandled: state.rotateAnnotationHandled,
  };
  return {
    status,
    clearAnnotation: decision.clearAnnotation,
    happenings: decision.happenings,
    stuck: decision.stuck,
    missingPairs: pairs.missing.length,
    ready: readyCondition,
    ...(decision.wakeAt !== undefined ? { wakeAt: decision.wakeAt } : {}),
  };
}
