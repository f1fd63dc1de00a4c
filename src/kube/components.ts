/**
 * Runnables (./runnables.ts) for the parts both processes have: the health and metrics server,
 * informer caches, and a loop that runs until stopped (work-queue workers, an event stream).
 */
import type { HealthServer } from './health.js';
import type { Informer, KubeObject } from './informer.js';
import type { Runnable } from './runnables.js';

/** Listens on start; stops listening on stop. */
export function healthServerRunnable(health: HealthServer, name = 'health and metrics server'): Runnable {
  return {
    name,
    start: async () => void (await health.start()),
    stop: () => health.stop(),
  };
}

/**
 * Starts the informers and resolves once every cache has synced once: what comes next (the
 * workers) never acts on a partial view. Waiting gives up when the process stops.
 */
export function cachesRunnable(informers: readonly Informer<KubeObject>[], name = 'caches'): Runnable {
  return {
    name,
    async start(signal) {
      for (const informer of informers) informer.start();
      await Promise.all(informers.map((informer) => informer.waitForSync(signal)));
    },
    stop() {
      for (const informer of informers) informer.stop();
    },
  };
}

/**
 * A loop that runs from start until stop: `run` gets a signal that aborts on stop and must
 * return once it has. Ending earlier (resolved or rejected) is reported by the manager as a
 * failure of this component.
 */
export function loopRunnable(name: string, run: (signal: AbortSignal) => Promise<void>, hooks: { onStart?: () => void } = {}): Runnable {
  let stop: AbortController | undefined;
  let running: Promise<void> | undefined;
  return {
    name,
    start() {
      stop = new AbortController();
      running = Promise.resolve().then(() => run(stop!.signal));
      // Marked handled here; the outcome reaches the manager through done() and stop().
      running.catch(() => undefined);
      hooks.onStart?.();
    },
    done: () => running ?? Promise.resolve(),
    async stop() {
      stop?.abort();
      await running;
    },
  };
}
