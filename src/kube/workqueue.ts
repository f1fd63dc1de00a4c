/**
 * A keyed work queue with client-go's guarantees:
 *  - a key waiting in the queue is there once, however many times it is added (dedup);
 *  - a key is handed to one worker at a time: added again while being processed, it is queued
 *    again when that worker calls `done` (so the newest state is always reconciled);
 *  - `addRateLimited` waits per key: base * 2^failures, capped, until `forget`;
 *  - `addAfter` keeps, for each key, only the earliest pending deadline.
 * Unlike client-go, `shutDown` drops the keys still waiting: after a shutdown (leadership lost,
 * SIGTERM) the next process relists everything anyway, and finishing old work would be wrong.
 * Workers live in ./reconcile.ts (`runWorkers`), re-exported here.
 */
import { ItemBackoff, type ItemBackoffOptions } from './backoff.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';

export { runWorkers, TerminalError, decideOutcome, isTerminalError } from './reconcile.js';
export type { ReconcileContext, ReconcileHooks, ReconcileOutcome, ReconcileResult, Reconciler, RunWorkersOptions } from './reconcile.js';

/** What metrics need to know; every hook is optional and the queue works without any. */
export interface WorkQueueHooks {
  /** A key entered the queue (not counted when it was already pending). */
  added?(): void;
  /** The number of keys waiting to be handed out changed. */
  depth?(depth: number): void;
  /** A key was handed out after waiting this long since it was added. */
  queueLatency?(seconds: number): void;
  /** A worker finished a key it held this long. */
  workDuration?(seconds: number): void;
  /** `addRateLimited` was called. */
  retried?(): void;
}

export interface WorkQueueOptions {
  /** For metrics and logs. */
  name?: string;
  clock?: Clock;
  backoff?: ItemBackoffOptions;
  hooks?: WorkQueueHooks;
}

interface Delayed {
  readyAt: number;
  timer: TimerHandle;
}

export class WorkQueue {
  readonly name: string;
  private readonly clock: Clock;
  private readonly backoff: ItemBackoff<string>;
  private readonly hooks: WorkQueueHooks;

  /** FIFO of keys ready to be handed out; `head` avoids O(n) shifts. */
  private items: string[] = [];
  private head = 0;
  /** Keys that need processing (queued, or re-added while processing). */
  private readonly dirty = new Set<string>();
  private readonly processing = new Map<string, number>();
  private readonly addedAt = new Map<string, number>();
  private readonly delayed = new Map<string, Delayed>();
  private readonly getters: Array<(key: string | undefined) => void> = [];
  private shuttingDown = false;

  constructor(options: WorkQueueOptions = {}) {
    this.name = options.name ?? 'queue';
    this.clock = options.clock ?? systemClock;
    this.backoff = new ItemBackoff(options.backoff);
    this.hooks = options.hooks ?? {};
  }

  /** Marks `key` as needing processing. No-op after shutDown or when already pending. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.addedAt.set(key, this.clock.now());
    this.call(() => this.hooks.added?.());
    // Held by a worker: `done` will queue it again; queuing it now would let a second worker
    // take the same key concurrently.
    if (this.processing.has(key)) return;
    this.enqueue(key);
  }

  /** Adds `key` after `ms`; if the key is already waiting for an earlier time, keeps that one. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (!(ms > 0)) return this.add(key);
    const readyAt = this.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing !== undefined) {
      if (existing.readyAt <= readyAt) return;
      this.clock.clearTimeout(existing.timer);
    }
    const timer = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { readyAt, timer });
  }

  /** Adds `key` after its per-key backoff, and counts one more failure for it. */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.call(() => this.hooks.retried?.());
    this.addAfter(key, this.backoff.when(key));
  }

  /** Clears the failure count of `key` (after a success, or when giving up on it). */
  forget(key: string): void {
    this.backoff.forget(key);
  }

  /** Failures counted for `key` since its last `forget`. */
  numRequeues(key: string): number {
    return this.backoff.retries(key);
  }

  /**
   * The next key to process, waiting for one if needed; `undefined` once shut down. The caller
   * owns the key until it calls `done(key)`.
   */
  get(): Promise<string | undefined> {
    if (this.size() > 0) return Promise.resolve(this.take());
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Releases `key`; if it was added while held, it goes back into the queue now. */
  done(key: string): void {
    const startedAt = this.processing.get(key);
    if (startedAt === undefined) return;
    this.processing.delete(key);
    this.call(() => this.hooks.workDuration?.((this.clock.now() - startedAt) / 1000));
    if (!this.shuttingDown && this.dirty.has(key)) this.enqueue(key);
  }

  /** Keys waiting to be handed out (not counting delayed or in-progress keys). */
  size(): number {
    return this.items.length - this.head;
  }

  /** Keys currently held by workers. */
  inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting for an `addAfter`/`addRateLimited` delay. */
  delayedCount(): number {
    return this.delayed.size;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Stops handing out keys: waiting `get`s resolve to undefined, pending and delayed keys are dropped. */
  shutDown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) this.clock.clearTimeout(timer);
    this.delayed.clear();
    this.items = [];
    this.head = 0;
    this.dirty.clear();
    this.addedAt.clear();
    this.call(() => this.hooks.depth?.(0));
    for (const resolve of this.getters.splice(0)) resolve(undefined);
  }

  private enqueue(key: string): void {
    const getter = this.getters.shift();
    if (getter !== undefined) {
      // A worker is already waiting: hand the key over without it touching the FIFO.
      this.items.push(key);
      getter(this.take());
      return;
    }
    this.items.push(key);
    this.call(() => this.hooks.depth?.(this.size()));
  }

  private take(): string {
    const key = this.items[this.head];
    if (key === undefined) throw new Error('work queue: take() on an empty queue');
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    const now = this.clock.now();
    this.dirty.delete(key);
    this.processing.set(key, now);
    const addedAt = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (addedAt !== undefined) this.call(() => this.hooks.queueLatency?.((now - addedAt) / 1000));
    this.call(() => this.hooks.depth?.(this.size()));
    return key;
  }

  /** A metrics hook that throws must not corrupt the queue's bookkeeping. */
  private call(hook: () => void): void {
    try {
      hook();
    } catch {
      // Metrics are best effort.
    }
  }
}
