// The IpsecMesh rotation scheduler (src/controller/mesh-schedule.ts), rule by rule; the agents
// are stood in for by reports built here (their contract is src/crd/mesh-contract.ts).
import { describe, expect, it } from 'vitest';
import type { MeshRotationProgress, NodeMeshReport } from '../../src/crd/mesh-contract.js';
import {
  INITIAL_SCHEDULE,
  JITTER_FRACTION,
  hashJitter,
  schedule,
  type ScheduleInput,
  type ScheduleResult,
  type ScheduleState,
} from '../../src/controller/mesh-schedule.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const timings = { intervalMs: 24 * HOUR, gracePeriodMs: 30_000, backstopMs: HOUR, maxConcurrent: 1 };

function report(node: string, extra: Partial<NodeMeshReport> = {}): NodeMeshReport {
  return {
    mesh: 'm',
    uid: 'uid-1',
    advertisement: { node, bootId: `boot-${node}`, addresses: { inet: '10.0.0.1' }, podCIDRs: [], generations: [{ generation: 1, publicKey: 'AAAA' }], inbound: [], outbound: [], peers: [], leaving: false },
    expectedPeers: 2,
    readyPeers: 2,
    ...extra,
  };
}

const done = (requestId: string, completedAt: number): MeshRotationProgress => ({ requestId, state: 'Done', generation: 2, startedAt: new Date(completedAt - 1000).toISOString(), completedAt: new Date(completedAt).toISOString() });

function input(over: Partial<ScheduleInput> = {}): ScheduleInput {
  const members = over.members ?? ['a', 'b', 'c'];
  return {
    now: T0 + HOUR,
    meshUid: 'uid-1',
    createdAt: T0,
    timings,
    rotateAnnotation: false,
    members,
    reports: new Map(members.map((node) => [node, report(node)])),
    state: INITIAL_SCHEDULE,
    jitter: hashJitter('test-seed'),
    ...over,
  };
}

/** Runs the scheduler again on its own output with `next` changes, as the next reconcile would. */
function step(previous: ScheduleInput, result: ScheduleResult, next: Partial<ScheduleInput> = {}): [ScheduleInput, ScheduleResult] {
  const nextInput = { ...previous, state: result.state, ...next };
  return [nextInput, schedule(nextInput)];
}

const reportsWith = (members: readonly string[], progress: Record<string, Partial<NodeMeshReport>>) => new Map(members.map((node) => [node, report(node, progress[node] ?? {})]));

describe('mesh rotation scheduler', () => {
  it('does nothing before the interval has passed, and wakes when it will', () => {
    const result = schedule(input());
    expect(result.state.requests).toEqual([]);
    expect(result.state.keyGeneration).toBe(0);
    expect(result.happenings).toEqual([]);
    expect(result.wakeAt).toBe(T0 + timings.intervalMs);
  });

  it('on the annotation: a Manual round, one node at a time, no jitter, the annotation cleared', () => {
    const first = input({ rotateAnnotation: true });
    const result = schedule(first);
    expect(result.clearAnnotation).toBe(true);
    expect(result.state.keyGeneration).toBe(1);
    expect(result.state.rotateAnnotationHandled).toBe(true);
    expect(result.state.requests).toEqual([{ node: 'a', requestId: '1-a', reason: 'Manual', requestedAt: '2026-01-01T01:00:00Z' }]);
    expect(result.state.round).toEqual({ keyGeneration: 1, reason: 'Manual', startedAt: '2026-01-01T01:00:00Z', pending: ['b', 'c'] });
    expect(result.happenings.map((h) => h.kind)).toEqual(['RoundStarted', 'Requested']);
  });

  it('asks the next node only when the last one reports Done for its requestId, and completes the round', () => {
    let [current, result] = [input({ rotateAnnotation: true }), schedule(input({ rotateAnnotation: true }))];
    const members = ['a', 'b', 'c'];
    // The annotation is gone; a reports Rotating (not Done): nothing moves.
    [current, result] = step(current, result, { rotateAnnotation: false, now: T0 + HOUR + 5000, reports: reportsWith(members, { a: { rotation: { requestId: '1-a', state: 'Rotating', generation: 2, startedAt: '2026-01-01T01:00:01Z' } } }) });
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['1-a']);
    expect(result.state.rotateAnnotationHandled).toBe(false);
    // a reports Done for an older request: still nothing.
    [current, result] = step(current, result, { reports: reportsWith(members, { a: { rotation: done('0-a', T0) } }) });
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['1-a']);
    // Done for its request: b is asked.
    [current, result] = step(current, result, { now: T0 + HOUR + 60_000, reports: reportsWith(members, { a: { rotation: done('1-a', T0 + HOUR + 50_000) } }) });
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['2-b']);
    expect(result.state.nodeRotations).toEqual({ a: '2026-01-01T01:00:50.000Z' });
    expect(result.happenings).toContainEqual(expect.objectContaining({ kind: 'Completed', durationMs: 50_000 }));
    [current, result] = step(current, result, { reports: reportsWith(members, { a: { rotation: done('1-a', T0) }, b: { rotation: done('2-b', T0 + HOUR + 70_000) } }) });
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['3-c']);
    expect(result.state.round?.pending).toEqual([]);
    expect(result.happenings.map((h) => h.kind)).not.toContain('RoundCompleted');
    [current, result] = step(current, result, { now: T0 + 2 * HOUR, reports: reportsWith(members, { c: { rotation: done('3-c', T0 + 2 * HOUR) } }) });
    expect(result.state.requests).toEqual([]);
    expect(result.state.round).toBeUndefined();
    expect(result.state.lastRotationTime).toBe('2026-01-01T02:00:00Z');
    expect(result.happenings).toContainEqual({ kind: 'RoundCompleted', keyGeneration: 1, reason: 'Manual', durationMs: HOUR });
    // The next Interval round is due an interval after this one completed.
    expect(result.wakeAt).toBe(T0 + 2 * HOUR + timings.intervalMs);
  });

  it('honours maxConcurrent and keeps one request per node', () => {
    const members = ['a', 'b', 'c', 'd', 'e'];
    const first = input({ members, reports: reportsWith(members, {}), rotateAnnotation: true, timings: { ...timings, maxConcurrent: 2 } });
    let result = schedule(first);
    expect(result.state.requests.map((r) => r.node)).toEqual(['a', 'b']);
    let current: ScheduleInput;
    // Nothing reported: the same two, however often it runs.
    [current, result] = step(first, result, { rotateAnnotation: false });
    [current, result] = step(current, result);
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['1-a', '2-b']);
    // b is done: c takes its slot; a still holds the other.
    [current, result] = step(current, result, { reports: reportsWith(members, { b: { rotation: done('2-b', T0 + HOUR) } }) });
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['1-a', '3-c']);
    expect(new Set(result.state.requests.map((r) => r.node)).size).toBe(result.state.requests.length);
  });

  it('starts an Interval round an interval after creation, spreading nodes by a deterministic jitter within 10%', () => {
    const members = ['a', 'b', 'c', 'd'];
    const now = T0 + timings.intervalMs;
    const base = input({ members, reports: reportsWith(members, {}), now, timings: { ...timings, maxConcurrent: 4 } });
    const result = schedule(base);
    expect(result.state.keyGeneration).toBe(1);
    expect(result.state.round?.reason).toBe('Interval');
    const jitter = hashJitter('test-seed');
    const dueAt = Object.fromEntries(members.map((node) => [node, now + Math.floor(jitter(`uid-1/1/${node}`) * JITTER_FRACTION * timings.intervalMs)]));
    for (const time of Object.values(dueAt)) expect(time - now).toBeLessThan(JITTER_FRACTION * timings.intervalMs);
    // Not all at once: the jitter spreads them (with this seed, none is due at the very start).
    expect(result.state.requests.filter((r) => dueAt[r.node]! > now)).toEqual([]);
    const earliest = Math.min(...Object.values(dueAt).filter((time) => time > now));
    expect(result.wakeAt).toBe(earliest);
    // Each node is asked when its time comes, not before.
    let current = base;
    let next = result;
    for (const node of [...members].sort((x, y) => dueAt[x]! - dueAt[y]!)) {
      [current, next] = step(current, next, { now: dueAt[node]! - 1 });
      expect(next.state.requests.map((r) => r.node)).not.toContain(node);
      [current, next] = step(current, next, { now: dueAt[node]! });
      expect(next.state.requests.map((r) => r.node)).toContain(node);
      expect(next.state.requests.find((r) => r.node === node)?.reason).toBe('Interval');
    }
    // Another seed, other times; the same seed, the same times.
    expect(hashJitter('other')('uid-1/1/a')).not.toBe(jitter('uid-1/1/a'));
    expect(hashJitter('test-seed')('uid-1/1/a')).toBe(jitter('uid-1/1/a'));
  });

  it('asks a node whose agent wants a rotation (SoftLimit) first, outside any round', () => {
    const members = ['a', 'b', 'c'];
    const result = schedule(input({ reports: reportsWith(members, { c: { rotationWanted: 'SoftLimit' } }) }));
    expect(result.state.requests).toEqual([expect.objectContaining({ node: 'c', reason: 'SoftLimit', requestId: '1-c' })]);
    expect(result.state.keyGeneration).toBe(0);
    // During a round it goes before the round's members, and counts as its rotation in the round.
    const manual = schedule(input({ rotateAnnotation: true, reports: reportsWith(members, { c: { rotationWanted: 'SoftLimit' } }) }));
    expect(manual.state.requests).toEqual([expect.objectContaining({ node: 'c', reason: 'SoftLimit' })]);
    expect(manual.state.round?.pending).toEqual(['a', 'b']);
  });

  it('never asks a node twice at once, even when its agent keeps asking', () => {
    const members = ['a', 'b', 'c'];
    const first = input({ timings: { ...timings, maxConcurrent: 3 }, reports: reportsWith(members, { a: { rotationWanted: 'SoftLimit' } }) });
    let result = schedule(first);
    [, result] = step(first, result);
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['1-a']);
  });

  it('drops the request of a node that leaves, and the round forgets it', () => {
    const first = input({ rotateAnnotation: true });
    let result = schedule(first);
    expect(result.state.requests.map((r) => r.node)).toEqual(['a']);
    let current: ScheduleInput;
    [current, result] = step(first, result, { rotateAnnotation: false, members: ['b', 'c'], reports: reportsWith(['b', 'c'], {}) });
    expect(result.happenings).toContainEqual(expect.objectContaining({ kind: 'Dropped', why: 'NodeLeft' }));
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['2-b']);
    // c leaves while pending.
    [current, result] = step(current, result, { members: ['b'], reports: reportsWith(['b'], { b: { rotation: done('2-b', T0 + HOUR) } }) });
    expect(result.state.round).toBeUndefined();
    expect(result.happenings).toContainEqual(expect.objectContaining({ kind: 'RoundCompleted', keyGeneration: 1 }));
  });

  it('skips a member that does not take part instead of holding the round', () => {
    const members = ['a', 'b', 'c'];
    const reports = new Map([['a', report('a')], ['c', report('c', { reason: 'NoAddress' })]]);
    const result = schedule(input({ rotateAnnotation: true, reports }));
    expect(result.state.round?.pending).toEqual([]);
    expect(result.state.requests.map((r) => r.node)).toEqual(['a']);
    // b and c were never in the round: it started with the participants only.
    expect(result.happenings.filter((h) => h.kind === 'Skipped')).toEqual([]);
    // A pending member whose agent stops taking part is skipped.
    const later = schedule(input({ members, state: { ...INITIAL_SCHEDULE, keyGeneration: 1, round: { keyGeneration: 1, reason: 'Manual', startedAt: '2026-01-01T01:00:00Z', pending: ['b', 'c'] } }, reports }));
    expect(later.happenings.filter((h) => h.kind === 'Skipped').map((h) => h.kind === 'Skipped' && [h.node, h.why])).toEqual([['b', 'AgentMissing'], ['c', 'NoAddress']]);
    expect(later.state.round).toBeUndefined();
  });

  it('starts no Interval round without participants', () => {
    const result = schedule(input({ now: T0 + 2 * timings.intervalMs, reports: new Map() }));
    expect(result.state.keyGeneration).toBe(0);
    expect(result.wakeAt).toBeUndefined();
  });

  it('a Manual round supersedes one under way, and its members rotate again', () => {
    const members = ['a', 'b', 'c'];
    const state: ScheduleState = {
      ...INITIAL_SCHEDULE,
      keyGeneration: 4,
      requestSerial: 9,
      round: { keyGeneration: 4, reason: 'Interval', startedAt: '2026-01-01T00:00:00Z', pending: ['c'] },
      requests: [{ node: 'b', requestId: '9-b', reason: 'Interval', requestedAt: '2026-01-01T00:30:00Z' }],
      nodeRotations: { a: '2026-01-01T00:20:00Z' },
    };
    const first = input({ rotateAnnotation: true, state, reports: reportsWith(members, {}), timings: { ...timings, maxConcurrent: 3 } });
    let result = schedule(first);
    expect(result.happenings.map((h) => h.kind)).toEqual(['RoundSuperseded', 'RoundStarted', 'Requested', 'Requested']);
    expect(result.state.keyGeneration).toBe(5);
    // b is busy with its old request: it stays pending (one request per node); a and c are asked.
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['10-a', '9-b', '11-c']);
    expect(result.state.round?.pending).toEqual(['b']);
    let current: ScheduleInput;
    [current, result] = step(first, result, { rotateAnnotation: false, reports: reportsWith(members, { a: { rotation: done('10-a', T0 + HOUR) }, c: { rotation: done('11-c', T0 + HOUR) } }) });
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['9-b']);
    expect(result.happenings.map((h) => h.kind)).not.toContain('RoundCompleted');
    [current, result] = step(current, result, { reports: reportsWith(members, { b: { rotation: done('9-b', T0 + HOUR) } }) });
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['12-b']);
    expect(result.state.round?.pending).toEqual([]);
    [current, result] = step(current, result, { reports: reportsWith(members, { b: { rotation: done('12-b', T0 + HOUR) } }) });
    expect(result.happenings).toContainEqual(expect.objectContaining({ kind: 'RoundCompleted', keyGeneration: 5 }));
  });

  it('reports a request stuck after the backstop plus the grace period, and keeps it', () => {
    const first = input({ rotateAnnotation: true });
    let result = schedule(first);
    expect(result.wakeAt).toBe(T0 + HOUR + timings.backstopMs + timings.gracePeriodMs);
    [, result] = step(first, result, { rotateAnnotation: false, now: T0 + HOUR + timings.backstopMs + timings.gracePeriodMs - 1 });
    expect(result.stuck).toEqual([]);
    [, result] = step(first, result, { rotateAnnotation: false, now: T0 + HOUR + timings.backstopMs + timings.gracePeriodMs });
    expect(result.stuck.map((r) => r.requestId)).toEqual(['1-a']);
    expect(result.state.requests.map((r) => r.requestId)).toEqual(['1-a']);
  });

  it('never reuses a requestId, across rounds, nodes and restarts', () => {
    const members = ['a', 'b'];
    const seen = new Set<string>();
    let current = input({ members, reports: reportsWith(members, {}), timings: { ...timings, intervalMs: 10 * 60_000, maxConcurrent: 2 } });
    let result = schedule(current);
    for (let i = 0; i < 60; i++) {
      for (const request of result.state.requests) seen.add(`${request.requestId}|${request.node}`);
      const now = current.now + 7 * 60_000;
      const reports = reportsWith(members, Object.fromEntries(result.state.requests.map((r) => [r.node, { rotation: done(r.requestId, now), ...(i % 5 === 0 ? { rotationWanted: 'SoftLimit' as const } : {}) }])));
      // Every few steps, a controller that starts again from the status alone (a fresh input).
      [current, result] = step(current, result, { now, reports, rotateAnnotation: i % 7 === 0 });
    }
    const ids = [...seen].map((entry) => entry.split('|')[0]);
    expect(ids.length).toBeGreaterThan(20);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('mesh rotation scheduler across controller restarts', () => {
  it('is idempotent: the same inputs and its own output give the same state and ask nobody again', () => {
    const members = ['a', 'b', 'c'];
    const cases: ScheduleInput[] = [
      input({ rotateAnnotation: true }),
      input({ now: T0 + timings.intervalMs + HOUR, timings: { ...timings, maxConcurrent: 2 } }),
      input({ reports: reportsWith(members, { b: { rotationWanted: 'SoftLimit' } }) }),
    ];
    for (const first of cases) {
      const once = schedule(first);
      const twice = schedule({ ...first, state: once.state });
      expect(twice.state).toEqual(once.state);
      expect(twice.happenings.filter((h) => h.kind === 'Requested' || h.kind === 'RoundStarted')).toEqual([]);
    }
  });

  it('acts on the annotation once when restarted between the status write and its removal', () => {
    const first = input({ rotateAnnotation: true });
    const once = schedule(first);
    // The status was written, the controller died before removing the annotation: a new one
    // reads the status (JSON round trip) and sees the annotation still there.
    const restored = JSON.parse(JSON.stringify(once.state)) as ScheduleState;
    const again = schedule({ ...first, state: restored, now: first.now + 60_000 });
    expect(again.clearAnnotation).toBe(true);
    expect(again.state.keyGeneration).toBe(1);
    expect(again.state.requests).toEqual(once.state.requests);
    // Once it is gone, the record is forgotten, and a new annotation is a new round.
    const gone = schedule({ ...first, rotateAnnotation: false, state: again.state });
    expect(gone.state.rotateAnnotationHandled).toBe(false);
    expect(gone.clearAnnotation).toBe(false);
    const anew = schedule({ ...first, rotateAnnotation: true, state: gone.state });
    expect(anew.state.keyGeneration).toBe(2);
  });
});
