import { describe, expect, it } from 'vitest';
import { ManualClock, flushMicrotasks } from '../../src/kube/clock.js';
import { FakeListerWatcher } from '../../src/kube/fake-lister-watcher.js';
import { Informer, type InformerOptions, type RestartReason } from '../../src/kube/informer.js';

interface Thing {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: { value: number };
}

const thing = (name: string, value = 0, namespace?: string): Thing => ({ metadata: { name, namespace }, spec: { value } });

function setup(options: Partial<InformerOptions> = {}) {
  const clock = new ManualClock(0);
  const server = new FakeListerWatcher<Thing>();
  const restarts: RestartReason[] = [];
  const informer = new Informer(server, {
    resource: 'things',
    clock,
    // No jitter unless a test asks for it: delays are then exact.
    backoff: { initialMs: 100, maxMs: 1600, random: () => 0 },
    watchdogMs: 10_000,
    resyncPeriodMs: 0,
    hooks: { restarted: (reason) => restarts.push(reason) },
    ...options,
  });
  const events: string[] = [];
  informer.addHandlers({
    add: (object) => events.push(`add ${object.metadata?.name}`),
    update: (old, object) => events.push(old === object ? `resync ${object.metadata?.name}` : `update ${object.metadata?.name} ${old.spec?.value}->${object.spec?.value}`),
    delete: (object) => events.push(`delete ${object.metadata?.name}`),
  });
  return { clock, server, informer, events, restarts };
}

describe('Informer', () => {
  it('lists, then watches from the list resourceVersion, and keeps the cache in step with events', async () => {
    const { server, informer, events } = setup();
    server.put(thing('a', 1));
    server.put(thing('b', 1, 'ns'));
    informer.start();
    await informer.waitForSync();
    expect(informer.hasSynced()).toBe(true);
    expect(server.watches).toHaveLength(1);
    expect(server.watches[0]?.resourceVersion).toBe(server.resourceVersion);
    expect(events.sort()).toEqual(['add a', 'add b']);
    events.length = 0;

    server.put(thing('c', 1));
    server.put(thing('a', 2));
    server.delete('b', 'ns');
    expect(events).toEqual(['add c', 'update a 1->2', 'delete b']);
    expect(informer.get('a')?.spec?.value).toBe(2);
    expect(informer.get('b', 'ns')).toBeUndefined();
    expect(informer.list().map((object) => object.metadata?.name).sort()).toEqual(['a', 'c']);
    expect(informer.lastResourceVersion()).toBe(server.resourceVersion);
    informer.stop();
  });

  it('caches objects without their managedFields, listed or watched, and keeps the rest of their metadata', async () => {
    const { server, informer } = setup();
    const managed = (name: string, value: number) => ({ ...thing(name, value), metadata: { name, labels: { node: 'a' }, managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:spec': {} } }] } });
    server.put(managed('listed', 1));
    informer.start();
    await informer.waitForSync();
    server.put(managed('watched', 2));
    for (const name of ['listed', 'watched']) {
      const cached = informer.get(name) as (Thing & { metadata: Record<string, unknown> }) | undefined;
      expect(cached?.metadata, name).not.toHaveProperty('managedFields');
      expect(cached?.metadata['labels'], name).toEqual({ node: 'a' });
      expect(cached?.metadata['resourceVersion'], name).toBeTruthy();
    }
    informer.stop();
  });

  it('ignores a MODIFIED that carries the resourceVersion it already has', async () => {
    const { server, informer, events } = setup();
    const stored = server.put(thing('a', 1));
    informer.start();
    await informer.waitForSync();
    events.length = 0;
    server.current?.send('MODIFIED', structuredClone(stored));
    expect(events).toEqual([]);
    informer.stop();
  });

  it('restarts after the stream ends, with exponential backoff, and resumes from the last resourceVersion without relisting', async () => {
    const { clock, server, informer, restarts } = setup();
    informer.start();
    await informer.waitForSync();
    // Each new watch fails at once: delays 100, 200, 400...
    for (const expected of [100, 200, 400, 800, 1600, 1600]) {
      server.current?.end(Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }));
      expect(clock.pendingDelays()).toEqual([expected]);
      const watches = server.watches.length;
      await clock.advance(expected - 1);
      expect(server.watches).toHaveLength(watches);
      await clock.advance(1);
      expect(server.watches).toHaveLength(watches + 1);
    }
    expect(server.listCalls).toBe(1);
    expect(restarts).toEqual(Array(6).fill('watch-failed'));
    expect(informer.restarts).toBe(6);
    informer.stop();
  });

  it('adds jitter to the reconnect delay', async () => {
    const { clock, server, informer } = setup({ backoff: { initialMs: 100, maxMs: 1600, jitter: 1, random: () => 0.25 } });
    informer.start();
    await informer.waitForSync();
    server.current?.end(new Error('x'));
    expect(clock.pendingDelays()).toEqual([125]);
    informer.stop();
  });

  it('resets the backoff once a watch has delivered events', async () => {
    const { clock, server, informer } = setup();
    informer.start();
    await informer.waitForSync();
    server.current?.end(new Error('1'));
    await clock.advance(100);
    server.current?.end(new Error('2'));
    expect(clock.pendingDelays()).toEqual([200]);
    await clock.advance(200);
    server.bookmark();
    server.current?.end();
    expect(clock.pendingDelays()).toEqual([100]);
    informer.stop();
  });

  it('never runs two attempts at once, however many failure signals arrive together', async () => {
    const { clock, server, informer, restarts } = setup();
    informer.start();
    await informer.waitForSync();
    const stream = server.current;
    stream?.send('ERROR', { code: 500, reason: 'InternalError', message: 'etcd hiccup' });
    stream?.end(new Error('then the stream failed'));
    await clock.advance(10_000);
    expect(restarts).toEqual(['watch-error-event']);
    expect(server.openWatches()).toHaveLength(1);
    expect(server.watches).toHaveLength(2);
    informer.stop();
  });

  it('relists after 410 Gone and emits what changed while it was not watching', async () => {
    const { clock, server, informer, events, restarts } = setup();
    server.put(thing('keep', 1));
    server.put(thing('gone', 1));
    server.put(thing('changed', 1));
    informer.start();
    await informer.waitForSync();
    events.length = 0;
    // The connection drops; meanwhile objects change and history is compacted.
    server.current?.end(new Error('network'));
    server.deleteSilently('gone');
    server.putSilently(thing('changed', 2));
    server.putSilently(thing('new', 1));
    server.compact();
    await clock.advance(100);
    // The watch from the old resourceVersion is answered with 410; the informer relists.
    await clock.advance(200);
    expect(restarts).toEqual(['watch-failed', 'expired']);
    expect(server.listCalls).toBe(2);
    expect(events.sort()).toEqual(['add new', 'delete gone', 'update changed 1->2']);
    expect(informer.keys().sort()).toEqual(['changed', 'keep', 'new']);
    expect(server.current?.resourceVersion).toBe(server.resourceVersion);
    informer.stop();
  });

  it('treats a 410 answer to the watch request itself as expired', async () => {
    const { clock, server, informer, restarts } = setup();
    informer.start();
    await informer.waitForSync();
    server.current?.end(Object.assign(new Error('Gone'), { statusCode: 410 }));
    await clock.advance(100);
    expect(restarts).toEqual(['expired']);
    expect(server.listCalls).toBe(2);
    informer.stop();
  });

  it('restarts a silent watch after the watchdog period; bookmarks keep it alive', async () => {
    const { clock, server, informer, restarts } = setup({ watchdogMs: 10_000 });
    informer.start();
    await informer.waitForSync();
    await clock.advance(9_000);
    server.bookmark();
    await clock.advance(9_000);
    server.put(thing('a'));
    await clock.advance(9_999);
    expect(restarts).toEqual([]);
    await clock.advance(1);
    expect(restarts).toEqual(['watchdog']);
    expect(server.watches[0]?.aborted).toBe(true);
    await clock.advance(100);
    expect(server.openWatches()).toHaveLength(1);
    informer.stop();
  });

  it('the watchdog also catches a list call that never answers', async () => {
    const { clock, server, informer, restarts } = setup({ watchdogMs: 5_000 });
    server.listHangs = true;
    informer.start();
    await clock.advance(5_000);
    expect(restarts).toEqual(['watchdog']);
    server.listHangs = false;
    await clock.advance(100);
    expect(informer.hasSynced()).toBe(true);
    informer.stop();
  });

  it('keeps its content while the API server is unreachable, and catches up when it returns', async () => {
    const { clock, server, informer, events } = setup();
    server.put(thing('a', 1));
    server.put(thing('b', 1));
    informer.start();
    await informer.waitForSync();
    events.length = 0;

    // Outage: the stream breaks, every call fails; history is compacted meanwhile, so the
    // first successful call will be a relist.
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    server.listError = refused;
    server.watchError = refused;
    server.current?.end(refused);
    server.putSilently(thing('a', 2));
    server.deleteSilently('b');
    server.compact();
    await clock.advance(60_000);
    expect(informer.restarts).toBeGreaterThan(5);
    expect(informer.isWatching()).toBe(false);
    expect(informer.hasSynced()).toBe(true);
    expect(informer.keys().sort()).toEqual(['a', 'b']);
    expect(informer.get('a')?.spec?.value).toBe(1);
    expect(events).toEqual([]);
    // Backoff is capped: the next attempt is at most maxMs away.
    expect(clock.pendingDelays()[0]).toBeLessThanOrEqual(1600);

    server.listError = undefined;
    server.watchError = undefined;
    await clock.advance(1600);
    await clock.advance(1600);
    expect(informer.isWatching()).toBe(true);
    expect(informer.keys()).toEqual(['a']);
    expect(informer.get('a')?.spec?.value).toBe(2);
    expect(events.sort()).toEqual(['delete b', 'update a 1->2']);
    informer.stop();
  });

  it('resyncs periodically: every cached object comes again as an update with old === new', async () => {
    const { clock, server, informer, events } = setup({ resyncPeriodMs: 60_000, watchdogMs: 1_000_000 });
    server.put(thing('a'));
    server.put(thing('b'));
    informer.start();
    await informer.waitForSync();
    events.length = 0;
    await clock.advance(59_999);
    expect(events).toEqual([]);
    await clock.advance(1);
    expect(events.sort()).toEqual(['resync a', 'resync b']);
    await clock.advance(60_000);
    expect(events).toHaveLength(4);
    informer.stop();
  });

  it('replays the cache to handlers added late, and keeps going when a handler throws', async () => {
    const { server, informer, events } = setup();
    server.put(thing('a'));
    informer.start();
    await informer.waitForSync();
    const late: string[] = [];
    const remove = informer.addHandlers({ add: (object) => late.push(object.metadata?.name ?? '') });
    expect(late).toEqual(['a']);
    informer.addHandlers({
      add: () => {
        throw new Error('handler bug');
      },
    });
    server.put(thing('b'));
    expect(late).toEqual(['a', 'b']);
    expect(events).toContain('add b');
    expect(informer.get('b')).toBeDefined();
    remove();
    server.put(thing('c'));
    expect(late).toEqual(['a', 'b']);
    informer.stop();
  });

  it('stop aborts the watch, cancels pending restarts and rejects waiters; start is idempotent', async () => {
    const { clock, server, informer } = setup();
    server.listError = new Error('down');
    informer.start();
    informer.start();
    await flushMicrotasks();
    expect(server.listCalls).toBe(1);
    const waiting = informer.waitForSync();
    informer.stop();
    await expect(waiting).rejects.toThrow(/stopped/);
    await clock.advance(100_000);
    expect(server.listCalls).toBe(1);
    expect(clock.pending()).toBe(0);
    expect(() => informer.start()).toThrow(/after stop/);
  });

  it('waitForSync rejects when its signal aborts', async () => {
    const { server, informer } = setup();
    server.listHangs = true;
    informer.start();
    const abort = new AbortController();
    const waiting = informer.waitForSync(abort.signal);
    abort.abort(new Error('gave up'));
    await expect(waiting).rejects.toThrow('gave up');
    informer.stop();
  });
});
