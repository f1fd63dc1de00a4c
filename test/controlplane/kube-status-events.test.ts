// Status writes through the status subresource (server-side apply) and aggregated Events,
// against a real kube-apiserver; and the ipsec.xfrm.io helper on the project's own CRD.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';
import { injectedKubeConfig } from '../infra/controlplane/inject.js';
import { isConflict } from '../../src/kube/api-errors.js';
import { IpsecResources } from '../../src/kube/client.js';
import { setCondition, type Condition } from '../../src/kube/conditions.js';
import { EventRecorder, kubeEventSink } from '../../src/kube/events.js';
import { StatusWriter, type StatusTarget } from '../../src/kube/status.js';
import { ensure, eventually } from './kube-support.js';

const suffix = randomBytes(3).toString('hex');
const ns = `kube-status-${suffix}`;
const GROUP = 'kube-status.ipsec-operator.test';
const PLURAL = 'gadgets';

let admin: KubeConfig;
let core: CoreV1Api;
let objects: CustomObjectsApi;

const condition = {
  type: 'object',
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  properties: {
    type: { type: 'string' },
    status: { type: 'string', _enum: ['True', 'False', 'Unknown'] },
    observedGeneration: { type: 'integer', format: 'int64' },
    lastTransitionTime: { type: 'string', format: 'date-time' },
    reason: { type: 'string' },
    message: { type: 'string' },
  },
};

const gadgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${PLURAL}.${GROUP}` },
  spec: {
    group: GROUP,
    scope: 'Cluster',
    names: { plural: PLURAL, singular: 'gadget', kind: 'Gadget', listKind: 'GadgetList' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', properties: { size: { type: 'integer' } } },
              status: {
                type: 'object',
                properties: {
                  observedGeneration: { type: 'integer', format: 'int64' },
                  phase: { type: 'string' },
                  conditions: { type: 'array', items: condition, x_kubernetes_list_type: 'map', x_kubernetes_list_map_keys: ['type'] },
                },
              },
            },
          },
        },
      },
    ],
  },
};

interface Gadget {
  metadata: { name: string; generation?: number; resourceVersion?: string };
  spec?: { size?: number };
  status?: { observedGeneration?: number; phase?: string; conditions?: Condition[] };
}

async function ensureCrd(crd: V1CustomResourceDefinition, probe: () => Promise<unknown>): Promise<void> {
  const ext = admin.makeApiClient(ApiextensionsV1Api);
  try {
    await ext.createCustomResourceDefinition({ body: crd });
  } catch (error) {
    // Shared by the test files of this run: another file may have installed it first.
    if (!isConflict(error)) throw error;
  }
  await eventually(`${crd.metadata?.name} served`, probe, 60_000);
}

beforeAll(async () => {
  admin = injectedKubeConfig();
  core = admin.makeApiClient(CoreV1Api);
  objects = admin.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await ensureCrd(gadgetCrd, () => objects.listClusterCustomObject({ group: GROUP, version: 'v1', plural: PLURAL }));
});

afterAll(async () => {
  await core.deleteNamespace({ name: ns });
});

const getGadget = async (name: string): Promise<Gadget> => (await objects.getClusterCustomObject({ group: GROUP, version: 'v1', plural: PLURAL, name })) as Gadget;
const target = (name: string): StatusTarget => ({ group: GROUP, version: 'v1', plural: PLURAL, kind: 'Gadget', name });

describe('StatusWriter on a real status subresource', () => {
  it('writes only .status (generation unchanged), skips identical writes, and removes fields it stops sending', async () => {
    const name = `g-${suffix}`;
    await objects.createClusterCustomObject({ group: GROUP, version: 'v1', plural: PLURAL, body: { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name }, spec: { size: 1 } } });
    const writer = new StatusWriter(objects, 'ipsec-operator-test');
    const t0 = new Date('2025-05-01T00:00:00Z');
    const conditions = setCondition([], { type: 'Ready', status: 'True', reason: 'Applied', message: 'on all nodes', observedGeneration: 1 }, t0);

    const first = await writer.write(target(name), undefined, { observedGeneration: 1, phase: 'Ready', conditions });
    expect(first.written).toBe(true);
    const written = await getGadget(name);
    expect(written.metadata.generation).toBe(1);
    expect(written.spec).toEqual({ size: 1 });
    expect(written.status).toEqual({ observedGeneration: 1, phase: 'Ready', conditions });

    // Same status again (recomputed by a later reconcile, keys in another order): no write.
    const again = await writer.write(target(name), written.status, { conditions: setCondition(written.status?.conditions, { type: 'Ready', status: 'True', reason: 'Applied', message: 'on all nodes', observedGeneration: 1 }, new Date()), phase: 'Ready', observedGeneration: 1 });
    expect(again.written).toBe(false);
    expect((await getGadget(name)).metadata.resourceVersion).toBe(written.metadata.resourceVersion);

    // Server-side apply: the field manager owns what it sent; a field it drops is removed.
    await writer.write(target(name), written.status, { observedGeneration: 1, conditions });
    expect((await getGadget(name)).status).toEqual({ observedGeneration: 1, conditions });
  });

  it('lets two field managers own different conditions of one object (listType=map)', async () => {
    const name = `two-${suffix}`;
    await objects.createClusterCustomObject({ group: GROUP, version: 'v1', plural: PLURAL, body: { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name }, spec: { size: 2 } } });
    const controller = new StatusWriter(objects, 'ipsec-operator-controller');
    const agent = new StatusWriter(objects, 'ipsec-operator-agent');
    const now = new Date('2025-05-01T00:00:00Z');
    await controller.write(target(name), undefined, { conditions: setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: '' }, now) });
    await agent.write(target(name), undefined, { conditions: setCondition([], { type: 'KernelApplied', status: 'True', reason: 'Applied', message: '' }, now) });
    await controller.write(target(name), undefined, { conditions: setCondition([], { type: 'Ready', status: 'True', reason: 'Applied', message: '' }, now) });
    const status = (await getGadget(name)).status;
    expect(status?.conditions?.map((entry) => `${entry.type}=${entry.status}`).sort()).toEqual(['KernelApplied=True', 'Ready=True']);
  });

  it('refuses a write at a stale resourceVersion when asked to', async () => {
    const name = `rv-${suffix}`;
    const created = (await objects.createClusterCustomObject({ group: GROUP, version: 'v1', plural: PLURAL, body: { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name }, spec: { size: 3 } } })) as Gadget;
    await objects.patchClusterCustomObject({ group: GROUP, version: 'v1', plural: PLURAL, name, body: [{ op: 'replace', path: '/spec/size', value: 4 }] });
    const writer = new StatusWriter(objects, 'ipsec-operator-test');
    const error = await writer.write(target(name), undefined, { phase: 'stale' }, { resourceVersion: created.metadata.resourceVersion }).catch((caught: unknown) => caught);
    expect(isConflict(error)).toBe(true);
  });
});

describe('IpsecResources on the project CRD ipsecnodestates.ipsec.xfrm.io', () => {
  it('applies an object, sees it through its informer, writes its status, and sees the delete', async () => {
    const crd = loadYaml<V1CustomResourceDefinition>(readFileSync(join(REPO_ROOT, 'deploy/crds/ipsecnodestates.ipsec.xfrm.io.yaml'), 'utf8'));
    const resources = new IpsecResources(admin);
    await ensureCrd(crd, () => resources.listPage('ipsecnodestates', { limit: 1 }));
    const name = `node-${suffix}`;
    const informer = resources.informer<Gadget & { apiVersion?: string; kind?: string }>('ipsecnodestates', { backoff: { initialMs: 50, maxMs: 400 } });
    const seen: string[] = [];
    informer.addHandlers({
      add: (object) => object.metadata.name === name && seen.push('add'),
      update: (_old, object) => object.metadata.name === name && seen.push(`update ${object.status?.conditions?.[0]?.reason ?? '-'}`),
      delete: (object) => object.metadata.name === name && seen.push('delete'),
    });
    informer.start();
    try {
      await informer.waitForSync();
      await resources.apply('ipsecnodestates', { metadata: { name }, spec: { nodeName: name } }, 'ipsec-operator-agent');
      await eventually('add seen', () => ensure(seen.includes('add'), seen.join(', ')));
      expect(await resources.get('ipsecnodestates', name)).toMatchObject({ spec: { nodeName: name } });
      expect(await resources.get('ipsecnodestates', `missing-${suffix}`)).toBeUndefined();

      const conditions = setCondition([], { type: 'Ready', status: 'True', reason: 'InSync', message: 'kernel matches', observedGeneration: 1 }, new Date());
      const writer = resources.statusWriter('ipsec-operator-agent');
      expect((await writer.write('ipsecnodestates', name, informer.get(name)?.status, { conditions, agentVersion: 'test' })).written).toBe(true);
      await eventually('status seen', () => ensure(seen.includes('update InSync'), seen.join(', ')));
      expect((await writer.write('ipsecnodestates', name, informer.get(name)?.status, { conditions, agentVersion: 'test' })).written).toBe(false);

      await resources.delete('ipsecnodestates', name);
      await resources.delete('ipsecnodestates', name);
      await eventually('delete seen', () => ensure(seen.includes('delete'), seen.join(', ')));
    } finally {
      informer.stop();
    }
  });
});

describe('EventRecorder with core/v1 Events', () => {
  it('aggregates a repeated event into one Event with a count, and keeps different ones apart', async () => {
    const cm = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'subject' } } });
    const recorder = new EventRecorder(kubeEventSink(admin), { component: 'ipsec-operator-test', host: 'test-host' });
    const subject = { apiVersion: 'v1', kind: 'ConfigMap', name: 'subject', namespace: ns, uid: cm.metadata?.uid };
    for (let i = 0; i < 3; i++) recorder.warning(subject, 'KeyMissing', 'secret ipsec/keys has no key "k"');
    recorder.normal(subject, 'Applied', 'applied on 2 nodes');
    await recorder.flush();

    const events = (await core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=subject' })).items;
    const byReason = new Map(events.map((event) => [event.reason, event]));
    expect(events).toHaveLength(2);
    expect(byReason.get('KeyMissing')).toMatchObject({
      type: 'Warning',
      count: 3,
      message: 'secret ipsec/keys has no key "k"',
      involvedObject: { kind: 'ConfigMap', name: 'subject', namespace: ns, uid: cm.metadata?.uid },
      source: { component: 'ipsec-operator-test', host: 'test-host' },
    });
    expect(byReason.get('Applied')?.count).toBe(1);
    const aggregated = byReason.get('KeyMissing');
    expect(new Date(aggregated?.lastTimestamp ?? 0).getTime()).toBeGreaterThanOrEqual(new Date(aggregated?.firstTimestamp ?? 0).getTime());
  });

  it('puts events about cluster-scoped objects in the default namespace', async () => {
    const recorder = new EventRecorder(kubeEventSink(admin), { component: 'ipsec-operator-test' });
    const name = `sa-${suffix}`;
    recorder.normal({ apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'SecurityAssociation', name }, 'Validated', 'spec is valid');
    await recorder.flush();
    const events = (await core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${name}` })).items;
    expect(events.map((event) => event.reason)).toEqual(['Validated']);
    for (const event of events) await core.deleteNamespacedEvent({ namespace: 'default', name: event.metadata?.name ?? '' });
  });
});
