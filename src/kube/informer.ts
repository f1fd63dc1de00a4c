/**
 * A resilient list+watch cache of one resource type (client-go's reflector + store + shared
 * informer, reduced to what the operator needs). client-node's own ListWatch stops for good on
 * most errors and its watches can go silent (see /work/shared/notes/kubernetes-notes.md), so this
 * one owns the whole loop:
 *
 *   list -> replace the cache -> watch from the list's resourceVersion -> apply events
 *     any failure, end of stream, in-stream ERROR, or silence longer than the watchdog
 *       -> restart after an exponential backoff with jitter (one attempt at a time)
 *     410 Gone (resourceVersion compacted away) -> restart with a fresh list
 *
 * While the API server is unreachable the cache keeps its last content ("fail static"): the
 * node agent keeps enforcing the last known state and readers never see an empty world because
 * of an outage. When the server returns, the watch resumes from the last resourceVersion, or a
 * relist reconciles the cache (emitting add/update/delete for what changed meanwhile).
 * A periodic resync re-emits every cached object as an update (old === new) so level-based
 * reconcilers re-check everything even if an event was somehow missed.
 *
 * The transport is a ListerWatcher (./list-watch.ts binds it to client-node's Watch and a
 * typed list call); tests drive a fake one with a ManualClock.
 */
import { isGone, apiErrorSummary } from './api-errors.js';
import { ExponentialBackoff, type ExponentialBackoffOptions } from './backoff.js';
import { systemClock, type Clock, type TimerHandle } from './clock.js';
import { keyOf, type ObjectKeyParts } from './keys.js';
import { silentLogger, type Logger } from './logger.js';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export interface ListResult<T> {
  items: T[];
  /** The collection's resourceVersion: the watch starts from it. */
  resourceVersion: string;
}

export interface WatchHandle {
  /** Ends the stream; `onDone` may or may not be called afterwards. */
  abort(): void;
}

/** Watch event types of the API (watch.EventType). */
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface ListerWatcher<T> {
  list(): Promise<ListResult<T>>;
  /**
   * Opens a watch from `resourceVersion` (with bookmarks). `onEvent` gets each event; `onDone`
   * is called once when the stream ends, with the error if it failed; it may be called before
   * the returned promise settles (a refused connection). A rejected promise also means failure.
   */
  watch(resourceVersion: string, onEvent: (type: string, object: unknown) => void, onDone: (error?: unknown) => void): Promise<WatchHandle>;
}

/** Why the list+watch loop restarted; only logged (the metric counts restarts per resource). */
export type RestartReason = 'list-failed' | 'watch-failed' | 'watch-ended' | 'watch-error-event' | 'expired' | 'watchdog';

export interface InformerHooks {
  restarted?(reason: RestartReason): void;
}

/**
 * Synchronous and never awaited: handlers should only enqueue keys (and must not mutate the
 * objects, which are the cache's own). A handler that throws is logged and does not disturb the
 * cache or the other handlers.
 */
export interface InformerHandlers<T> {
  add?(object: T): void;
  /** Also called by the periodic resync, with `oldObject === newObject`. */
  update?(oldObject: T, newObject: T): void;
  /** With the last known state of the object. */
  delete?(object: T): void;
}

export interface InformerOptions {
  /** Resource name for logs and metrics, e.g. `securityassociations`. */
  resource: string;
  clock?: Clock;
  logger?: Logger;
  hooks?: InformerHooks;
  /** Reconnect backoff; default 800 ms doubling to 30 s, jitter up to +100%. */
  backoff?: ExponentialBackoffOptions;
  /**
   * Restart when nothing at all (no event, not even a bookmark) arrived for this long, or when
   * a list or watch call hangs that long. Default 150 s: the API server sends a bookmark about
   * every minute to watches that ask for them.
   */
  watchdogMs?: number;
  /** Re-emit every cached object this often; 0 disables. Default 10 minutes. */
  resyncPeriodMs?: number;
  /** A watch that lived this long before ending resets the backoff. Default 60 s. */
  healthyWatchMs?: number;
}

type State = 'new' | 'running' | 'stopped';

export class Informer<T extends KubeObject> {
  readonly resource: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly hooks: InformerHooks;
  private readonly backoff: ExponentialBackoff;
  private readonly watchdogMs: number;
  private readonly resyncPeriodMs: number;
  private readonly healthyWatchMs: number;

  private readonly cache = new Map<string, T>();
  private readonly handlers = new Set<InformerHandlers<T>>();
  private state: State = 'new';
  /** Incremented at every restart and stop: callbacks of an older attempt see a stale epoch and do nothing. */
  private epoch = 0;
  /** Undefined when the next attempt must list first. */
  private resourceVersion: string | undefined;
  private synced = false;
  private syncWaiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  private watch: WatchHandle | undefined;
  private connected = false;
  private watchOpenedAt = 0;
  private watchEvents = 0;
  private lastActivity = 0;
  private restartCount = 0;
  private retryTimer: TimerHandle | undefined;
  private watchdogTimer: TimerHandle | undefined;
  private resyncTimer: TimerHandle | undefined;

  constructor(
    private readonly listerWatcher: ListerWatcher<T>,
    options: InformerOptions,
  ) {
    this.resource = options.resource;
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ informer: options.resource });
    this.hooks = options.hooks ?? {};
    this.backoff = new ExponentialBackoff(options.backoff);
    this.watchdogMs = options.watchdogMs ?? 150_000;
    this.resyncPeriodMs = options.resyncPeriodMs ?? 10 * 60_000;
    this.healthyWatchMs = options.healthyWatchMs ?? 60_000;
    if (!(this.watchdogMs > 0)) throw new RangeError('watchdogMs must be positive');
  }

  /**
   * Registers handlers. Objects already in the cache are replayed to them as adds, so a handler
   * registered late misses nothing. Returns a function that unregisters them.
   */
  addHandlers(handlers: InformerHandlers<T>): () => void {
    this.handlers.add(handlers);
    for (const object of this.cache.values()) this.invoke(handlers, 'add', () => handlers.add?.(object));
    return () => this.handlers.delete(handlers);
  }

  /** Starts the list+watch loop. Idempotent while running; a stopped informer cannot restart. */
  start(): void {
    if (this.state === 'running') return;
    if (this.state === 'stopped') throw new Error(`informer ${this.resource}: start() after stop()`);
    this.state = 'running';
    this.scheduleResync();
    this.launch(this.epoch);
  }

  /** Stops watching; the cache keeps its content. Pending waitForSync calls reject. */
  stop(): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.epoch++;
    this.closeWatch();
    this.clock.clearTimeout(this.retryTimer);
    this.clock.clearTimeout(this.resyncTimer);
    this.retryTimer = undefined;
    this.resyncTimer = undefined;
    const error = new Error(`informer ${this.resource} stopped before its first sync`);
    for (const waiter of this.syncWaiters.splice(0)) waiter.reject(error);
  }

  /** True once the first list has filled the cache (it stays true through outages). */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves after the first successful list; rejects if stopped or `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    if (this.state === 'stopped') return Promise.reject(new Error(`informer ${this.resource} is stopped`));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      const onAbort = (): void => {
        this.syncWaiters = this.syncWaiters.filter((other) => other !== waiter);
        reject(signal?.reason instanceof Error ? signal.reason : new Error(`waiting for informer ${this.resource} was aborted`));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(waiter);
    });
  }

  /** True while a watch stream is open (false during outages and backoff). */
  isWatching(): boolean {
    return this.connected;
  }

  /** How many times the loop restarted since start. */
  get restarts(): number {
    return this.restartCount;
  }

  /** The resourceVersion the next watch would start from (undefined before the first list or after a 410). */
  lastResourceVersion(): string | undefined {
    return this.resourceVersion;
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  keys(): string[] {
    return [...this.cache.keys()];
  }

  get(name: string, namespace?: string): T | undefined {
    return this.cache.get(keyOf({ name, namespace }));
  }

  getByKey(key: string): T | undefined {
    return this.cache.get(key);
  }

  // ---- the loop -------------------------------------------------------------------------

  /** Runs one attempt; an unexpected exception in it is one more reason to restart, never an unhandled rejection. */
  private launch(epoch: number): void {
    this.attempt(epoch).catch((error: unknown) => {
      this.logger.error('list+watch attempt failed unexpectedly', { error });
      this.restart(epoch, 'watch-failed', error);
    });
  }

  private async attempt(epoch: number): Promise<void> {
    if (epoch !== this.epoch || this.state !== 'running') return;
    this.lastActivity = this.clock.now();
    // Only events of this attempt's watch count as proof of health (see restart()).
    this.watchEvents = 0;
    this.armWatchdog(epoch);
    if (this.resourceVersion === undefined) {
      let listed: ListResult<T>;
      try {
        listed = await this.listerWatcher.list();
      } catch (error) {
        return this.restart(epoch, 'list-failed', error);
      }
      if (epoch !== this.epoch) return;
      this.replace(listed.items);
      this.resourceVersion = listed.resourceVersion;
      this.lastActivity = this.clock.now();
      this.markSynced();
    }
    const from = this.resourceVersion;
    this.watchOpenedAt = this.clock.now();
    let handle: WatchHandle;
    try {
      handle = await this.listerWatcher.watch(
        from,
        (type, object) => this.onEvent(epoch, type, object),
        (error) => this.onDone(epoch, error),
      );
    } catch (error) {
      return this.restart(epoch, 'watch-failed', error);
    }
    if (epoch !== this.epoch) {
      // The stream ended (or the watchdog fired) while it was being opened.
      abortQuietly(handle);
      return;
    }
    this.watch = handle;
    this.connected = true;
    this.logger.debug('watching', { resourceVersion: from });
  }

  private onEvent(epoch: number, type: string, object: unknown): void {
    if (epoch !== this.epoch) return;
    this.lastActivity = this.clock.now();
    if (type === 'ERROR') {
      const status = object as { code?: unknown; reason?: unknown; message?: unknown } | undefined;
      const error = Object.assign(new Error(`watch ERROR event: ${String(status?.reason ?? '')} ${String(status?.message ?? '')}`.trim()), { code: status?.code });
      return this.restart(epoch, status?.code === 410 ? 'expired' : 'watch-error-event', error);
    }
    this.watchEvents++;
    const item = object as T;
    const version = item?.metadata?.resourceVersion;
    switch (type) {
      case 'BOOKMARK':
        break;
      case 'ADDED':
      case 'MODIFIED':
        this.upsert(item);
        break;
      case 'DELETED':
        this.remove(item);
        break;
      default:
        this.logger.warn('ignoring watch event of unknown type', { type });
        return;
    }
    if (typeof version === 'string' && version !== '') this.resourceVersion = version;
  }

  private onDone(epoch: number, error: unknown): void {
    if (epoch !== this.epoch) return;
    if (error === undefined || error === null) return this.restart(epoch, 'watch-ended', undefined);
    this.restart(epoch, isGone(error) ? 'expired' : 'watch-failed', error);
  }

  /** The only place a new attempt is scheduled; at most one per epoch, so never two at once. */
  private restart(epoch: number, reason: RestartReason, error: unknown): void {
    if (epoch !== this.epoch || this.state !== 'running') return;
    this.epoch++;
    const healthy = this.watchEvents > 0 || (this.connected && this.clock.now() - this.watchOpenedAt >= this.healthyWatchMs);
    this.closeWatch();
    if (reason === 'expired') this.resourceVersion = undefined;
    if (healthy) this.backoff.reset();
    const delay = this.backoff.next();
    this.restartCount++;
    try {
      this.hooks.restarted?.(reason);
    } catch {
      // Metrics are best effort.
    }
    const fields = { reason, delayMs: Math.round(delay), restarts: this.restartCount, error: error === undefined ? undefined : apiErrorSummary(error) };
    if (reason === 'watch-ended' || reason === 'expired') this.logger.info('restarting list+watch', fields);
    else this.logger.warn('restarting list+watch', fields);
    const next = this.epoch;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.launch(next);
    }, delay);
  }

  private closeWatch(): void {
    this.clock.clearTimeout(this.watchdogTimer);
    this.watchdogTimer = undefined;
    this.connected = false;
    const handle = this.watch;
    this.watch = undefined;
    if (handle !== undefined) abortQuietly(handle);
  }

  private armWatchdog(epoch: number): void {
    this.clock.clearTimeout(this.watchdogTimer);
    const due = this.lastActivity + this.watchdogMs - this.clock.now();
    this.watchdogTimer = this.clock.setTimeout(() => {
      this.watchdogTimer = undefined;
      if (epoch !== this.epoch) return;
      // One timer per attempt, re-armed lazily: cheaper than a new timer per event.
      if (this.clock.now() - this.lastActivity >= this.watchdogMs) {
        this.restart(epoch, 'watchdog', new Error(`nothing received for ${this.watchdogMs} ms`));
      } else {
        this.armWatchdog(epoch);
      }
    }, due);
  }

  private scheduleResync(): void {
    if (!(this.resyncPeriodMs > 0)) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      if (this.state !== 'running') return;
      if (this.synced) {
        this.logger.debug('resync', { objects: this.cache.size });
        for (const object of [...this.cache.values()]) this.emit('update', (handlers) => handlers.update?.(object, object));
      }
      this.scheduleResync();
    }, this.resyncPeriodMs);
  }

  // ---- the cache ------------------------------------------------------------------------

  /** Makes the cache equal to a fresh list, emitting only what changed. */
  private replace(items: readonly T[]): void {
    const fresh = new Map<string, T>();
    for (const item of items) {
      dropManagedFields(item);
      const key = this.keyOf(item);
      if (key !== undefined) fresh.set(key, item);
    }
    for (const [key, old] of [...this.cache]) {
      if (fresh.has(key)) continue;
      this.cache.delete(key);
      this.emit('delete', (handlers) => handlers.delete?.(old));
    }
    for (const [key, item] of fresh) {
      const old = this.cache.get(key);
      this.cache.set(key, item);
      if (old === undefined) this.emit('add', (handlers) => handlers.add?.(item));
      else if (!sameVersion(old, item)) this.emit('update', (handlers) => handlers.update?.(old, item));
    }
  }

  private upsert(item: T): void {
    dropManagedFields(item);
    const key = this.keyOf(item);
    if (key === undefined) return;
    const old = this.cache.get(key);
    this.cache.set(key, item);
    if (old === undefined) this.emit('add', (handlers) => handlers.add?.(item));
    else if (!sameVersion(old, item)) this.emit('update', (handlers) => handlers.update?.(old, item));
  }

  private remove(item: T): void {
    const key = this.keyOf(item);
    if (key === undefined) return;
    const old = this.cache.get(key);
    if (old === undefined) return;
    this.cache.delete(key);
    this.emit('delete', (handlers) => handlers.delete?.(item));
  }

  private keyOf(item: T): string | undefined {
    const name = item?.metadata?.name;
    if (typeof name !== 'string' || name === '') {
      this.logger.warn('ignoring an object without metadata.name');
      return undefined;
    }
    const parts: ObjectKeyParts = { name, namespace: item.metadata?.namespace };
    return keyOf(parts);
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    this.logger.info('cache synced', { objects: this.cache.size });
    for (const waiter of this.syncWaiters.splice(0)) waiter.resolve();
  }

  private emit(event: keyof InformerHandlers<T>, call: (handlers: InformerHandlers<T>) => void): void {
    for (const handlers of [...this.handlers]) this.invoke(handlers, event, () => call(handlers));
  }

  private invoke(_handlers: InformerHandlers<T>, event: string, call: () => void): void {
    try {
      call();
    } catch (error) {
      this.logger.error('informer event handler threw', { event, error });
    }
  }
}

function sameVersion(a: KubeObject, b: KubeObject): boolean {
  const version = a.metadata?.resourceVersion;
  return version !== undefined && version !== '' && version === b.metadata?.resourceVersion;
}

function abortQuietly(handle: WatchHandle): void {
  try {
    handle.abort();
  } catch {
    // Aborting a stream that already ended is not an error.
  }
}

/**
 * Removes `metadata.managedFields` from an object about to be cached (client-go's advice for
 * informers, via SetTransform). Nothing here reads it (status is written with server-side
 * apply, which needs no copy of it), and it is often the largest part of an object: one entry
 * per field manager, each a tree of every field it set. An agent caches every IpsecPolicy,
 * SecurityAssociation and Secret of its node, so the trees were held for thousands of objects.
 * The object is the informer's own, fresh from the list or watch, so it is changed in place.
 */
function dropManagedFields(item: KubeObject): void {
  const metadata = item?.metadata as { managedFields?: unknown } | undefined;
  if (metadata && metadata.managedFields !== undefined) delete metadata.managedFields;
}
