/**
 * Backoff arithmetic, without timers: callers ask for the next delay and schedule it on their
 * Clock. Two shapes, as in client-go:
 *  - `ExponentialBackoff`: one retrying loop (a watch reconnecting, a lease being retried), with
 *    jitter so that many clients cut off together do not come back together.
 *  - `ItemBackoff`: one failure count per work-queue key (ItemExponentialFailureRateLimiter).
 */
export interface ExponentialBackoffOptions {
  /** First delay; default 800 ms (client-go's reflector). */
  initialMs?: number;
  /** Cap before jitter; default 30 s. */
  maxMs?: number;
  /** Default 2. */
  factor?: number;
  /** Each delay is stretched by up to this fraction, at random: d * (1 + jitter * random()). Default 1. */
  jitter?: number;
  /** Returns [0, 1); default Math.random. */
  random?: () => number;
}

export class ExponentialBackoff {
  private failures = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(options: ExponentialBackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 800;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
    this.jitter = options.jitter ?? 1;
    this.random = options.random ?? Math.random;
    if (!(this.initialMs > 0) || !(this.maxMs >= this.initialMs) || !(this.factor >= 1) || !(this.jitter >= 0)) {
      throw new RangeError('backoff needs 0 < initialMs <= maxMs, factor >= 1, jitter >= 0');
    }
  }

  /** The delay before the next attempt; each call counts one more consecutive failure. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.failures);
    this.failures++;
    return base * (1 + this.jitter * this.random());
  }

  /** After a success: the next failure waits `initialMs` again. */
  reset(): void {
    this.failures = 0;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }
}

export interface ItemBackoffOptions {
  /** Default 5 ms (client-go). */
  baseMs?: number;
  /** Default 5 minutes (client-go's is 1000 s; a level-based resync covers longer gaps). */
  maxMs?: number;
}

/** Per-key exponential delays: base * 2^failures, capped. No jitter: keys are independent. */
export class ItemBackoff<K> {
  private readonly failures = new Map<K, number>();
  readonly baseMs: number;
  readonly maxMs: number;

  constructor(options: ItemBackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 5;
    this.maxMs = options.maxMs ?? 5 * 60_000;
    if (!(this.baseMs > 0) || !(this.maxMs >= this.baseMs)) throw new RangeError('item backoff needs 0 < baseMs <= maxMs');
  }

  /** The delay for this failure of `key`, counting it. */
  when(key: K): number {
    const count = this.failures.get(key) ?? 0;
    this.failures.set(key, count + 1);
    // 2 ** count overflows to Infinity long after the cap; min() keeps it finite.
    return Math.min(this.maxMs, this.baseMs * 2 ** count);
  }

  forget(key: K): void {
    this.failures.delete(key);
  }

  retries(key: K): number {
    return this.failures.get(key) ?? 0;
  }
}
