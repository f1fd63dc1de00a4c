/**
 * SIGTERM and SIGINT for a process that may be PID 1 of its container.
 *
 * The kernel gives a PID namespace's init no default signal actions: a SIGTERM it has no
 * handler for is simply dropped, so an agent that relied on the default would ignore the
 * kubelet's SIGTERM and be SIGKILLed after the grace period, every time. So handlers are
 * installed first thing (../cli/entry.ts, bin/) and stay installed:
 *
 * - before a long-running command claims them (stopSignal()), a signal ends the process at once
 *   with 128 + the signal's number, which is what the default action gives any other process;
 * - once claimed, the first signal aborts the claimed AbortSignal (the command stops its
 *   components in order and returns), and a deadline makes sure the process does exit;
 * - a second signal while stopping exits at once (an operator's Ctrl-C Ctrl-C).
 */
import { constants } from 'node:os';
import { createLogger, type Logger } from '../kube/logger.js';
import { DEFAULT_SHUTDOWN_GRACE_MS } from '../kube/runnables.js';

export const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
export type StopSignalName = (typeof STOP_SIGNALS)[number];

/** What these handlers need of `process` (a fake in unit tests). */
export interface SignalTarget {
  on(event: StopSignalName, listener: () => void): unknown;
  exit(code: number): never;
}

export interface SignalHandlerOptions {
  readonly target?: SignalTarget;
  readonly logger?: Logger;
  /**
   * After the first signal, exit with status 1 if the process is still alive this much later.
   * Default: the components' shutdown grace plus 5 s.
   */
  readonly exitDeadlineMs?: number;
  /** Timer for the deadline (unref'd by default: it must not keep a finished process alive). */
  readonly setTimer?: (callback: () => void, ms: number) => void;
}

export interface StopSignals {
  /**
   * Claims SIGTERM/SIGINT for a graceful stop: from now on the first one aborts the returned
   * signal instead of ending the process. The same AbortSignal on every call.
   */
  claim(): AbortSignal;
  /** Whether a command claimed the signals (a long-running command, which should exit promptly when it returns). */
  readonly claimed: boolean;
}

/** Exit status of a process ended by `signal`, as a shell reports it. */
export function signalExitStatus(signal: StopSignalName): number {
  return 128 + constants.signals[signal];
}

export function installSignalHandlers(options: SignalHandlerOptions = {}): StopSignals {
  const target = options.target ?? (process as unknown as SignalTarget);
  const logger = options.logger ?? createLogger({ fields: { component: 'signals' } });
  const deadlineMs = options.exitDeadlineMs ?? DEFAULT_SHUTDOWN_GRACE_MS + 5_000;
  const setTimer =
    options.setTimer ??
    ((callback: () => void, ms: number) => {
      setTimeout(callback, ms).unref();
    });
  const stop = new AbortController();
  let claimed = false;

  const onSignal = (signal: StopSignalName): void => {
    if (!claimed) return target.exit(signalExitStatus(signal));
    if (stop.signal.aborted) {
      logger.warn('second stop signal while stopping: exiting now', { signal });
      return target.exit(signalExitStatus(signal));
    }
    logger.info('stop signal received: stopping', { signal });
    stop.abort(new Error(`${signal} received`));
    setTimer(() => {
      logger.error('shutdown did not finish in time: exiting', { signal, deadlineMs });
      target.exit(1);
    }, deadlineMs);
  };
  for (const signal of STOP_SIGNALS) target.on(signal, () => onSignal(signal));

  return {
    claim() {
      claimed = true;
      return stop.signal;
    },
    get claimed() {
      return claimed;
    },
  };
}

// One set of handlers per process, however many copies of this module it loaded: the bundle's
// entry has one and the script it runs `agent`, `controller` and `mesh` from (./code-cache.ts)
// another; a second set would end the process on the first signal that the first set's command
// claimed.
const INSTALLED = Symbol.for('ipsec-operator.process-signals');
const processGlobal = globalThis as typeof globalThis & { [INSTALLED]?: StopSignals };

/**
 * The process's handlers, installed on first use. Entry points call this before they load
 * anything else, so that the window in which a signal is dropped is as short as it can be.
 */
export function processSignals(): StopSignals {
  processGlobal[INSTALLED] ??= installSignalHandlers();
  return processGlobal[INSTALLED];
}
