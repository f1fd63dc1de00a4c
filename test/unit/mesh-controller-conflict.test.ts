// The controller's mesh reconcile (src/controller/mesh-controller.ts) when removing the rotate
// annotation meets a newer object (409 Conflict on the resourceVersion precondition): expected
// under a lagging cache or a second annotation, so it is looked at again quietly (debug, a
// requeue), not thrown into the work queue's error log and backoff. Fakes stand in for the
// informers and the API; the real API server's side is test/controlplane/mesh-agents.test.ts.
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import type { CustomObjectsApi, V1Node } from '@kubernetes/client-node';
import { MeshMetrics, meshReconciler } from '../../src/controller/mesh-controller.js';
import { MESH_ROTATE_ANNOTATION } from '../../src/crd/mesh-schema.js';
import type { IpsecMeshObject } from '../../src/crd/mesh-contract.js';
import type { IpsecNodeState } from '../../src/crd/node-state.js';
import type { IpsecStatusWriter } from '../../src/kube/client.js';
import type { EventRecorder } from '../../src/kube/events.js';
import type { Informer, KubeObject } from '../../src/kube/informer.js';
import type { Logger } from '../../src/kube/logger.js';

function informer<T extends KubeObject>(items: T[], name: (item: T) => string): Informer<T> {
  return { get: (key: string) => items.find((item) => name(item) === key), list: () => items, keys: () => items.map(name) } as unknown as Informer<T>;
}

function setup(patchError: unknown) {
  const mesh: IpsecMeshObject = {
    metadata: { name: 'm', uid: 'uid-m', generation: 1, resourceVersion: '10', annotations: { [MESH_ROTATE_ANNOTATION]: 'now' } },
    spec: { nodeSelector: { matchLabels: { mesh: 'm' } } },
  } as IpsecMeshObject;
  const lines: { level: string; msg: string }[] = [];
  const logger: Logger = {
    debug: (msg) => lines.push({ level: 'debug', msg }),
    info: (msg) => lines.push({ level: 'info', msg }),
    warn: (msg) => lines.push({ level: 'warn', msg }),
    error: (msg) => lines.push({ level: 'error', msg }),
    child: () => logger,
  };
  const requeues: { key: string; ms: number }[] = [];
  const patches: unknown[] = [];
  const reconciler = meshReconciler({
    meshes: informer([mesh], (item) => item.metadata.name ?? ''),
    nodes: informer<V1Node>([], (item) => item.metadata?.name ?? ''),
    nodeStates: informer<IpsecNodeState>([], (item) => item.metadata?.name ?? ''),
    statusWriter: { write: async () => ({ written: true, object: { metadata: { resourceVersion: '11' } } }) } as unknown as IpsecStatusWriter,
    api: {
      patchClusterCustomObject: async (request: unknown) => {
        patches.push(request);
        if (patchError !== undefined) throw patchError;
        return {};
      },
    } as unknown as CustomObjectsApi,
    events: { normal: () => undefined, warning: () => undefined } as unknown as EventRecorder,
    metrics: new MeshMetrics(new Registry()),
    logger,
    requeueAfter: (key, ms) => requeues.push({ key, ms }),
    now: () => Date.parse('2026-12-02T12:00:00Z'),
  });
  return { reconciler, lines, requeues, patches };
}

describe('mesh controller: removing the rotate annotation', () => {
  it('removes it as of its own status write', async () => {
    const { reconciler, patches, lines } = setup(undefined);
    await reconciler.reconcile('m');
    expect(patches).toHaveLength(1);
    expect(JSON.stringify(patches[0])).toContain('"resourceVersion":"11"');
    expect(lines.filter((line) => line.level === 'error' || line.level === 'warn')).toEqual([]);
  });

  it('on 409 Conflict: no error, a debug line and a requeue of the mesh', async () => {
    const { reconciler, lines, requeues } = setup(Object.assign(new Error('Conflict'), { code: 409 }));
    await expect(reconciler.reconcile('m')).resolves.toBeUndefined();
    expect(lines.filter((line) => line.level !== 'debug' && line.level !== 'info')).toEqual([]);
    expect(lines.some((line) => line.level === 'debug' && /annotation/.test(line.msg))).toBe(true);
    expect(requeues).toContainEqual({ key: 'IpsecMesh/m', ms: 1000 });
  });

  it('any other API error still fails the reconcile (retried with backoff)', async () => {
    const { reconciler } = setup(Object.assign(new Error('Internal Server Error'), { code: 500 }));
    await expect(reconciler.reconcile('m')).rejects.toThrow('Internal Server Error');
  });
});
