import type { CoreV1Event } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kube/clock.js';
import { EventRecorder, type EventSink } from '../../src/kube/events.js';
import { createLogger, type LogFields } from '../../src/kube/logger.js';
import { StatusWriter, statusEqual, type StatusApi } from '../../src/kube/status.js';

class MemorySink implements EventSink {
  readonly events = new Map<string, CoreV1Event>();
  calls: string[] = [];
  failCreates: unknown;
  async create(namespace: string, event: CoreV1Event): Promise<unknown> {
    this.calls.push(`create ${namespace}/${event.metadata?.name}`);
    if (this.failCreates !== undefined) throw this.failCreates;
    this.events.set(`${namespace}/${event.metadata?.name}`, structuredClone(event));
    return event;
  }
  async update(namespace: string, name: string, change: { count: number; lastTimestamp: string; message: string }): Promise<unknown> {
    this.calls.push(`update ${namespace}/${name}`);
    const event = this.events.get(`${namespace}/${name}`);
    if (event === undefined) throw Object.assign(new Error('not found'), { code: 404 });
    event.count = change.count;
    event.lastTimestamp = new Date(change.lastTimestamp);
    return event;
  }
}

const sa = { apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'SecurityAssociation', name: 'sa-1', uid: 'u1' };

describe('EventRecorder', () => {
  it('creates one Event and aggregates repeats into count and lastTimestamp', async () => {
    const clock = new ManualClock(Date.UTC(2025, 0, 1));
    const sink = new MemorySink();
    const recorder = new EventRecorder(sink, { component: 'ipsec-operator-controller', host: 'pod-a', clock });
    recorder.warning(sa, 'KeyMissing', 'secret ipsec/keys has no key "k"');
    await clock.advance(5_000);
    recorder.warning(sa, 'KeyMissing', 'secret ipsec/keys has no key "k"');
    await clock.advance(5_000);
    recorder.warning(sa, 'KeyMissing', 'secret ipsec/keys has no key "k"');
    await recorder.flush();
    expect(sink.events.size).toBe(1);
    const [event] = [...sink.events.values()];
    expect(event).toMatchObject({
      metadata: { namespace: 'default' },
      involvedObject: { kind: 'SecurityAssociation', name: 'sa-1', uid: 'u1', apiVersion: 'ipsec.xfrm.io/v1alpha1' },
      type: 'Warning',
      reason: 'KeyMissing',
      count: 3,
      source: { component: 'ipsec-operator-controller', host: 'pod-a' },
    });
    expect(event?.firstTimestamp?.toISOString()).toBe('2025-01-01T00:00:00.000Z');
    expect(new Date(event?.lastTimestamp ?? 0).toISOString()).toBe('2025-01-01T00:00:10.000Z');
    expect(event?.metadata?.name?.startsWith('sa-1.')).toBe(true);
  });

  it('keeps distinct events apart: other reason, message, type or object', async () => {
    const sink = new MemorySink();
    const recorder = new EventRecorder(sink, { component: 'c', clock: new ManualClock() });
    recorder.normal(sa, 'Applied', 'on 3 nodes');
    recorder.normal(sa, 'Applied', 'on 4 nodes');
    recorder.warning(sa, 'Applied', 'on 4 nodes');
    recorder.normal({ ...sa, name: 'sa-2' }, 'Applied', 'on 4 nodes');
    recorder.normal({ kind: 'ConfigMap', name: 'x', namespace: 'ns' }, 'Applied', 'on 4 nodes');
    await recorder.flush();
    expect(sink.events.size).toBe(5);
    expect([...sink.events.keys()].filter((key) => key.startsWith('ns/'))).toHaveLength(1);
    expect(new Set([...sink.events.keys()]).size).toBe(5);
  });

  it('starts a new Event when the aggregated one has expired (404 on update)', async () => {
    const sink = new MemorySink();
    const recorder = new EventRecorder(sink, { component: 'c', clock: new ManualClock() });
    recorder.normal(sa, 'Applied', 'ok');
    await recorder.flush();
    sink.events.clear();
    recorder.normal(sa, 'Applied', 'ok');
    await recorder.flush();
    expect(sink.calls.map((call) => call.split(' ')[0])).toEqual(['create', 'update', 'create']);
    expect([...sink.events.values()][0]?.count).toBe(1);
  });

  it('never throws into the caller; failures are logged', async () => {
    const lines: LogFields[] = [];
    const sink = new MemorySink();
    sink.failCreates = Object.assign(new Error('forbidden'), { code: 403, body: '{"message":"events is forbidden"}' });
    const recorder = new EventRecorder(sink, { component: 'c', logger: createLogger({ write: (line) => lines.push(JSON.parse(line) as LogFields) }) });
    expect(() => recorder.warning(sa, 'Failed', 'x')).not.toThrow();
    await recorder.flush();
    expect(lines[0]).toMatchObject({ level: 'warn', msg: 'writing an event failed', error: 'HTTP 403: events is forbidden' });
    sink.failCreates = undefined;
    recorder.warning(sa, 'Failed', 'x');
    await recorder.flush();
    expect(sink.events.size).toBe(1);
  });

  it('drops events beyond its backlog instead of growing without bound', async () => {
    const sink = new MemorySink();
    const recorder = new EventRecorder(sink, { component: 'c', maxPending: 2 });
    for (let i = 0; i < 5; i++) recorder.normal(sa, 'Tick', `n${i}`);
    await recorder.flush();
    expect(sink.events.size).toBe(2);
  });

  it('truncates long messages', async () => {
    const sink = new MemorySink();
    const recorder = new EventRecorder(sink, { component: 'c' });
    recorder.normal(sa, 'Long', 'y'.repeat(5000));
    await recorder.flush();
    expect([...sink.events.values()][0]?.message).toHaveLength(1024);
  });
});

describe('StatusWriter', () => {
  function fakeApi() {
    const calls: Array<{ scope: string; param: Record<string, unknown>; contentType: string | undefined }> = [];
    const capture = (scope: string) => async (param: unknown, options?: unknown): Promise<unknown> => {
      // The options carry a middleware that sets the Content-Type: run it on a fake request.
      let contentType: string | undefined;
      const middleware = (options as { middleware?: Array<{ pre: (request: unknown) => unknown }> } | undefined)?.middleware ?? [];
      for (const step of middleware) step.pre({ setHeaderParam: (key: string, value: string) => key === 'Content-Type' && (contentType = value) });
      calls.push({ scope, param: param as Record<string, unknown>, contentType });
      return { status: (param as { body: { status: unknown } }).body.status };
    };
    const api = { patchClusterCustomObjectStatus: capture('cluster'), patchNamespacedCustomObjectStatus: capture('namespaced') } as unknown as StatusApi;
    return { api, calls };
  }

  const target = { group: 'ipsec.xfrm.io', version: 'v1alpha1', plural: 'securityassociations', kind: 'SecurityAssociation', name: 'sa-1' };

  it('applies the status server-side with its field manager, force and the apply content type', async () => {
    const { api, calls } = fakeApi();
    const writer = new StatusWriter(api, 'ipsec-operator-controller');
    const result = await writer.write(target, undefined, { observedGeneration: 2 });
    expect(result.written).toBe(true);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      scope: 'cluster',
      contentType: 'application/apply-patch+yaml',
      param: {
        group: 'ipsec.xfrm.io',
        name: 'sa-1',
        fieldManager: 'ipsec-operator-controller',
        force: true,
        body: { apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'SecurityAssociation', metadata: { name: 'sa-1' }, status: { observedGeneration: 2 } },
      },
    });
  });

  it('skips the write when the status is unchanged (key order and undefined fields do not matter)', async () => {
    const { api, calls } = fakeApi();
    const writer = new StatusWriter(api, 'm');
    const current = { observedGeneration: 2, conditions: [{ type: 'Ready', status: 'True' }] };
    const result = await writer.write(target, current, { conditions: [{ status: 'True', type: 'Ready' }], observedGeneration: 2, nodes: undefined });
    expect(result.written).toBe(false);
    expect(calls).toHaveLength(0);
  });

  it('uses the namespaced endpoint and a resourceVersion precondition when asked', async () => {
    const { api, calls } = fakeApi();
    await new StatusWriter(api, 'm').write({ ...target, namespace: 'ns' }, {}, { phase: 'x' }, { resourceVersion: '42' });
    expect(calls[0]).toMatchObject({ scope: 'namespaced', param: { namespace: 'ns', body: { metadata: { name: 'sa-1', namespace: 'ns', resourceVersion: '42' } } } });
  });

  it('statusEqual compares JSON meaning', () => {
    expect(statusEqual({ a: 1, b: [1, 2] }, { b: [1, 2], a: 1 })).toBe(true);
    expect(statusEqual({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
    expect(statusEqual({ a: 1 }, { a: 1, b: undefined })).toBe(true);
    expect(statusEqual(undefined, {})).toBe(false);
    expect(statusEqual({ nested: { x: 1, y: 2 } }, { nested: { y: 2, x: 1 } })).toBe(true);
  });

  it('needs a field manager', () => {
    expect(() => new StatusWriter({} as StatusApi, '')).toThrow();
  });
});
