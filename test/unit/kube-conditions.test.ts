import { describe, expect, it } from 'vitest';
import { ConditionError, MAX_MESSAGE_LENGTH, findCondition, formatTime, isConditionTrue, removeCondition, setCondition, type Condition } from '../../src/kube/conditions.js';

const t0 = new Date('2025-03-01T10:00:00.123Z');
const t1 = new Date('2025-03-01T10:05:00.000Z');

describe('setCondition', () => {
  it('adds a condition with the transition time in metav1.Time format', () => {
    const conditions = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'Pending', message: 'waiting', observedGeneration: 3 }, t0);
    expect(conditions).toEqual([{ type: 'Ready', status: 'False', observedGeneration: 3, lastTransitionTime: '2025-03-01T10:00:00Z', reason: 'Pending', message: 'waiting' }]);
  });

  it('keeps lastTransitionTime when only reason, message or generation change', () => {
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: 'a', observedGeneration: 1 }, t0);
    const second = setCondition(first, { type: 'Ready', status: 'False', reason: 'KeyMissing', message: 'b', observedGeneration: 2 }, t1);
    expect(second[0]).toMatchObject({ lastTransitionTime: '2025-03-01T10:00:00Z', reason: 'KeyMissing', message: 'b', observedGeneration: 2 });
  });

  it('moves lastTransitionTime when the status changes', () => {
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending' }, t0);
    const second = setCondition(first, { type: 'Ready', status: 'True', reason: 'Applied' }, t1);
    expect(second[0]?.lastTransitionTime).toBe('2025-03-01T10:05:00Z');
  });

  it('returns an equal list when nothing changed, and never mutates its input', () => {
    const first = setCondition([], { type: 'Ready', status: 'True', reason: 'Applied', message: 'ok', observedGeneration: 4 }, t0);
    const frozen = Object.freeze(first.map((condition) => Object.freeze({ ...condition })));
    const again = setCondition(frozen, { type: 'Ready', status: 'True', reason: 'Applied', message: 'ok', observedGeneration: 4 }, t1);
    expect(again).toEqual(first);
    expect(again).not.toBe(frozen);
  });

  it('updates in place and appends new types, keeping order', () => {
    let conditions: Condition[] = [];
    conditions = setCondition(conditions, { type: 'Ready', status: 'True', reason: 'Applied' }, t0);
    conditions = setCondition(conditions, { type: 'Degraded', status: 'False', reason: 'AllNodesApplied' }, t0);
    conditions = setCondition(conditions, { type: 'Ready', status: 'False', reason: 'NodeFailed' }, t1);
    expect(conditions.map((condition) => condition.type)).toEqual(['Ready', 'Degraded']);
    expect(findCondition(conditions, 'Ready')?.reason).toBe('NodeFailed');
    expect(isConditionTrue(conditions, 'Ready')).toBe(false);
    expect(isConditionTrue(conditions, 'Missing')).toBe(false);
    expect(removeCondition(conditions, 'Ready').map((condition) => condition.type)).toEqual(['Degraded']);
  });

  it.each(['not camel', 'lowerCase', 'Has-Dash', 'Has_Underscore', '', 'Trailing:', 'Ünicode'])('rejects reason %j', (reason) => {
    expect(() => setCondition([], { type: 'Ready', status: 'True', reason }, t0)).toThrow(ConditionError);
  });

  it.each(['Applied', 'KeyMissing', 'Node2Failed', 'A'])('accepts reason %j', (reason) => {
    expect(setCondition([], { type: 'Ready', status: 'True', reason }, t0)[0]?.reason).toBe(reason);
  });

  it('rejects invalid types, statuses and generations', () => {
    expect(() => setCondition([], { type: 'has space', status: 'True', reason: 'Ok' }, t0)).toThrow(ConditionError);
    expect(() => setCondition([], { type: 'Ready', status: 'true' as 'True', reason: 'Ok' }, t0)).toThrow(ConditionError);
    expect(() => setCondition([], { type: 'Ready', status: 'True', reason: 'Ok', observedGeneration: -1 }, t0)).toThrow(ConditionError);
    expect(() => setCondition([], { type: 'Ready', status: 'True', reason: 'Ok', observedGeneration: 1.5 }, t0)).toThrow(ConditionError);
    expect(setCondition([], { type: 'ipsec.xfrm.io/KernelApplied', status: 'Unknown', reason: 'Ok' }, t0)).toHaveLength(1);
  });

  it('truncates over-long messages to what the API accepts', () => {
    const [condition] = setCondition([], { type: 'Ready', status: 'False', reason: 'Failed', message: 'x'.repeat(MAX_MESSAGE_LENGTH + 10) }, t0);
    expect(condition?.message).toHaveLength(MAX_MESSAGE_LENGTH);
    expect(condition?.message.endsWith('(truncated)')).toBe(true);
  });

  it('formats times at second precision in UTC', () => {
    expect(formatTime(new Date('2025-12-31T23:59:59.999Z'))).toBe('2025-12-31T23:59:59Z');
  });
});
