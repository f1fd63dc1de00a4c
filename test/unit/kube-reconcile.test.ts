import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ManualClock, flushMicrotasks } from '../../src/kube/clock.js';
import { createLogger, type LogFields } from '../../src/kube/logger.js';
import { createOperatorMetrics } from '../../src/kube/metrics.js';
import { decideOutcome, type ReconcileOutcome } from '../../src/kube/reconcile.js';
import { TerminalError, WorkQueue, runWorkers, type ReconcileResult } from '../../src/kube/workqueue.js';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function captureLogger() {
  const lines: LogFields[] = [];
  const logger = createLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as LogFields) });
  return { lines, logger };
}

function recordingHooks() {
  const outcomes: Array<{ outcome: ReconcileOutcome; terminal: boolean }> = [];
  return { outcomes, hooks: { reconciled: (outcome: ReconcileOutcome, _seconds: number, terminal: boolean) => outcomes.push({ outcome, terminal }) } };
}

describe('decideOutcome: one mapping from how a reconcile ended to a queue action and a label', () => {
  it.each([
    ['no result', { result: undefined }, 'success', 'forget'],
    ['empty result', { result: {} }, 'success', 'forget'],
    ['requeueAfter', { result: { requeueAfter: 30_000 } }, 'requeue_after', 'forget-and-add-after'],
    ['requeueAfter 0 means none', { result: { requeueAfter: 0 } }, 'success', 'forget'],
    ['requeue', { result: { requeue: true } }, 'requeue', 'rate-limited'],
    ['requeueAfter wins over requeue', { result: { requeue: true, requeueAfter: 5 } }, 'requeue_after', 'forget-and-add-after'],
    ['error', { error: new Error('boom') }, 'error', 'rate-limited'],
    ['non-Error thrown', { error: 'a string' }, 'error', 'rate-limited'],
    ['terminal error', { error: new TerminalError('bad spec') }, 'error', 'forget'],
    ['terminal error as cause', { error: new Error('wrapped', { cause: new TerminalError('bad spec') }) }, 'error', 'forget'],
  ] as const)('%s', (_name, settled, outcome, action) => {
    const decision = decideOutcome(settled as Parameters<typeof decideOutcome>[0]);
    expect(decision.outcome).toBe(outcome);
    expect(decision.action.kind).toBe(action);
  });
});

describe('runWorkers', () => {
  it('reconciles each key and forgets its failures on success', async () => {
    const queue = new WorkQueue({ clock: new ManualClock() });
    const seen: string[] = [];
    const { outcomes, hooks } = recordingHooks();
    queue.add('a');
    queue.add('b');
    const running = runWorkers(queue, 2, (key) => {
      seen.push(key);
      if (seen.length === 2) queue.shutDown();
    }, { hooks });
    await running;
    expect(seen.sort()).toEqual(['a', 'b']);
    expect(outcomes.map((entry) => entry.outcome)).toEqual(['success', 'success']);
  });

  it('contains rejections, synchronous throws and non-Errors; logs them; requeues with growing backoff', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock, backoff: { baseMs: 5, maxMs: 1000 } });
    const { lines, logger } = captureLogger();
    const { outcomes, hooks } = recordingHooks();
    const attempts: string[] = [];
    const failures = [
      () => Promise.reject(new Error('async failure')),
      () => {
        throw new Error('sync failure');
      },
      () => {
        throw 'not an error';
      },
    ];
    const running = runWorkers(
      queue,
      1,
      (key) => {
        attempts.push(key);
        const fail = failures[attempts.length - 1];
        return fail !== undefined ? fail() : undefined;
      },
      { clock, logger, hooks, controller: 'test', newReconcileId: () => `id-${attempts.length + 1}` },
    );
    queue.add('k');
    await flushMicrotasks();
    expect(clock.pendingDelays()).toEqual([5]);
    await clock.advance(5);
    expect(clock.pendingDelays()).toEqual([10]);
    await clock.advance(10);
    expect(clock.pendingDelays()).toEqual([20]);
    await clock.advance(20);
    expect(attempts).toEqual(['k', 'k', 'k', 'k']);
    expect(outcomes.map((entry) => entry.outcome)).toEqual(['error', 'error', 'error', 'success']);
    expect(queue.numRequeues('k')).toBe(0);
    const errors = lines.filter((line) => line.level === 'error');
    expect(errors.map((line) => (line.error as { message: string }).message)).toEqual(['async failure', 'sync failure', 'non-Error thrown: not an error']);
    expect(errors[0]).toMatchObject({ controller: 'test', key: 'k', reconcileID: 'id-1' });
    queue.shutDown();
    await running;
  });

  it('does not retry a terminal error', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    const { outcomes, hooks } = recordingHooks();
    let calls = 0;
    const running = runWorkers(queue, 1, () => {
      calls++;
      throw new TerminalError('spec can never work');
    }, { clock, hooks });
    queue.add('k');
    await clock.advance(60_000);
    expect(calls).toBe(1);
    expect(clock.pending()).toBe(0);
    expect(outcomes).toEqual([{ outcome: 'error', terminal: true }]);
    queue.shutDown();
    await running;
  });

  it('requeues after the requested delay', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    let calls = 0;
    const running = runWorkers(queue, 1, (): ReconcileResult => (++calls === 1 ? { requeueAfter: 30_000 } : {}), { clock });
    queue.add('k');
    await flushMicrotasks();
    expect(clock.pendingDelays()).toEqual([30_000]);
    await clock.advance(29_999);
    expect(calls).toBe(1);
    await clock.advance(1);
    expect(calls).toBe(2);
    queue.shutDown();
    await running;
  });

  it('never runs one key on two workers, and reconciles it again when re-added meanwhile', async () => {
    const queue = new WorkQueue({ clock: new ManualClock() });
    const active = new Set<string>();
    let overlap = false;
    const gates: Array<ReturnType<typeof deferred<void>>> = [];
    const calls: string[] = [];
    const running = runWorkers(queue, 4, async (key) => {
      if (active.has(key)) overlap = true;
      active.add(key);
      calls.push(key);
      const gate = deferred<void>();
      gates.push(gate);
      await gate.promise;
      active.delete(key);
    });
    queue.add('k');
    await flushMicrotasks();
    queue.add('k');
    queue.add('k');
    queue.add('other');
    await flushMicrotasks();
    expect(calls).toEqual(['k', 'other']);
    gates[0]?.resolve();
    await flushMicrotasks();
    expect(calls).toEqual(['k', 'other', 'k']);
    for (const gate of gates) gate.resolve();
    await flushMicrotasks();
    for (const gate of gates) gate.resolve();
    queue.shutDown();
    await running;
    expect(overlap).toBe(false);
    expect(calls.filter((key) => key === 'k')).toHaveLength(2);
  });

  it('aborting its signal stops the workers, aborts running reconciles and resolves when they finish', async () => {
    const queue = new WorkQueue({ clock: new ManualClock() });
    const stop = new AbortController();
    let sawAbort = false;
    const running = runWorkers(queue, 2, (_key, context) =>
      new Promise<void>((resolve) => {
        context.signal.addEventListener('abort', () => {
          sawAbort = true;
          resolve();
        });
      }), { signal: stop.signal });
    queue.add('k');
    await flushMicrotasks();
    stop.abort();
    await running;
    expect(sawAbort).toBe(true);
    expect(queue.isShuttingDown()).toBe(true);
  });

  it('aborts the signal of a reconcile that exceeds its timeout', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    const { outcomes, hooks } = recordingHooks();
    const running = runWorkers(queue, 1, (_key, context) =>
      new Promise<void>((_resolve, reject) => {
        context.signal.addEventListener('abort', () => reject(context.signal.reason));
      }), { clock, hooks, timeoutMs: 1000 });
    queue.add('k');
    await clock.advance(999);
    expect(outcomes).toEqual([]);
    await clock.advance(1);
    expect(outcomes).toEqual([{ outcome: 'error', terminal: false }]);
    queue.shutDown();
    await running;
  });

  it('rejects a concurrency that is not a positive integer', async () => {
    await expect(runWorkers(new WorkQueue(), 0, () => undefined)).rejects.toThrow(RangeError);
  });

  it('feeds controller-runtime style metrics on a private registry', async () => {
    const clock = new ManualClock();
    const registry = new Registry();
    const metrics = createOperatorMetrics(registry);
    const queue = new WorkQueue({ clock, name: 'sa', hooks: metrics.queueHooks('sa') });
    let calls = 0;
    const running = runWorkers(queue, 1, () => {
      calls++;
      if (calls === 1) throw new Error('first fails');
      if (calls === 2) throw new TerminalError('then terminal');
      return { requeueAfter: 1000 };
    }, { clock, hooks: metrics.reconcileHooks('sa-controller') });
    queue.add('k');
    await clock.advance(5);
    queue.add('k');
    await flushMicrotasks();
    queue.shutDown();
    await running;
    const total = await metrics.reconcileTotal.get();
    const byResult = Object.fromEntries(total.values.map((value) => [value.labels.result, value.value]));
    expect(byResult).toEqual({ success: 0, error: 2, requeue: 0, requeue_after: 1 });
    expect((await metrics.reconcileErrorsTotal.get()).values[0]?.value).toBe(2);
    expect((await metrics.terminalReconcileErrorsTotal.get()).values[0]?.value).toBe(1);
    expect((await metrics.workqueueRetriesTotal.get()).values[0]?.value).toBe(1);
    expect((await metrics.workqueueAddsTotal.get()).values[0]?.value).toBe(3);
    const text = await registry.metrics();
    expect(text).toContain('ipsec_operator_reconcile_time_seconds_count{controller="sa-controller"} 3');
    expect(text).toContain('ipsec_operator_workqueue_depth{name="sa"} 0');
  });
});
