/**
 * Workers that drain a WorkQueue into a level-based reconciler, in controller-runtime's shape:
 * the reconciler gets a key (never an event), returns "done", "requeue after" or "requeue", or
 * throws. `decideOutcome` is the one place that maps what happened to a queue action and a
 * metric label; everything a reconciler can do wrong (reject, throw synchronously, throw a
 * non-Error) is contained there and never stops a worker.
 */
import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from './clock.js';
import { silentLogger, type Logger } from './logger.js';
import type { WorkQueue } from './workqueue.js';

export interface ReconcileResult {
  /** Reconcile this key again after this many milliseconds (e.g. a lifetime expiring). */
  requeueAfter?: number;
  /** Reconcile again after the key's backoff (not an error: "not ready yet, try again"). */
  requeue?: boolean;
}

export interface ReconcileContext {
  key: string;
  /** Unique per attempt; also in every line of `logger`. */
  reconcileId: string;
  logger: Logger;
  /** Aborted when the workers stop or the reconcile exceeds its timeout. */
  signal: AbortSignal;
}

export type Reconciler = (key: string, context: ReconcileContext) => Promise<ReconcileResult | void> | ReconcileResult | void;

/**
 * An error that retrying will not fix (invalid spec the validator let through, a permission the
 * operator will never have): recorded, counted, not requeued. A later change to the object
 * enqueues it again through the informer.
 */
export class TerminalError extends Error {
  override readonly name = 'TerminalError';
}

/** True for a TerminalError, also when wrapped as the `cause` of another error. */
export function isTerminalError(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth++) {
    if (current instanceof TerminalError) return true;
  }
  return false;
}

/** Metric label of a reconcile, as controller_runtime_reconcile_total{result}. */
export type ReconcileOutcome = 'success' | 'error' | 'requeue' | 'requeue_after';

export type QueueAction =
  | { kind: 'forget' }
  | { kind: 'rate-limited' }
  | { kind: 'forget-and-add-after'; ms: number };

export interface Decision {
  outcome: ReconcileOutcome;
  action: QueueAction;
  /** The error, when outcome is `error`. */
  error?: unknown;
  terminal: boolean;
}

export type Settled = { result: ReconcileResult | void } | { error: unknown };

/** How each way a reconcile can end is handled. */
export function decideOutcome(settled: Settled): Decision {
  if ('error' in settled) {
    const terminal = isTerminalError(settled.error);
    // A terminal error is forgotten: retrying cannot help, and its backoff count must not
    // leak into the next, unrelated failure of the same key.
    return { outcome: 'error', action: terminal ? { kind: 'forget' } : { kind: 'rate-limited' }, error: settled.error, terminal };
  }
  const result = settled.result ?? {};
  const after = result.requeueAfter;
  if (after !== undefined && Number.isFinite(after) && after > 0) {
    return { outcome: 'requeue_after', action: { kind: 'forget-and-add-after', ms: after }, terminal: false };
  }
  if (result.requeue === true) return { outcome: 'requeue', action: { kind: 'rate-limited' }, terminal: false };
  return { outcome: 'success', action: { kind: 'forget' }, terminal: false };
}

export function applyAction(queue: WorkQueue, key: string, action: QueueAction): void {
  switch (action.kind) {
    case 'forget':
      queue.forget(key);
      return;
    case 'rate-limited':
      queue.addRateLimited(key);
      return;
    case 'forget-and-add-after':
      queue.forget(key);
      queue.addAfter(key, action.ms);
      return;
  }
}

/** What metrics need from a reconcile; see ./metrics.ts. */
export interface ReconcileHooks {
  reconciled(outcome: ReconcileOutcome, seconds: number, terminal: boolean): void;
  /** Workers currently inside a reconcile (controller_runtime_active_workers). */
  activeWorkers?(count: number): void;
}

export interface RunWorkersOptions {
  /** Name in logs and metrics; default the queue's name. */
  controller?: string;
  logger?: Logger;
  hooks?: ReconcileHooks;
  clock?: Clock;
  /** Aborts each reconcile's signal after this long (the reconciler must honour it). */
  timeoutMs?: number;
  /** Aborting it shuts the queue down and aborts running reconciles' signals. */
  signal?: AbortSignal;
  /** For tests; default crypto.randomUUID. */
  newReconcileId?: () => string;
}

/**
 * Runs `concurrency` workers until the queue is shut down (directly or through `signal`), then
 * resolves once every in-flight reconcile has finished. Never rejects.
 */
export async function runWorkers(queue: WorkQueue, concurrency: number, reconcile: Reconciler, options: RunWorkersOptions = {}): Promise<void> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  const controller = options.controller ?? queue.name;
  const logger = (options.logger ?? silentLogger).child({ controller });
  const clock = options.clock ?? systemClock;
  const newId = options.newReconcileId ?? randomUUID;
  const stop = new AbortController();
  const onAbort = (): void => {
    stop.abort();
    queue.shutDown();
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let active = 0;

  const processOne = async (key: string): Promise<void> => {
    const reconcileId = newId();
    const log = logger.child({ key, reconcileID: reconcileId });
    const attempt = new AbortController();
    const timer = options.timeoutMs !== undefined ? clock.setTimeout(() => attempt.abort(new Error(`reconcile timed out after ${options.timeoutMs} ms`)), options.timeoutMs) : undefined;
    const signal = AbortSignal.any([stop.signal, attempt.signal]);
    const started = clock.now();
    active++;
    safely(() => options.hooks?.activeWorkers?.(active));
    let settled: Settled;
    try {
      // Called inside the try: a synchronous throw is contained like a rejection.
      settled = { result: await reconcile(key, { key, reconcileId, logger: log, signal }) };
    } catch (error) {
      settled = { error };
    }
    clock.clearTimeout(timer);
    active--;
    const decision = decideOutcome(settled);
    const seconds = (clock.now() - started) / 1000;
    if (decision.outcome === 'error') {
      log.error(decision.terminal ? 'reconcile failed with a terminal error; not retrying' : 'reconcile failed; retrying with backoff', {
        error: asError(decision.error),
        retries: queue.numRequeues(key),
      });
    } else if (decision.action.kind === 'forget-and-add-after') {
      log.debug('reconciled; requeue after delay', { requeueAfterMs: decision.action.ms });
    } else {
      log.debug('reconciled', { outcome: decision.outcome });
    }
    applyAction(queue, key, decision.action);
    safely(() => options.hooks?.reconciled(decision.outcome, seconds, decision.terminal));
    safely(() => options.hooks?.activeWorkers?.(active));
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        await processOne(key);
      } catch (error) {
        // Only a logger or queue bug gets here; the worker must survive it.
        safely(() => logger.error('work queue worker failed outside reconcile', { key, error: asError(error) }));
      } finally {
        queue.done(key);
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

function asError(value: unknown): Error {
  if (value instanceof Error) return value;
  let text: string;
  try {
    text = String(value);
  } catch {
    text = '[unprintable value]';
  }
  return new Error(`non-Error thrown: ${text}`);
}

function safely(action: () => void): void {
  try {
    action();
  } catch {
    // Hooks are best effort.
  }
}
