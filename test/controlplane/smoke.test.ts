// Proves that the test control plane is a real Kubernetes apiserver: the behaviours the
// operator depends on (CRD schema and CEL validation, the status subresource, watches and
// 410 Gone, server-side apply, RBAC with ServiceAccount tokens) come from the apiserver
// itself, and kubectl and helm of the pinned versions work against it.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  Watch,
  setHeaderOptions,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlPlaneBinaries } from '../infra/controlplane/binaries.js';
import { ControlPlaneControl, serveControl, type ControlServer } from '../infra/controlplane/control-server.js';
import { startControlPlane, type ControlPlane } from '../infra/controlplane/controlplane.js';
import { compactEtcd } from '../infra/controlplane/etcd.js';
import { injectedApiServer, injectedControlPlane, injectedKubeConfig, injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { kubeConfigForServiceAccount, loadKubeConfig } from '../infra/controlplane/kubeconfig.js';
import { check, helm, kubectl } from '../infra/controlplane/tools.js';

const GROUP = 'smoke.ipsec-operator.test';
const VERSION = 'v1';
const PLURAL = 'widgets';

interface Widget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; generation?: number; managedFields?: ManagedField[] };
  spec?: { size?: number; mode?: string; min?: number; max?: number };
  status?: { phase?: string };
}
interface ManagedField {
  manager?: string;
  operation?: string;
  fieldsV1?: { 'f:spec'?: Record<string, unknown> };
}

const widgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${PLURAL}.${GROUP}` },
  spec: {
    group: GROUP,
    scope: 'Namespaced',
    names: { plural: PLURAL, singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [
      {
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: {
                  size: { type: 'integer', minimum: 1, maximum: 10 },
                  mode: { type: 'string', _enum: ['tunnel', 'transport'] },
                  min: { type: 'integer' },
                  max: { type: 'integer' },
                },
                x_kubernetes_validations: [
                  { rule: '!has(self.min) || !has(self.max) || self.min <= self.max', message: 'min must not exceed max' },
                ],
              },
              status: { type: 'object', properties: { phase: { type: 'string' } } },
            },
          },
        },
      },
    ],
  },
};

const suffix = randomBytes(3).toString('hex');
const ns = `smoke-${suffix}`;

let kc: KubeConfig;
let core: CoreV1Api;
let objects: CustomObjectsApi;

function widget(name: string, spec: Widget['spec']): Widget {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'Widget', metadata: { name, namespace: ns }, spec };
}

async function createWidget(w: Widget): Promise<Widget> {
  return (await objects.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, body: w })) as Widget;
}

async function getWidget(name: string): Promise<Widget> {
  return (await objects.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name })) as Widget;
}

/** The apiserver's error: HTTP code and the Status message it sent. */
async function apiError(p: Promise<unknown>): Promise<{ code: number; message: string; reason: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: number; body?: unknown };
    const body = (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as { message?: string; reason?: string } | undefined;
    return { code: e.code ?? -1, message: body?.message ?? String(err), reason: body?.reason ?? '' };
  }
  throw new Error('expected the apiserver to refuse the request, and it accepted it');
}

/** Retries `fn` until it stops throwing: for state that the apiserver propagates asynchronously. */
async function eventually<T>(what: string, fn: () => Promise<T>, attempts = 100): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`${what}: still failing after ${attempts} attempts: ${String(last)}`);
}

beforeAll(async () => {
  kc = injectedKubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  objects = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: ns } } });

  const ext = kc.makeApiClient(ApiextensionsV1Api);
  await ext.createCustomResourceDefinition({ body: widgetCrd });
  await eventually('CRD Established', async () => {
    const crd = await ext.readCustomResourceDefinition({ name: widgetCrd.metadata!.name! });
    if (!crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) throw new Error('not yet');
  });
  // Established is set before every apiserver handler serves the new resource.
  await eventually('widgets served', () =>
    objects.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL }),
  );
});

describe('CRD validation by the apiserver', () => {
  it('rejects a spec that violates the OpenAPI schema, with the schema message', async () => {
    const err = await apiError(createWidget(widget('too-big', { size: 20, mode: 'bogus' })));
    expect(err.code).toBe(422);
    expect(err.reason).toBe('Invalid');
    expect(err.message).toContain('spec.size: Invalid value: 20: spec.size in body should be less than or equal to 10');
    expect(err.message).toContain('spec.mode: Unsupported value: "bogus"');
  });

  it('rejects a spec that violates the x-kubernetes-validations CEL rule, with the rule message', async () => {
    const err = await apiError(createWidget(widget('min-max', { size: 1, min: 5, max: 2 })));
    expect(err.code).toBe(422);
    expect(err.message).toContain('min must not exceed max');
  });

  it('rejects a spec missing a required field', async () => {
    const err = await apiError(createWidget(widget('no-size', { mode: 'tunnel' })));
    expect(err.code).toBe(422);
    expect(err.message).toContain('spec.size: Required value');
  });

  it('accepts a valid spec', async () => {
    const created = await createWidget(widget('valid', { size: 3, mode: 'tunnel', min: 1, max: 2 }));
    expect(created.metadata.generation).toBe(1);
  });
});

describe('status subresource', () => {
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

  it('ignores spec changes sent to /status, and status changes sent to the main resource', async () => {
    await createWidget(widget('status', { size: 2 }));

    const afterStatus = (await objects.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'status', body: { spec: { size: 9 }, status: { phase: 'Ready' } } },
      mergePatch,
    )) as Widget;
    expect(afterStatus.status?.phase).toBe('Ready');
    expect(afterStatus.spec?.size).toBe(2);
    expect(afterStatus.metadata.generation).toBe(1); // status writes never bump generation

    const afterMain = (await objects.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'status', body: { spec: { size: 4 }, status: { phase: 'Hacked' } } },
      mergePatch,
    )) as Widget;
    expect(afterMain.spec?.size).toBe(4);
    expect(afterMain.status?.phase).toBe('Ready');
    expect(afterMain.metadata.generation).toBe(2);
  });
});

describe('watch', () => {
  it('delivers ADDED, MODIFIED and DELETED for a custom resource', async () => {
    const list = (await objects.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })) as {
      metadata: { resourceVersion: string };
    };
    const seen: string[] = [];
    let controller: AbortController | undefined;
    const deleted = new Promise<void>((resolve, reject) => {
      void new Watch(kc)
        .watch(
          `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`,
          { resourceVersion: list.metadata.resourceVersion },
          (phase, obj: Widget) => {
            if (obj.metadata?.name !== 'watched') return;
            seen.push(phase);
            if (phase === 'DELETED') resolve();
          },
          (err: unknown) => {
            if (err) reject(err instanceof Error ? err : new Error(String(err)));
          },
        )
        .then((c) => (controller = c), reject);
    });

    await createWidget(widget('watched', { size: 1 }));
    await objects.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'watched', body: { spec: { size: 5 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await objects.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'watched' });
    await deleted;
    controller?.abort();
    expect(seen).toEqual(['ADDED', 'MODIFIED', 'DELETED']);
  });
});

describe('server-side apply', () => {
  const apply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
  const applyAs = (manager: string, spec: Widget['spec'], force = false) =>
    objects.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: 'ssa', body: widget('ssa', spec), fieldManager: manager, force },
      apply,
    ) as Promise<Widget>;

  it('records managedFields per field manager and reports conflicts between managers', async () => {
    await applyAs('alice', { size: 3 });
    const both = await applyAs('bob', { size: 3, mode: 'transport' }); // co-owns size, owns mode

    const byManager = new Map((both.metadata.managedFields ?? []).map((f) => [f.manager, f]));
    expect(byManager.get('alice')?.operation).toBe('Apply');
    expect(Object.keys(byManager.get('alice')?.fieldsV1?.['f:spec'] ?? {})).toEqual(['f:size']);
    expect(byManager.get('bob')?.operation).toBe('Apply');
    expect(Object.keys(byManager.get('bob')?.fieldsV1?.['f:spec'] ?? {}).sort()).toEqual(['f:mode', 'f:size']);

    const conflict = await apiError(applyAs('carol', { size: 7 }));
    expect(conflict.code).toBe(409);
    expect(conflict.message).toContain('conflict');

    const forced = await applyAs('carol', { size: 7 }, true);
    expect(forced.spec).toEqual({ size: 7, mode: 'transport' });
    const managers = (forced.metadata.managedFields ?? []).map((f) => f.manager).sort();
    expect(managers).toEqual(['bob', 'carol']); // alice lost her only field; bob keeps mode
  });
});

describe('RBAC with ServiceAccount tokens', () => {
  it('denies a ServiceAccount without a role (403) and allows it once a Role is bound', async () => {
    const sa = { namespace: ns, name: 'reader' };
    const saKc = await kubeConfigForServiceAccount(kc, sa);
    const saCore = saKc.makeApiClient(CoreV1Api);

    const denied = await apiError(saCore.listNamespacedConfigMap({ namespace: ns }));
    expect(denied.code).toBe(403);
    expect(denied.reason).toBe('Forbidden');
    expect(denied.message).toContain(`User "system:serviceaccount:${ns}:reader" cannot list resource "configmaps"`);

    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: { metadata: { name: 'configmap-reader' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'reader' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: ns }],
      },
    });
    // The RBAC authorizer reads Roles through an informer: the grant arrives shortly after.
    const allowed = await eventually('RoleBinding honoured', () => saCore.listNamespacedConfigMap({ namespace: ns }));
    expect(Array.isArray(allowed.items)).toBe(true);

    // The Role grants reads only.
    const write = await apiError(saCore.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'nope' } } }));
    expect(write.code).toBe(403);
  });
});

describe('kubectl and helm of the pinned versions', () => {
  const versions = controlPlaneBinaries().versions;

  it('kubectl version reports the pinned release on both sides', async () => {
    const out = await check(kubectl(['version', '-o', 'json'], { kubeconfig: injectedKubeconfigPath() }), 'kubectl version');
    const v = JSON.parse(out) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } };
    expect(v.clientVersion.gitVersion).toBe(versions.kubernetes);
    expect(v.serverVersion.gitVersion).toBe(versions.kubernetes);
  });

  it('kubectl apply creates a custom resource that the apiserver validated', async () => {
    const manifest = JSON.stringify(widget('from-kubectl', { size: 6, mode: 'transport' }));
    await check(kubectl(['apply', '-f', '-'], { kubeconfig: injectedKubeconfigPath(), input: manifest }), 'kubectl apply');
    const w = await getWidget('from-kubectl');
    expect(w.spec).toEqual({ size: 6, mode: 'transport' });

    const invalid = await kubectl(['apply', '-f', '-'], {
      kubeconfig: injectedKubeconfigPath(),
      input: JSON.stringify(widget('kubectl-invalid', { size: 0 })),
    });
    expect(invalid.code).not.toBe(0);
    expect(invalid.stderr).toContain('spec.size in body should be greater than or equal to 1');
  });

  it('helm version reports the pinned helm, and helm install of a local chart creates its ConfigMap', async () => {
    const home = mkdtempSync(join(tmpdir(), 'ipsec-smoke-helm-'));
    try {
      // helm keeps config, cache and data under these: never in the user's $HOME.
      const env = { HELM_CONFIG_HOME: join(home, 'config'), HELM_CACHE_HOME: join(home, 'cache'), HELM_DATA_HOME: join(home, 'data') };
      const opts = { kubeconfig: injectedKubeconfigPath(), env };
      const version = await check(helm(['version', '--template', '{{.Version}}'], opts), 'helm version');
      expect(version).toBe(versions.helm);

      const chart = join(home, 'chart');
      mkdirSync(join(chart, 'templates'), { recursive: true });
      writeFileSync(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: smoke\nversion: 0.1.0\n');
      writeFileSync(join(chart, 'values.yaml'), 'greeting: hello\n');
      writeFileSync(
        join(chart, 'templates', 'configmap.yaml'),
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n',
      );
      await check(helm(['install', 'smoke', chart, '--namespace', ns, '--set', 'greeting=hi'], opts), 'helm install');

      const cm = await core.readNamespacedConfigMap({ namespace: ns, name: 'smoke-cm' });
      expect(cm.data).toEqual({ greeting: 'hi' });
      expect(cm.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
      const status = await check(helm(['status', 'smoke', '--namespace', ns, '-o', 'json'], opts), 'helm status');
      expect((JSON.parse(status) as { info: { status: string } }).info.status).toBe('deployed');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

// This needs an apiserver restart, so it runs on a control plane of its own and leaves the
// shared one alone. It is the path of the fail-static e2e test too: halt, resume on the same
// data dir and port, objects and credentials survive.
describe('expired resourceVersion (410 Gone) after etcd compaction and an apiserver restart', () => {
  let own: ControlPlane | undefined;
  let control: ControlServer | undefined;

  afterAll(async () => {
    await control?.close();
    await own?.stop();
  });

  it("the shared control plane's halt/resume endpoint answers for the injected apiserver", async () => {
    // Only its status here: halting the shared apiserver would disturb the other files.
    const status = await injectedControlPlane().status();
    expect(status).toMatchObject({ server: injectedApiServer(), running: true });
  });

  it('keeps data across a restart, and answers 410 to a watch and an exact list at a compacted resourceVersion', { timeout: 300_000 }, async () => {
    own = await startControlPlane();
    const ownKc = loadKubeConfig(own.kubeconfigPath);
    const ownCore = ownKc.makeApiClient(CoreV1Api);
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

    const created = await ownCore.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'old' }, data: { v: '1' } } });
    const oldRv = created.metadata!.resourceVersion!;
    await ownCore.patchNamespacedConfigMap({ namespace: 'default', name: 'old', body: { data: { v: '2' } } }, mergePatch);
    const compactedAt = await compactEtcd(own.etcdUrl);
    expect(compactedAt).toBeGreaterThan(Number(oldRv));

    // Halt and resume through the endpoint a test worker uses for the shared control plane.
    const port = own.port;
    const etcdUrl = own.etcdUrl;
    control = await serveControl(own);
    const client = new ControlPlaneControl(control.url);
    expect((await client.halt()).running).toBe(false);
    await expect(ownCore.readNamespacedConfigMap({ namespace: 'default', name: 'old' })).rejects.toThrow();
    expect(await client.resume()).toEqual({ server: `https://127.0.0.1:${port}`, etcdUrl, running: true });

    // The same admin credentials work after the restart (CA kept), and the data survived.
    const after = await ownCore.readNamespacedConfigMap({ namespace: 'default', name: 'old' });
    expect(after.data).toEqual({ v: '2' });

    // A watch from before the compaction: the restarted watch cache starts at the current
    // revision, so the apiserver ends the watch with an in-stream ERROR carrying 410 Expired,
    // the signal on which an informer must re-list.
    const event = await new Promise<{ phase: string; obj: { code?: number; reason?: string } }>((resolve, reject) => {
      void new Watch(ownKc)
        .watch(
          '/api/v1/namespaces/default/configmaps',
          { resourceVersion: oldRv },
          (phase, obj: { code?: number; reason?: string }) => resolve({ phase, obj }),
          (err: unknown) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : undefined),
        )
        .catch(reject);
    });
    expect(event.phase).toBe('ERROR');
    expect(event.obj.code).toBe(410);
    expect(event.obj.reason).toBe('Expired');

    // A list at exactly that revision goes to etcd, which compacted it: HTTP 410.
    const gone = await apiError(ownCore.listNamespacedConfigMap({ namespace: 'default', resourceVersion: oldRv, resourceVersionMatch: 'Exact' }));
    expect(gone.code).toBe(410);
    expect(gone.reason).toBe('Expired');
  });
});
