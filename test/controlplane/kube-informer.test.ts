// The Informer (src/kube/informer.ts) against a real kube-apiserver, with a TCP proxy between
// it and the apiserver so each test can break the network under the informer alone: a reset
// connection, an outage (fail static, then catch-up), a silent connection (watchdog), and on a
// control plane of its own, a resourceVersion compacted away during the outage (410 -> relist).
import { randomBytes } from 'node:crypto';
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1ConfigMap, type V1Secret } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compactEtcd } from '../infra/controlplane/etcd.js';
import { startControlPlane, type ControlPlane } from '../infra/controlplane/controlplane.js';
import { injectedApiServer, injectedKubeConfig } from '../infra/controlplane/inject.js';
import { loadKubeConfig } from '../infra/controlplane/kubeconfig.js';
import { coreListerWatcher } from '../../src/kube/client.js';
import { Informer, type InformerOptions, type RestartReason } from '../../src/kube/informer.js';
import { kubeListerWatcher } from '../../src/kube/list-watch.js';
import { createOperatorMetrics } from '../../src/kube/metrics.js';
import { TcpProxy } from './kube-tcp-proxy.js';
import { ensure, eventually, kubeConfigVia } from './kube-support.js';

const ns = `kube-informer-${randomBytes(3).toString('hex')}`;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

let admin: KubeConfig;
let core: CoreV1Api;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  admin = injectedKubeConfig();
  core = admin.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: ns } } });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await core.deleteNamespace({ name: ns });
});

interface Watched {
  informer: Informer<V1ConfigMap>;
  proxy: TcpProxy;
  events: string[];
  reasons: RestartReason[];
  listCalls: () => number;
}

/** An informer on the ConfigMaps labelled case=<label> of `namespace`, reaching `apiServerPort` through a proxy. */
async function watchConfigMaps(label: string, options: Partial<InformerOptions> = {}, target: { kc: KubeConfig; port: number; namespace: string } | undefined = undefined): Promise<Watched> {
  const base = target?.kc ?? admin;
  const port = target?.port ?? Number(new URL(injectedApiServer()).port);
  const namespace = target?.namespace ?? ns;
  const proxy = await TcpProxy.start(port);
  const viaProxy = kubeConfigVia(base, proxy.url);
  const proxiedCore = viaProxy.makeApiClient(CoreV1Api);
  let lists = 0;
  const reasons: RestartReason[] = [];
  const userHooks = options.hooks;
  const informer = new Informer<V1ConfigMap>(
    kubeListerWatcher<V1ConfigMap>(viaProxy, {
      path: `/api/v1/namespaces/${namespace}/configmaps`,
      labelSelector: `case=${label}`,
      listPage: (request) => {
        lists++;
        return proxiedCore.listNamespacedConfigMap({ namespace, labelSelector: request.labelSelector, limit: request.limit, _continue: request.continueToken });
      },
    }),
    {
      resource: 'configmaps',
      backoff: { initialMs: 50, maxMs: 400 },
      watchdogMs: 60_000,
      resyncPeriodMs: 0,
      ...options,
      hooks: {
        restarted: (reason) => {
          reasons.push(reason);
          userHooks?.restarted?.(reason);
        },
      },
    },
  );
  const events: string[] = [];
  informer.addHandlers({
    add: (cm) => events.push(`add ${cm.metadata?.name} ${cm.data?.v ?? ''}`),
    update: (old, cm) => events.push(old === cm ? `resync ${cm.metadata?.name}` : `update ${cm.metadata?.name} ${cm.data?.v ?? ''}`),
    delete: (cm) => events.push(`delete ${cm.metadata?.name}`),
  });
  cleanups.push(() => informer.stop(), () => proxy.close());
  informer.start();
  await informer.waitForSync();
  return { informer, proxy, events, reasons, listCalls: () => lists };
}

function configMap(name: string, label: string, v: string): V1ConfigMap {
  return { metadata: { name, labels: { case: label } }, data: { v } };
}

const names = (informer: Informer<V1ConfigMap>): string[] => informer.list().map((cm) => `${cm.metadata?.name}=${cm.data?.v}`).sort();

describe('Informer against a real apiserver', () => {
  it('lists, then sees add, update and delete; objects of other labels stay out', async () => {
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('before', 'basic', '1') });
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('other', 'not-this-case', '1') });
    const { informer, events } = await watchConfigMaps('basic');
    expect(names(informer)).toEqual(['before=1']);

    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('later', 'basic', '1') });
    await core.patchNamespacedConfigMap({ namespace: ns, name: 'before', body: { data: { v: '2' } } }, mergePatch);
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'later' });
    await eventually('events delivered', () => ensure(events.length === 4, events.join(', ')));
    expect(events).toEqual(['add before 1', 'add later 1', 'update before 2', 'delete later']);
    expect(names(informer)).toEqual(['before=2']);
    expect(informer.get('before', ns)?.data?.v).toBe('2');
  });

  it('restarts after a dropped connection, resuming from its resourceVersion (no relist), and counts the restart', async () => {
    const registry = new Registry();
    const metrics = createOperatorMetrics(registry);
    const { informer, proxy, events, reasons, listCalls } = await watchConfigMaps('dropped', { hooks: metrics.informerHooks('configmaps') });
    await eventually('watch open', () => ensure(informer.isWatching(), 'not watching yet'));
    proxy.cut();
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('after-drop', 'dropped', '1') });
    await eventually('change seen after the drop', () => ensure(events.includes('add after-drop 1'), events.join(', ')));
    expect(reasons.length).toBeGreaterThanOrEqual(1);
    expect(reasons).not.toContain('expired');
    expect(listCalls()).toBe(1);
    expect(informer.restarts).toBe(reasons.length);
    expect(await registry.metrics()).toContain(`ipsec_operator_watch_restarts_total{resource="configmaps"} ${reasons.length}`);
  });

  it('keeps its content while the apiserver is unreachable (fail static) and catches up when it returns', async () => {
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('keep', 'outage', '1') });
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('doomed', 'outage', '1') });
    const { informer, proxy, events } = await watchConfigMaps('outage');
    events.length = 0;

    proxy.refuse();
    await core.patchNamespacedConfigMap({ namespace: ns, name: 'keep', body: { data: { v: '2' } } }, mergePatch);
    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'doomed' });
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('born', 'outage', '1') });
    // Several failed reconnection attempts: the informer is cut off, not just between two tries.
    const restartsAtCut = informer.restarts;
    await eventually('reconnects failing', () => ensure(informer.restarts >= restartsAtCut + 3, `restarts ${informer.restarts}`));
    expect(informer.isWatching()).toBe(false);
    expect(informer.hasSynced()).toBe(true);
    expect(names(informer)).toEqual(['doomed=1', 'keep=1']);
    expect(events).toEqual([]);

    proxy.restore();
    await eventually('caught up', () => ensure(names(informer).join() === 'born=1,keep=2', names(informer).join()));
    expect(events.sort()).toEqual(['add born 1', 'delete doomed', 'update keep 2']);
    await eventually('watching again', () => ensure(informer.isWatching(), 'not watching'));
  });

  it('restarts a watch that went silent (watchdog), then recovers', async () => {
    const { informer, proxy, events, reasons } = await watchConfigMaps('silent', { watchdogMs: 1_500 });
    await eventually('watch open', () => ensure(informer.isWatching(), 'not watching yet'));
    proxy.freeze();
    await eventually('watchdog fired', () => ensure(reasons.includes('watchdog'), reasons.join(', ')));
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('while-silent', 'silent', '1') });
    proxy.restore();
    await eventually('change seen after the silence', () => ensure(events.includes('add while-silent 1'), events.join(', ')));
    expect(informer.get('while-silent', ns)).toBeDefined();
  });

  it('re-emits every cached object on each resync period', async () => {
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('r1', 'resync', '1') });
    await core.createNamespacedConfigMap({ namespace: ns, body: configMap('r2', 'resync', '1') });
    const { events } = await watchConfigMaps('resync', { resyncPeriodMs: 200 });
    await eventually('two resyncs', () => ensure(events.filter((event) => event.startsWith('resync')).length >= 4, events.join(', ')));
    expect(new Set(events.filter((event) => event.startsWith('resync')))).toEqual(new Set(['resync r1', 'resync r2']));
  });
});

describe('coreListerWatcher', () => {
  it('watches the Secrets of one namespace, narrowed by a field selector', async () => {
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'ipsec-keys' }, stringData: { k: 'v1' } } });
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'unrelated' }, stringData: { k: 'x' } } });
    const informer = new Informer<V1Secret>(coreListerWatcher(admin, 'secrets', { namespace: ns, fieldSelector: 'metadata.name=ipsec-keys' }), {
      resource: 'secrets',
      backoff: { initialMs: 50, maxMs: 400 },
    });
    cleanups.push(() => informer.stop());
    informer.start();
    await informer.waitForSync();
    expect(informer.keys()).toEqual([`${ns}/ipsec-keys`]);
    await core.patchNamespacedSecret({ namespace: ns, name: 'ipsec-keys', body: { stringData: { k: 'v2' } } }, mergePatch);
    await eventually('rotation seen', () => ensure(Buffer.from(informer.get('ipsec-keys', ns)?.data?.k ?? '', 'base64').toString() === 'v2', 'old key'));
    expect(() => coreListerWatcher(admin, 'nodes', { namespace: ns })).toThrow(/cluster-scoped/);
  });
});

// Needs an apiserver restart (a fresh watch cache that no longer holds the informer's
// resourceVersion), so it runs on a control plane of its own and leaves the shared one alone.
describe('Informer across an apiserver restart with etcd compacted meanwhile', () => {
  let own: ControlPlane | undefined;
  afterAll(async () => {
    await own?.stop();
  });

  it('fails static through the outage, then relists on 410 Gone and emits exactly what changed', { timeout: 300_000 }, async () => {
    own = await startControlPlane();
    const ownKc = loadKubeConfig(own.kubeconfigPath);
    const ownCore = ownKc.makeApiClient(CoreV1Api);
    const namespace = 'default';
    await ownCore.createNamespacedConfigMap({ namespace, body: configMap('keep', 'gone', '1') });
    await ownCore.createNamespacedConfigMap({ namespace, body: configMap('doomed', 'gone', '1') });
    const { informer, proxy, events, reasons, listCalls } = await watchConfigMaps('gone', {}, { kc: ownKc, port: own.port, namespace });
    events.length = 0;

    proxy.refuse();
    await ownCore.patchNamespacedConfigMap({ namespace, name: 'keep', body: { data: { v: '2' } } }, mergePatch);
    await ownCore.deleteNamespacedConfigMap({ namespace, name: 'doomed' });
    await ownCore.createNamespacedConfigMap({ namespace, body: configMap('born', 'gone', '1') });
    await compactEtcd(own.etcdUrl);
    await own.halt();
    // The apiserver is really down now (and the proxy refuses anyway): the cache stays as it was.
    expect(names(informer)).toEqual(['doomed=1', 'keep=1']);
    await own.resume();
    expect(names(informer)).toEqual(['doomed=1', 'keep=1']);
    expect(informer.hasSynced()).toBe(true);

    proxy.restore();
    await eventually('caught up by relisting', () => ensure(names(informer).join() === 'born=1,keep=2', names(informer).join()), 60_000);
    expect(reasons).toContain('expired');
    expect(listCalls()).toBe(2);
    expect(events.sort()).toEqual(['add born 1', 'delete doomed', 'update keep 2']);
  });
});
