/**
 * metav1.Condition helpers, with the API's rules (apimachinery's meta.SetStatusCondition and the
 * validation of metav1.Condition): lastTransitionTime moves only when status changes, so
 * "since when is this Ready=False" stays true across reconciles; reason is a CamelCase word;
 * messages are bounded. Functions return new arrays and never mutate their input, so a status
 * writer can compare before and after.
 */
export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  /** The .metadata.generation this condition was computed from. */
  observedGeneration?: number;
  /** RFC 3339, second precision (metav1.Time). */
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message?: string;
  observedGeneration?: number;
}

export class ConditionError extends Error {
  override readonly name = 'ConditionError';
}

/** metav1.Condition allows 32768 characters; longer messages are cut with a marker. */
export const MAX_MESSAGE_LENGTH = 32768;
const MAX_REASON_LENGTH = 1024;
const MAX_TYPE_LENGTH = 316;
/** CamelCase: the stricter house rule within the API's `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`. */
const REASON = /^[A-Z][A-Za-z0-9]*$/;
/** The API's pattern for type: an optional DNS-subdomain prefix and a qualified name. */
const TYPE = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/;
const STATUSES: ReadonlySet<string> = new Set(['True', 'False', 'Unknown']);

export function isValidReason(reason: string): boolean {
  return reason.length <= MAX_REASON_LENGTH && REASON.test(reason);
}

/** Throws ConditionError when the input would be rejected by the API server (or our CamelCase rule). */
export function validateConditionInput(input: ConditionInput): void {
  if (input.type.length > MAX_TYPE_LENGTH || !TYPE.test(input.type)) {
    throw new ConditionError(`condition type ${JSON.stringify(input.type)} is not a valid condition type`);
  }
  if (!STATUSES.has(input.status)) throw new ConditionError(`condition ${input.type}: status must be True, False or Unknown, got ${JSON.stringify(input.status)}`);
  if (!isValidReason(input.reason)) {
    throw new ConditionError(`condition ${input.type}: reason ${JSON.stringify(input.reason)} must be CamelCase (letters and digits, starting with a capital)`);
  }
  const generation = input.observedGeneration;
  if (generation !== undefined && (!Number.isSafeInteger(generation) || generation < 0)) {
    throw new ConditionError(`condition ${input.type}: observedGeneration must be a non-negative integer, got ${generation}`);
  }
}

/** metav1.Time as the API server writes it: RFC 3339 in UTC, whole seconds. */
export function formatTime(time: Date): string {
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((condition) => condition.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

/**
 * Returns `conditions` with the condition of `input.type` set: added at the end if absent;
 * otherwise updated in place, keeping lastTransitionTime unless the status changed. When nothing
 * differs, the result is deep-equal to the input (so the status write can be skipped).
 */
export function setCondition(conditions: readonly Condition[] | undefined, input: ConditionInput, now: Date): Condition[] {
  validateConditionInput(input);
  const message = truncateMessage(input.message ?? '');
  const list = [...(conditions ?? [])];
  const index = list.findIndex((condition) => condition.type === input.type);
  const existing = index >= 0 ? list[index] : undefined;
  const next: Condition = {
    type: input.type,
    status: input.status,
    ...(input.observedGeneration !== undefined ? { observedGeneration: input.observedGeneration } : {}),
    lastTransitionTime: existing !== undefined && existing.status === input.status ? existing.lastTransitionTime : formatTime(now),
    reason: input.reason,
    message,
  };
  if (existing === undefined) list.push(next);
  else list[index] = next;
  return list;
}

export function removeCondition(conditions: readonly Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((condition) => condition.type !== type);
}

function truncateMessage(message: string): string {
  if (message.length <= MAX_MESSAGE_LENGTH) return message;
  const marker = '... (truncated)';
  return message.slice(0, MAX_MESSAGE_LENGTH - marker.length) + marker;
}
