/**
 * An in-memory collection that speaks ListerWatcher, for tests of anything built on an Informer
 * (shipped as a module like controller-runtime's fake client). It keeps resourceVersions like
 * the API server, lets a test break streams, fail or hang calls, compact history (410 Gone)
 * and send bookmarks, and records every list and watch call.
 */
import type { KubeObject, ListResult, ListerWatcher, WatchHandle } from './informer.js';
import { keyOf } from './keys.js';

export interface FakeWatch {
  readonly resourceVersion: string;
  aborted: boolean;
  ended: boolean;
  send(type: string, object: unknown): void;
  /** Ends the stream as the server or the network would: cleanly, or with an error. */
  end(error?: unknown): void;
}

export class FakeListerWatcher<T extends KubeObject> implements ListerWatcher<T> {
  private readonly objects = new Map<string, T>();
  private version = 100;
  /** Watches must start at or after this version, else they get 410 (compaction). */
  private oldestWatchable = 0;
  readonly watches: FakeWatch[] = [];
  listCalls = 0;
  /** Makes list() reject with this error until cleared. */
  listError: unknown;
  /** Makes watch() reject with this error until cleared. */
  watchError: unknown;
  /** When set, list() never settles (a hung request). */
  listHangs = false;

  get resourceVersion(): string {
    return String(this.version);
  }

  /** The stream the informer currently reads (the last one opened, if not ended). */
  get current(): FakeWatch | undefined {
    const last = this.watches[this.watches.length - 1];
    return last !== undefined && !last.ended && !last.aborted ? last : undefined;
  }

  openWatches(): FakeWatch[] {
    return this.watches.filter((watch) => !watch.ended && !watch.aborted);
  }

  list(): Promise<ListResult<T>> {
    this.listCalls++;
    if (this.listHangs) return new Promise(() => undefined);
    if (this.listError !== undefined) return Promise.reject(this.listError);
    return Promise.resolve({ items: [...this.objects.values()].map((object) => structuredClone(object)), resourceVersion: this.resourceVersion });
  }

  watch(resourceVersion: string, onEvent: (type: string, object: unknown) => void, onDone: (error?: unknown) => void): Promise<WatchHandle> {
    if (this.watchError !== undefined) return Promise.reject(this.watchError);
    const fake: FakeWatch = {
      resourceVersion,
      aborted: false,
      ended: false,
      send: (type, object) => {
        if (!fake.ended && !fake.aborted) onEvent(type, object);
      },
      end: (error) => {
        if (fake.ended) return;
        fake.ended = true;
        onDone(error);
      },
    };
    this.watches.push(fake);
    if (Number(resourceVersion) < this.oldestWatchable) {
      // What the API server does for a compacted resourceVersion: an ERROR event, then close.
      queueMicrotask(() => {
        fake.send('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 410, reason: 'Expired', message: 'too old resource version' });
        fake.end();
      });
    }
    return Promise.resolve({
      abort: () => {
        fake.aborted = true;
      },
    });
  }

  /** Creates or replaces an object, bumping its resourceVersion, and tells the open watch. */
  put(object: T): T {
    const key = keyOf({ name: object.metadata?.name ?? '', namespace: object.metadata?.namespace });
    const existed = this.objects.has(key);
    const stored = structuredClone(object);
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.version) };
    this.objects.set(key, stored);
    this.current?.send(existed ? 'MODIFIED' : 'ADDED', structuredClone(stored));
    return stored;
  }

  /** Deletes an object and tells the open watch. */
  delete(name: string, namespace?: string): void {
    const key = keyOf({ name, namespace });
    const existing = this.objects.get(key);
    if (existing === undefined) return;
    this.objects.delete(key);
    const final = structuredClone(existing);
    final.metadata = { ...final.metadata, resourceVersion: String(++this.version) };
    this.current?.send('DELETED', final);
  }

  /** Changes the collection without telling any watch (as if the events were lost in an outage). */
  putSilently(object: T): void {
    const stream = this.watches.length;
    const saved = this.watches.splice(0, stream);
    try {
      this.put(object);
    } finally {
      this.watches.unshift(...saved);
    }
  }

  deleteSilently(name: string, namespace?: string): void {
    const saved = this.watches.splice(0, this.watches.length);
    try {
      this.delete(name, namespace);
    } finally {
      this.watches.unshift(...saved);
    }
  }

  /** Forgets history: watches from a resourceVersion older than now get 410 Gone. */
  compact(): void {
    this.oldestWatchable = this.version + 1;
    this.version++;
  }

  bookmark(): void {
    this.current?.send('BOOKMARK', { metadata: { resourceVersion: this.resourceVersion } });
  }
}
