/**
 * The agent's view of the cluster's IpsecMeshes: informer caches of the meshes, of every Node
 * (labels for the nodeSelector, status addresses, pod CIDRs) and of every IpsecNodeState (the
 * peers' advertisements). Apart from ./node-caches.ts on purpose: a cluster without the
 * IpsecMesh CRD, or an agent without the rights to list these, must not hold the hand-written
 * resources back. So this runnable starts its informers without waiting for them, and
 * `snapshot()` answers only once all three have synced (until then the mesh's kernel entries
 * are kept as they are: fail static, like the rest of the agent).
 */
import type { KubeConfig, V1Node } from '@kubernetes/client-node';
import type { IpsecMeshObject } from '../crd/mesh-contract.js';
import type { IpsecNodeState } from '../crd/node-state.js';
import { IpsecResources, coreListerWatcher } from '../kube/client.js';
import { Informer, type InformerOptions, type KubeObject } from '../kube/informer.js';
import type { Logger } from '../kube/logger.js';
import type { OperatorMetrics } from '../kube/metrics.js';
import type { Runnable } from '../kube/runnables.js';
import { meshInputsChanged, meshNodeChanged, nodeStateMeshesChanged } from './mesh-changes.js';

export interface MeshSnapshot {
  readonly meshes: readonly IpsecMeshObject[];
  readonly nodes: readonly V1Node[];
  readonly nodeStates: readonly IpsecNodeState[];
}

export class MeshCaches {
  readonly runnable: Runnable;
  private readonly meshes: Informer<IpsecMeshObject>;
  private readonly nodes: Informer<V1Node>;
  private readonly nodeStates: Informer<IpsecNodeState>;
  private readonly informers: readonly Informer<KubeObject>[];

  constructor(options: { kubeConfig: KubeConfig; resources: IpsecResources; logger: Logger; metrics?: OperatorMetrics }) {
    const { kubeConfig, resources, logger, metrics } = options;
    const informerOptions = (resource: string): Omit<InformerOptions, 'resource'> => ({ logger, ...(metrics ? { hooks: metrics.informerHooks(resource) } : {}) });
    this.meshes = resources.informer<IpsecMeshObject>('ipsecmeshes', informerOptions('ipsecmeshes'));
    this.nodeStates = resources.informer<IpsecNodeState>('ipsecnodestates', informerOptions('ipsecnodestates'));
    this.nodes = new Informer<V1Node>(coreListerWatcher(kubeConfig, 'nodes'), { resource: 'mesh-nodes', ...informerOptions('mesh-nodes') });
    this.informers = [this.meshes, this.nodes, this.nodeStates];
    this.runnable = {
      name: 'mesh caches',
      start: () => {
        for (const informer of this.informers) informer.start();
      },
      stop: () => {
        for (const informer of this.informers) informer.stop();
      },
    };
  }

  synced(): boolean {
    return this.informers.every((informer) => informer.hasSynced());
  }

  /** `handler` runs when a mesh, a Node's mesh inputs or an IpsecNodeState's meshes change (./mesh-changes.ts), and when the caches first sync. */
  onChange(handler: () => void): void {
    const whenSynced = () => this.synced() && handler();
    this.meshes.addHandlers({ add: whenSynced, update: (old, mesh) => meshInputsChanged(old, mesh) && whenSynced(), delete: whenSynced });
    this.nodes.addHandlers({ add: whenSynced, update: (old, node) => meshNodeChanged(old, node) && whenSynced(), delete: whenSynced });
    this.nodeStates.addHandlers({ add: whenSynced, update: (old, state) => nodeStateMeshesChanged(old, state) && whenSynced(), delete: whenSynced });
  }

  snapshot(): MeshSnapshot | undefined {
    if (!this.synced()) return undefined;
    return { meshes: this.meshes.list(), nodes: this.nodes.list(), nodeStates: this.nodeStates.list() };
  }
}
