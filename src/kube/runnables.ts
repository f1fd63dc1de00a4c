/**
 * A process's components started in a fixed order and stopped in the reverse order, in the
 * shape of controller-runtime's manager: each component is a Runnable; the next one starts only
 * once the previous one has started (the health server listens before caches sync, caches sync
 * before the kernel monitor and the workers run), so a component never sees a half-started
 * process. Every failure says which component failed and when (to start, while running, to
 * stop), and shutdown is bounded: a component that does not stop within the grace period is
 * reported and left behind rather than holding the process forever (a kubelet would SIGKILL it
 * anyway, without the others having been stopped in order).
 */
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import { silentLogger, type Logger } from './logger.js';

export interface Runnable {
  /** The component in messages: "health server", "caches", "kernel monitor", "workers". */
  readonly name: string;
  /**
   * Starts the component; resolves once it has started and the next component may start (a
   * server listens, a cache has synced). `signal` aborts when the process stops during the
   * start: a start that waits must give up then (its rejection is not reported as a failure).
   */
  start(signal: AbortSignal): Promise<void> | void;
  /**
   * Stops the component and resolves once it has stopped. Also called after a start that
   * failed or was aborted, so it must tolerate a partial start; called once.
   */
  stop(): Promise<void> | void;
  /**
   * For components that keep running on their own after start (a worker loop, an event
   * stream): settles when they end. Ending while the process is not stopping is a failure,
   * and the whole process stops.
   */
  done?(): Promise<unknown>;
}

export type RunnablePhase = 'start' | 'run' | 'stop';

/** What failed, in which phase; `cause` holds the component's own error. */
export class RunnableError extends Error {
  override readonly name = 'RunnableError';
  constructor(
    readonly runnable: string,
    readonly phase: RunnablePhase,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface RunInOrderOptions {
  readonly logger?: Logger;
  /** Bound on the whole shutdown, every stop together. Default 20 s. */
  readonly shutdownGraceMs?: number;
  readonly clock?: Clock;
}

/** Default grace: well within a pod's default terminationGracePeriodSeconds (30 s). */
export const DEFAULT_SHUTDOWN_GRACE_MS = 20_000;

/**
 * Starts `runnables` one after the other, runs until `signal` aborts or a component fails,
 * then stops every component that was started (or began to start), last first.
 *
 * Resolves after a clean stop requested through `signal`. Rejects with a RunnableError when a
 * component failed to start, failed while running, or did not stop in time (the first failure
 * wins; later ones are logged).
 */
export async function runInOrder(runnables: readonly Runnable[], signal: AbortSignal, options: RunInOrderOptions = {}): Promise<void> {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  const names = runnables.map((runnable) => runnable.name);
  if (new Set(names).size !== names.length) throw new Error(`runnables need distinct names, got ${names.join(', ')}`);

  // Aborted on the first failure: stops starts in progress and wakes the wait below.
  const failed = new AbortController();
  const stopping = AbortSignal.any([signal, failed.signal]);
  let failure: RunnableError | undefined;
  const fail = (error: RunnableError): void => {
    if (failure === undefined) {
      failure = error;
      failed.abort(error);
    } else {
      logger.error('another component failed while stopping', { component: error.runnable, error });
    }
  };

  const begun: Runnable[] = [];
  for (const runnable of runnables) {
    if (stopping.aborted) break;
    begun.push(runnable);
    try {
      await runnable.start(stopping);
    } catch (error) {
      // A start given up because the process is stopping is not a failure of its own.
      if (!stopping.aborted) fail(new RunnableError(runnable.name, 'start', `${runnable.name} failed to start: ${messageOf(error)}`, { cause: error }));
      break;
    }
    if (stopping.aborted) break;
    logger.debug('started', { component: runnable.name });
    runnable.done?.().then(
      () => {
        if (!stopping.aborted) fail(new RunnableError(runnable.name, 'run', `${runnable.name} ended on its own`));
      },
      (error: unknown) => {
        if (!stopping.aborted) fail(new RunnableError(runnable.name, 'run', `${runnable.name} failed: ${messageOf(error)}`, { cause: error }));
      },
    );
  }

  await untilAborted(stopping);
  if (failure !== undefined) logger.error('stopping: a component failed', { component: failure.runnable, error: failure });

  const deadline = clock.now() + graceMs;
  for (const runnable of begun.reverse()) {
    const outcome = await withinDeadline(clock, deadline, runnable.stop.bind(runnable));
    if (outcome.kind === 'stopped') {
      logger.debug('stopped', { component: runnable.name });
    } else if (outcome.kind === 'failed') {
      fail(new RunnableError(runnable.name, 'stop', `${runnable.name} failed to stop: ${messageOf(outcome.error)}`, { cause: outcome.error }));
    } else {
      fail(new RunnableError(runnable.name, 'stop', `${runnable.name} did not stop within the ${graceMs} ms shutdown grace period`));
    }
  }
  if (failure !== undefined) throw failure;
}

type StopOutcome = { kind: 'stopped' } | { kind: 'failed'; error: unknown } | { kind: 'timed-out' };

/** Runs `stop`; gives up waiting at `deadline` (the stop itself may still finish later). */
async function withinDeadline(clock: Clock, deadline: number, stop: () => Promise<void> | void): Promise<StopOutcome> {
  let timer: TimerHandle | undefined;
  const timeout = new Promise<StopOutcome>((resolve) => {
    timer = clock.setTimeout(() => resolve({ kind: 'timed-out' }), Math.max(0, deadline - clock.now()));
  });
  // Inside a promise chain: a stop that throws synchronously is a failed stop, not a crash.
  const stopped = Promise.resolve()
    .then(stop)
    .then(
      (): StopOutcome => ({ kind: 'stopped' }),
      (error: unknown): StopOutcome => ({ kind: 'failed', error }),
    );
  try {
    return await Promise.race([stopped, timeout]);
  } finally {
    clock.clearTimeout(timer);
  }
}

function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
