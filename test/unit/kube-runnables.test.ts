import { describe, expect, it } from 'vitest';
import { runInOrder, RunnableError, type Runnable } from '../../src/kube/runnables.js';
import { cachesRunnable, loopRunnable } from '../../src/kube/components.js';
import { Informer } from '../../src/kube/informer.js';
import { FakeListerWatcher } from '../../src/kube/fake-lister-watcher.js';
import { ManualClock, flushMicrotasks } from '../../src/kube/clock.js';

/** A component that records what happened to it in a shared journal. */
function component(name: string, journal: string[], behaviour: { start?: (signal: AbortSignal) => Promise<void> | void; stop?: () => Promise<void> | void; done?: () => Promise<unknown> } = {}): Runnable {
  return {
    name,
    async start(signal) {
      journal.push(`start ${name}`);
      await behaviour.start?.(signal);
      journal.push(`started ${name}`);
    },
    async stop() {
      journal.push(`stop ${name}`);
      await behaviour.stop?.();
    },
    ...(behaviour.done ? { done: behaviour.done } : {}),
  };
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('runInOrder', () => {
  it('starts each component after the previous one started, and stops them in reverse order when the signal aborts', async () => {
    const journal: string[] = [];
    const cachesSynced = deferred();
    const stop = new AbortController();
    const running = runInOrder(
      [component('health', journal), component('caches', journal, { start: () => cachesSynced.promise }), component('monitor', journal), component('workers', journal)],
      stop.signal,
    );
    await flushMicrotasks();
    expect(journal).toEqual(['start health', 'started health', 'start caches']);
    cachesSynced.resolve();
    await flushMicrotasks();
    expect(journal.slice(3)).toEqual(['started caches', 'start monitor', 'started monitor', 'start workers', 'started workers']);
    stop.abort();
    await running;
    expect(journal.slice(8)).toEqual(['stop workers', 'stop monitor', 'stop caches', 'stop health']);
  });

  it('names the component that failed to start, starts nothing after it, and stops what began (the failed one included)', async () => {
    const journal: string[] = [];
    const failure = runInOrder(
      [
        component('kernel socket and ownership ledger', journal),
        component('health', journal, {
          start: () => {
            throw Object.assign(new Error('listen EADDRINUSE: address already in use :::9090'), { code: 'EADDRINUSE' });
          },
        }),
        component('workers', journal),
      ],
      new AbortController().signal,
    );
    const error = await failure.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RunnableError);
    expect((error as RunnableError).message).toBe('health failed to start: listen EADDRINUSE: address already in use :::9090');
    expect((error as RunnableError).runnable).toBe('health');
    expect((error as RunnableError).phase).toBe('start');
    expect(((error as RunnableError).cause as { code?: string }).code).toBe('EADDRINUSE');
    expect(journal).toEqual(['start kernel socket and ownership ledger', 'started kernel socket and ownership ledger', 'start health', 'stop health', 'stop kernel socket and ownership ledger']);
  });

  it('gives up a start that waits when the process stops, without calling that a failure', async () => {
    const journal: string[] = [];
    const stop = new AbortController();
    const running = runInOrder(
      [
        component('health', journal),
        component('caches', journal, {
          start: (signal) =>
            new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('waiting for informer nodes was aborted')), { once: true })),
        }),
        component('workers', journal),
      ],
      stop.signal,
    );
    await flushMicrotasks();
    stop.abort();
    await expect(running).resolves.toBeUndefined();
    expect(journal).toEqual(['start health', 'started health', 'start caches', 'stop caches', 'stop health']);
  });

  it('stops everything when a running component fails, and reports that component', async () => {
    const journal: string[] = [];
    const monitorEnded = deferred();
    const running = runInOrder([component('health', journal), component('kernel monitor', journal, { done: () => monitorEnded.promise }), component('workers', journal)], new AbortController().signal);
    await flushMicrotasks();
    expect(journal.at(-1)).toBe('started workers');
    monitorEnded.reject(new Error('netlink socket: ENOBUFS'));
    const error = (await running.catch((caught: unknown) => caught)) as RunnableError;
    expect(error.message).toBe('kernel monitor failed: netlink socket: ENOBUFS');
    expect(error.phase).toBe('run');
    expect(journal.slice(-3)).toEqual(['stop workers', 'stop kernel monitor', 'stop health']);
  });

  it('calls a component that ends on its own while the process runs a failure', async () => {
    const journal: string[] = [];
    const running = runInOrder([component('workers', journal, { done: () => Promise.resolve() })], new AbortController().signal);
    await expect(running).rejects.toThrow('workers ended on its own');
  });

  it('does not count the end of a running component during shutdown as a failure', async () => {
    const journal: string[] = [];
    const stop = new AbortController();
    const ended = deferred();
    const running = runInOrder([component('workers', journal, { done: () => ended.promise, stop: () => ended.resolve() })], stop.signal);
    await flushMicrotasks();
    stop.abort();
    await expect(running).resolves.toBeUndefined();
  });

  it('bounds shutdown: a component that does not stop in time is reported, and the ones started before it are still stopped', async () => {
    const clock = new ManualClock();
    const journal: string[] = [];
    const stop = new AbortController();
    const running = runInOrder(
      [component('ledger', journal), component('workers', journal, { stop: () => new Promise(() => undefined) })],
      stop.signal,
      { clock, shutdownGraceMs: 5_000 },
    );
    const outcome = running.catch((caught: unknown) => caught);
    await flushMicrotasks();
    stop.abort();
    await clock.advance(4_999);
    expect(journal).toEqual(['start ledger', 'started ledger', 'start workers', 'started workers', 'stop workers']);
    await clock.advance(1);
    const error = (await outcome) as RunnableError;
    expect(error.message).toBe('workers did not stop within the 5000 ms shutdown grace period');
    expect(error.phase).toBe('stop');
    expect(journal.at(-1)).toBe('stop ledger');
  });

  it('reports a stop that fails, after stopping the rest', async () => {
    const journal: string[] = [];
    const stop = new AbortController();
    stop.abort();
    // Aborted before the first start: nothing starts, nothing stops.
    await expect(runInOrder([component('health', journal)], stop.signal)).resolves.toBeUndefined();
    expect(journal).toEqual([]);

    const again = new AbortController();
    const running = runInOrder(
      [
        component('ledger', journal),
        component('monitor', journal, {
          stop: () => {
            throw new Error('close: EBADF');
          },
        }),
      ],
      again.signal,
    );
    await flushMicrotasks();
    again.abort();
    await expect(running).rejects.toThrow('monitor failed to stop: close: EBADF');
    expect(journal.slice(-2)).toEqual(['stop monitor', 'stop ledger']);
  });

  it('refuses two components with one name', async () => {
    await expect(runInOrder([component('a', []), component('a', [])], new AbortController().signal)).rejects.toThrow('distinct names');
  });
});

describe('standard components', () => {
  it('caches: started when every informer has listed once; stopping stops the informers', async () => {
    const lister = new FakeListerWatcher<{ metadata: { name: string; resourceVersion?: string } }>();
    const informer = new Informer(lister, { resource: 'nodes' });
    const caches = cachesRunnable([informer]);
    let started = false;
    const starting = Promise.resolve(caches.start(new AbortController().signal)).then(() => (started = true));
    await flushMicrotasks();
    expect(informer.hasSynced()).toBe(true);
    await starting;
    expect(started).toBe(true);
    await caches.stop();
    await expect(informer.waitForSync()).resolves.toBeUndefined();
    expect(() => informer.start()).toThrow('start() after stop()');
  });

  it('caches: a start waiting on an API server that does not answer gives up when the process stops', async () => {
    const lister = new FakeListerWatcher<{ metadata: { name: string; resourceVersion?: string } }>();
    lister.listHangs = true;
    const informer = new Informer(lister, { resource: 'secrets' });
    const caches = cachesRunnable([informer]);
    const stop = new AbortController();
    const starting = Promise.resolve(caches.start(stop.signal));
    await flushMicrotasks();
    stop.abort(new Error('SIGTERM received'));
    await expect(starting).rejects.toThrow('SIGTERM received');
    await caches.stop();
  });

  it('loop: runs from start to stop; its failure reaches done()', async () => {
    const seen: string[] = [];
    const loop = loopRunnable('workers', async (signal) => {
      seen.push('running');
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      seen.push('stopped');
    });
    await loop.start(new AbortController().signal);
    await flushMicrotasks();
    await loop.stop();
    expect(seen).toEqual(['running', 'stopped']);

    const failing = loopRunnable('kernel monitor', async () => {
      throw new Error('socket closed');
    });
    await failing.start(new AbortController().signal);
    await expect(failing.done!()).rejects.toThrow('socket closed');
  });
});
