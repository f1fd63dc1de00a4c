/**
 * When the nodes of an IpsecMesh rotate their keys: the controller's scheduler, pure. From the
 * mesh (rotation spec, the rotate annotation), its members, their agents' reports and the
 * scheduler's state as the last status holds it, the next state (the rotation requests agents
 * act on) and what happened. No clock (the time is an input), no I/O.
 *
 * The rules:
 *
 * 1. Rounds. A mesh-wide rotation (a round) asks every participating member once; the status'
 *    keyGeneration counts rounds. An Interval round starts `interval` after the last round
 *    completed (after the mesh was created, for the first); a Manual round starts when the
 *    `ipsec.xfrm.io/rotate` annotation appears, and supersedes a round under way (its members
 *    rotated before the request, so they rotate again: "now" means keys made after now).
 * 2. Jitter. In an Interval round, each node is asked at the round's start plus up to 10% of
 *    the interval, from a JitterSource keyed by (mesh uid, round, node): deterministic, so a
 *    restarted controller computes the same times from the status alone. Manual: no jitter.
 * 3. SoftLimit. A node whose agent sets rotationWanted is asked at once (before round members),
 *    and that request counts as its rotation in a round under way.
 * 4. Bounds. At most `maxConcurrent` requests at once, one per node; a request's requestId is
 *    `<serial>-<node>` with a serial kept in the status that only grows: never reused.
 * 5. Completion. A request is dropped when its node reports Done for its requestId, or leaves
 *    the mesh. A round completes when it has asked every member and none of its requests (those
 *    made since it started) is left. A pending member that does not take part (no agent report,
 *    or its agent says why not) is skipped rather than left to hold the round forever.
 * 6. Stuck. A request not Done after the backstop plus the grace period is stuck: the agent's
 *    own backstop would have ended its rotation by then. It keeps its slot (the bound is about
 *    load, and the node may come back); it is reported, not cancelled.
 * 7. The annotation. Acting on it and removing it are two writes (status, then metadata); the
 *    status records that it was acted on, so a controller restarted between the two removes it
 *    without starting a second round, and forgets the record once it is gone.
 */
import { createHash } from 'node:crypto';
import type { MeshRotationReason, MeshRotationRequest, NodeMeshReport } from '../crd/mesh-contract.js';
import type { MeshRound } from '../crd/mesh-object.js';
import { formatTime } from '../kube/conditions.js';

/** A number in [0, 1) for a key; the same key always gives the same number. */
export type JitterSource = (key: string) => number;

/** Jitter from SHA-256 over a seed and the key. */
export function hashJitter(seed: string): JitterSource {
  return (key) => createHash('sha256').update(seed).update('\0').update(key).digest().readUInt32BE(0) / 2 ** 32;
}

/** The share of the interval an Interval round spreads its nodes over. */
export const JITTER_FRACTION = 0.1;

export interface ScheduleTimings {
  readonly intervalMs: number;
  readonly gracePeriodMs: number;
  readonly backstopMs: number;
  readonly maxConcurrent: number;
}

/** What the scheduler keeps between reconciles: all of it lives in the mesh's status. */
export interface ScheduleState {
  readonly keyGeneration: number;
  /** RFC 3339: when the last round completed. */
  readonly lastRotationTime?: string;
  readonly round?: MeshRound;
  readonly requests: readonly MeshRotationRequest[];
  readonly requestSerial: number;
  readonly rotateAnnotationHandled: boolean;
  /** Per node: when its last request completed (RFC 3339). */
  readonly nodeRotations: Readonly<Record<string, string>>;
}

export const INITIAL_SCHEDULE: ScheduleState = Object.freeze({ keyGeneration: 0, requests: [], requestSerial: 0, rotateAnnotationHandled: false, nodeRotations: {} });

export interface ScheduleInput {
  readonly now: number;
  readonly meshUid: string;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  readonly timings: ScheduleTimings;
  readonly rotateAnnotation: boolean;
  /** The selected nodes. */
  readonly members: readonly string[];
  /** Each member's report for this mesh (by node), as its agent published it. */
  readonly reports: ReadonlyMap<string, NodeMeshReport>;
  readonly state: ScheduleState;
  readonly jitter: JitterSource;
}

/** What a reconcile turns into Events and metrics. */
export type ScheduleHappening =
  | { readonly kind: 'RoundStarted'; readonly keyGeneration: number; readonly reason: MeshRound['reason']; readonly nodes: number }
  | { readonly kind: 'RoundSuperseded'; readonly keyGeneration: number }
  | { readonly kind: 'RoundCompleted'; readonly keyGeneration: number; readonly reason: MeshRound['reason']; readonly durationMs: number }
  | { readonly kind: 'Requested'; readonly request: MeshRotationRequest }
  | { readonly kind: 'Completed'; readonly request: MeshRotationRequest; readonly durationMs: number }
  | { readonly kind: 'Dropped'; readonly request: MeshRotationRequest; readonly why: 'NodeLeft' }
  | { readonly kind: 'Skipped'; readonly node: string; readonly keyGeneration: number; readonly why: string };

export interface ScheduleResult {
  readonly state: ScheduleState;
  /** Remove the rotate annotation (after the state is written). */
  readonly clearAnnotation: boolean;
  readonly happenings: readonly ScheduleHappening[];
  /** Requests older than the backstop plus the grace period. */
  readonly stuck: readonly MeshRotationRequest[];
  /** When to look again without any change in the cluster (ms since the epoch), if ever. */
  readonly wakeAt?: number;
}

/** Whether a member takes part: its agent reports the mesh, publishes keys and names no reason not to. */
export function participates(report: NodeMeshReport | undefined): boolean {
  return report !== undefined && report.reason === undefined && report.advertisement.generations.length > 0;
}

/** Why a member does not take part, CamelCase; undefined when it does. */
export function nonParticipation(report: NodeMeshReport | undefined): string | undefined {
  if (report === undefined) return 'AgentMissing';
  if (report.reason !== undefined) return report.reason;
  if (report.advertisement.generations.length === 0) return 'NoKeys';
  return undefined;
}

export function stuckAfterMs(timings: ScheduleTimings): number {
  return timings.backstopMs + timings.gracePeriodMs;
}

export function schedule(input: ScheduleInput): ScheduleResult {
  const { now, timings } = input;
  const nowText = formatTime(new Date(now));
  const members = new Set(input.members);
  const happenings: ScheduleHappening[] = [];
  let { keyGeneration, lastRotationTime, round, requestSerial, rotateAnnotationHandled } = input.state;
  const nodeRotations: Record<string, string> = {};
  for (const [node, time] of Object.entries(input.state.nodeRotations)) if (members.has(node)) nodeRotations[node] = time;

  // Rule 5: drop what is done, and the requests of nodes that left.
  const requests: MeshRotationRequest[] = [];
  for (const request of input.state.requests) {
    if (!members.has(request.node)) {
      happenings.push({ kind: 'Dropped', request, why: 'NodeLeft' });
      continue;
    }
    const progress = input.reports.get(request.node)?.rotation;
    if (progress?.requestId === request.requestId && progress.state === 'Done') {
      const completedAt = progress.completedAt !== undefined && Number.isFinite(Date.parse(progress.completedAt)) ? progress.completedAt : nowText;
      nodeRotations[request.node] = completedAt;
      happenings.push({ kind: 'Completed', request, durationMs: Math.max(0, Date.parse(completedAt) - Date.parse(request.requestedAt)) });
      continue;
    }
    requests.push(request);
  }

  const participants = input.members.filter((node) => participates(input.reports.get(node))).sort();
  const startRound = (reason: MeshRound['reason']) => {
    keyGeneration += 1;
    round = { keyGeneration, reason, startedAt: nowText, pending: participants };
    happenings.push({ kind: 'RoundStarted', keyGeneration, reason, nodes: participants.length });
  };

  // Rules 1 and 7: the annotation.
  let clearAnnotation = false;
  if (input.rotateAnnotation) {
    if (!rotateAnnotationHandled) {
      if (round !== undefined) happenings.push({ kind: 'RoundSuperseded', keyGeneration: round.keyGeneration });
      startRound('Manual');
      rotateAnnotationHandled = true;
    }
    clearAnnotation = true;
  } else {
    rotateAnnotationHandled = false;
  }

  // Rule 1: the interval.
  const nextRoundAt = (lastRotationTime !== undefined ? Date.parse(lastRotationTime) : input.createdAt) + timings.intervalMs;
  if (round === undefined && participants.length > 0 && now >= nextRoundAt) startRound('Interval');

  // Members of the round that left or do not take part.
  if (round !== undefined) {
    const current: MeshRound = round;
    const pending = current.pending.filter((node) => {
      if (!members.has(node)) return false;
      const why = nonParticipation(input.reports.get(node));
      if (why !== undefined) happenings.push({ kind: 'Skipped', node, keyGeneration: current.keyGeneration, why });
      return why === undefined;
    });
    round = { ...current, pending };
  }

  // Rules 2-4: who is asked now.
  const busy = new Set(requests.map((request) => request.node));
  type Candidate = { node: string; reason: MeshRotationReason; dueAt: number; priority: number };
  const candidates: Candidate[] = [];
  for (const node of participants) {
    if (!busy.has(node) && input.reports.get(node)?.rotationWanted === 'SoftLimit') candidates.push({ node, reason: 'SoftLimit', dueAt: now, priority: 0 });
  }
  if (round !== undefined) {
    const startedAt = Date.parse(round.startedAt);
    for (const node of round.pending) {
      if (busy.has(node) || candidates.some((candidate) => candidate.node === node)) continue;
      const jitterMs = round.reason === 'Interval' ? Math.floor(input.jitter(`${input.meshUid}/${round.keyGeneration}/${node}`) * JITTER_FRACTION * timings.intervalMs) : 0;
      candidates.push({ node, reason: round.reason, dueAt: startedAt + jitterMs, priority: 1 });
    }
  }
  candidates.sort((a, b) => a.priority - b.priority || a.dueAt - b.dueAt || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  let slots = Math.max(0, timings.maxConcurrent - requests.length);
  const asked = new Set<string>();
  let wakeAt: number | undefined;
  const wakeBy = (time: number) => {
    if (wakeAt === undefined || time < wakeAt) wakeAt = time;
  };
  for (const candidate of candidates) {
    if (candidate.dueAt > now) {
      // Not due yet; a full set of slots frees up on a report, which wakes us anyway.
      if (slots > 0) wakeBy(candidate.dueAt);
      continue;
    }
    if (slots === 0) break;
    slots -= 1;
    requestSerial += 1;
    const request: MeshRotationRequest = { node: candidate.node, requestId: `${requestSerial}-${candidate.node}`.slice(0, 128), reason: candidate.reason, requestedAt: nowText };
    requests.push(request);
    asked.add(candidate.node);
    happenings.push({ kind: 'Requested', request });
  }
  if (round !== undefined && asked.size > 0) round = { ...round, pending: round.pending.filter((node) => !asked.has(node)) };

  // Rule 5: the round is complete once it asked everyone and none of its requests is left.
  if (round !== undefined && round.pending.length === 0) {
    const startedAt = Date.parse(round.startedAt);
    if (!requests.some((request) => Date.parse(request.requestedAt) >= startedAt)) {
      happenings.push({ kind: 'RoundCompleted', keyGeneration: round.keyGeneration, reason: round.reason, durationMs: Math.max(0, now - startedAt) });
      lastRotationTime = nowText;
      round = undefined;
    }
  }
  if (round === undefined && participants.length > 0) wakeBy((lastRotationTime !== undefined ? Date.parse(lastRotationTime) : input.createdAt) + timings.intervalMs);

  // Rule 6.
  const stuck: MeshRotationRequest[] = [];
  for (const request of requests) {
    const stuckAt = Date.parse(request.requestedAt) + stuckAfterMs(timings);
    if (now >= stuckAt) stuck.push(request);
    else wakeBy(stuckAt);
  }

  return {
    state: {
      keyGeneration,
      ...(lastRotationTime !== undefined ? { lastRotationTime } : {}),
      ...(round !== undefined ? { round } : {}),
      requests: [...requests].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)),
      requestSerial,
      rotateAnnotationHandled,
      nodeRotations,
    },
    clearAnnotation,
    happenings,
    stuck,
    ...(wakeAt !== undefined ? { wakeAt } : {}),
  };
}
