import { describe, expect, it } from 'vitest';
import { ManualClock, flushMicrotasks } from '../../src/kube/clock.js';
import { WorkQueue, type WorkQueueHooks } from '../../src/kube/workqueue.js';

function recordingHooks() {
  const seen = { adds: 0, retries: 0, depth: [] as number[], latency: [] as number[], work: [] as number[] };
  const hooks: WorkQueueHooks = {
    added: () => seen.adds++,
    retried: () => seen.retries++,
    depth: (depth) => seen.depth.push(depth),
    queueLatency: (seconds) => seen.latency.push(seconds),
    workDuration: (seconds) => seen.work.push(seconds),
  };
  return { seen, hooks };
}

describe('WorkQueue', () => {
  it('keeps a pending key once however often it is added, in FIFO order', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.add('b');
    queue.add('a');
    queue.add('b');
    expect(queue.size()).toBe(2);
    expect(await queue.get()).toBe('a');
    expect(await queue.get()).toBe('b');
    expect(queue.size()).toBe(0);
  });

  it('never hands out a key that a worker holds; re-added while held, it comes back after done', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    const held = await queue.get();
    expect(held).toBe('a');
    queue.add('a');
    queue.add('a');
    expect(queue.size()).toBe(0);
    let second: string | undefined = 'not yet';
    void queue.get().then((key) => (second = key));
    await flushMicrotasks();
    expect(second).toBe('not yet');
    queue.done('a');
    await flushMicrotasks();
    expect(second).toBe('a');
    queue.done('a');
    expect(queue.size()).toBe(0);
    expect(queue.inFlight()).toBe(0);
  });

  it('wakes a waiting get when a key arrives', async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.add('x');
    expect(await waiting).toBe('x');
  });

  it('grows the per-key backoff from 5 ms, doubling to the cap, and forget resets it', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock, backoff: { baseMs: 5, maxMs: 40 } });
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      queue.addRateLimited('k');
      delays.push(...clock.pendingDelays());
      await clock.advance(1000);
      expect(await queue.get()).toBe('k');
      queue.done('k');
    }
    expect(delays).toEqual([5, 10, 20, 40, 40, 40]);
    expect(queue.numRequeues('k')).toBe(6);
    queue.forget('k');
    expect(queue.numRequeues('k')).toBe(0);
    queue.addRateLimited('k');
    expect(clock.pendingDelays()).toEqual([5]);
  });

  it('counts backoff per key independently', () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    queue.addRateLimited('a');
    queue.addRateLimited('a');
    queue.addRateLimited('b');
    expect(queue.numRequeues('a')).toBe(2);
    expect(queue.numRequeues('b')).toBe(1);
  });

  it('does not hand out a delayed key before its time', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    queue.addAfter('k', 100);
    await clock.advance(99);
    expect(queue.size()).toBe(0);
    await clock.advance(1);
    expect(queue.size()).toBe(1);
  });

  it('keeps only the earliest deadline of a key added after different delays', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    queue.addAfter('k', 500);
    queue.addAfter('k', 100);
    queue.addAfter('k', 300);
    expect(clock.pendingDelays()).toEqual([100]);
    expect(queue.delayedCount()).toBe(1);
    await clock.advance(100);
    expect(queue.size()).toBe(1);
    await clock.advance(1000);
    expect(queue.size()).toBe(1);
  });

  it('treats a non-positive delay as an immediate add', () => {
    const queue = new WorkQueue({ clock: new ManualClock() });
    queue.addAfter('now', 0);
    queue.addAfter('also-now', -5);
    expect(queue.size()).toBe(2);
  });

  it('on shutdown releases waiting workers, drops pending and delayed keys, ignores new adds', async () => {
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock });
    const waiting = queue.get();
    queue.shutDown();
    expect(await waiting).toBeUndefined();

    const second = new WorkQueue({ clock });
    second.add('pending');
    second.addAfter('delayed', 50);
    second.shutDown();
    second.add('late');
    expect(second.size()).toBe(0);
    expect(clock.pending()).toBe(0);
    expect(await second.get()).toBeUndefined();
    expect(second.isShuttingDown()).toBe(true);
  });

  it('does not requeue a key re-added while held once the queue is shut down', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    await queue.get();
    queue.add('a');
    queue.shutDown();
    queue.done('a');
    expect(queue.size()).toBe(0);
  });

  it('reports adds, depth, retries and durations to its hooks', async () => {
    const clock = new ManualClock();
    const { seen, hooks } = recordingHooks();
    const queue = new WorkQueue({ clock, hooks });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    expect(seen.adds).toBe(2);
    expect(seen.depth.at(-1)).toBe(2);
    await clock.advance(250);
    expect(await queue.get()).toBe('a');
    expect(seen.latency).toEqual([0.25]);
    expect(seen.depth.at(-1)).toBe(1);
    await clock.advance(1500);
    queue.done('a');
    expect(seen.work).toEqual([1.5]);
    queue.addRateLimited('a');
    expect(seen.retries).toBe(1);
  });

  it('survives hooks that throw', async () => {
    const queue = new WorkQueue({
      hooks: {
        added: () => {
          throw new Error('metrics broke');
        },
        depth: () => {
          throw new Error('metrics broke');
        },
      },
    });
    queue.add('a');
    expect(await queue.get()).toBe('a');
  });
});
