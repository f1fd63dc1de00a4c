/**
 * How long the key usage history (./usage.ts) remembers a key nobody uses any more, so that it
 * does not grow without bound (every rotation, every rekey adds keys).
 *
 * The history exists so that a key is never installed again with a counter that could repeat
 * (NeedsRekey, Expired, or resume past its mark). Forgetting a key means that, should the very
 * same key bytes be applied again later, they count as a new key and start from 0. So a key is
 * forgotten only when all of this holds, checked on every agent pass:
 * - no desired SA of this node uses it — every resource selecting the node was built (a
 *   resource whose Secret is missing or unreadable cannot say which key it holds, so while any
 *   is, nothing is forgotten);
 * - no SA in the kernel uses it;
 * - both have been true, without a break, for USAGE_RETENTION_SECONDS as this process saw it
 *   (the clock starts again when the agent restarts: a restart delays forgetting, never hastens
 *   it), and its last mark is at least that old too.
 * A key in a desired resource therefore keeps its history for as long as the resource exists,
 * whatever its state (live, NeedsRekey, Expired). Re-applying a deleted resource's key after
 * the retention is the one case this does not cover: rekey instead (new SPI, new key), as the
 * README says.
 */
import type { KeyUsage } from './usage.js';

/** 30 days: far beyond any rollout or outage in which a deleted resource comes back as it was. */
export const USAGE_RETENTION_SECONDS = 30 * 24 * 3600;

export interface RetentionInput {
  readonly entries: Iterable<KeyUsage>;
  /** Usage keys of every desired SA of the node and every SA in the kernel. */
  readonly inUse: ReadonlySet<string>;
  /** Whether every resource selecting the node was built (else `inUse` may lack some keys). */
  readonly complete: boolean;
  readonly now: number;
}

/**
 * Tracks since when each key has been unused (in memory) and says which to forget. Pure apart
 * from that memory: the caller commits the forgetting.
 */
export class UsageRetention {
  readonly #unusedSince = new Map<string, number>();

  constructor(private readonly retentionSeconds = USAGE_RETENTION_SECONDS) {}

  /** The keys to forget now. */
  review(input: RetentionInput): string[] {
    if (!input.complete) {
      // A resource we could not build may hold any key: every clock starts again.
      this.#unusedSince.clear();
      return [];
    }
    const forget: string[] = [];
    const present = new Set<string>();
    for (const entry of input.entries) {
      present.add(entry.key);
      if (input.inUse.has(entry.key)) {
        this.#unusedSince.delete(entry.key);
        continue;
      }
      const since = this.#unusedSince.get(entry.key);
      if (since === undefined) {
        this.#unusedSince.set(entry.key, input.now);
        continue;
      }
      if (input.now - since >= this.retentionSeconds && input.now - entry.seenAt >= this.retentionSeconds) forget.push(entry.key);
    }
    for (const key of this.#unusedSince.keys()) if (!present.has(key)) this.#unusedSince.delete(key);
    return forget;
  }

  /** Keys whose clock runs (for tests). */
  get tracking(): number {
    return this.#unusedSince.size;
  }
}
