/**
 * The agent's view of the cluster: informer caches of what can select this node (the
 * SecurityAssociations and IpsecPolicies, the key Secrets of the operator's namespace, this
 * node's Node object for nodeSelectors).
 *
 * Fail static lives here: `snapshot()` answers only once every cache has synced once, so a
 * reconcile never acts on a partial view (an agent started while the API server is unreachable
 * leaves the kernel as it is). After that the caches keep their last content through outages.
 */
import type { KubeConfig, V1Node, V1Secret } from '@kubernetes/client-node';
import { IpsecResources, coreListerWatcher } from '../kube/client.js';
import { Informer, type InformerOptions, type KubeObject } from '../kube/informer.js';
import { cachesRunnable } from '../kube/components.js';
import type { Runnable } from '../kube/runnables.js';
import type { OperatorMetrics } from '../kube/metrics.js';
import type { Logger } from '../kube/logger.js';
import type { IpsecPolicyResource, SecurityAssociationResource } from '../crd/types.js';
import type { NodeInputs } from './node-reconciler.js';
import { concernsNode, labelsChanged, resourceChanged, secretChanged, type SelectableResource } from './cache-changes.js';

/** What one reconcile reads from the caches. */
export interface CacheSnapshot {
  readonly resources: NodeInputs['resources'];
  readonly secrets: NodeInputs['secrets'];
  /** Undefined when our Node object is not in the cache (deleted, or not yet created). */
  readonly node: V1Node | undefined;
}

export class NodeCaches {
  readonly runnable: Runnable;
  private readonly securityAssociations: Informer<SecurityAssociationResource>;
  private readonly policies: Informer<IpsecPolicyResource>;
  private readonly secrets: Informer<V1Secret>;
  private readonly nodes: Informer<V1Node>;
  private readonly nodeName: string;
  private readonly informers: readonly Informer<KubeObject>[];

  constructor(options: { kubeConfig: KubeConfig; resources: IpsecResources; namespace: string; nodeName: string; logger: Logger; metrics: OperatorMetrics }) {
    const { kubeConfig, resources, namespace, nodeName, logger, metrics } = options;
    const informerOptions = (resource: string): Omit<InformerOptions, 'resource'> => ({ logger, hooks: metrics.informerHooks(resource) });
    this.securityAssociations = resources.informer<SecurityAssociationResource>('securityassociations', informerOptions('securityassociations'));
    this.policies = resources.informer<IpsecPolicyResource>('ipsecpolicies', informerOptions('ipsecpolicies'));
    // Key Secrets are read from the operator's namespace only; the Node by name only.
    this.secrets = new Informer<V1Secret>(coreListerWatcher(kubeConfig, 'secrets', { namespace }), { resource: 'secrets', ...informerOptions('secrets') });
    this.nodes = new Informer<V1Node>(coreListerWatcher(kubeConfig, 'nodes', { fieldSelector: `metadata.name=${nodeName}` }), { resource: 'nodes', ...informerOptions('nodes') });
    this.informers = [this.securityAssociations, this.policies, this.secrets, this.nodes];
    this.runnable = cachesRunnable(this.informers);
    this.nodeName = nodeName;
  }

  /** Whether every cache has synced at least once. */
  synced(): boolean {
    return this.informers.every((informer) => informer.hasSynced());
  }

  /**
   * `handler` runs on every change of what a reconcile reads (./cache-changes.ts): a resource
   * that can select this node added, deleted or changed in spec or deletion; a key Secret's
   * data; this Node's labels. The controller's status writes and finalizer patches, other
   * nodes' resources and the informers' resyncs do not wake the agent (the reconcile's own
   * requeue is the periodic resync).
   */
  onChange(handler: () => void): void {
    const labels = () => this.nodes.get(this.nodeName)?.metadata?.labels;
    for (const informer of [this.securityAssociations, this.policies] as Informer<SelectableResource>[]) {
      informer.addHandlers({
        add: (object) => concernsNode(object, labels()) && handler(),
        update: (old, object) => resourceChanged(old, object, labels()) && handler(),
        delete: (object) => concernsNode(object, labels()) && handler(),
      });
    }
    this.secrets.addHandlers({ add: handler, update: (old, secret) => secretChanged(old, secret) && handler(), delete: handler });
    this.nodes.addHandlers({ add: handler, update: (old, node) => labelsChanged(old, node) && handler(), delete: handler });
  }

  /** The caches' content, or undefined while any cache has not synced yet (fail static). */
  snapshot(): CacheSnapshot | undefined {
    if (!this.synced()) return undefined;
    return {
      resources: [...this.securityAssociations.list(), ...this.policies.list()],
      secrets: secretValues(this.secrets.list()),
      node: this.nodes.get(this.nodeName),
    };
  }
}

/** The Secrets' data, decoded, by Secret name and key. Values are never logged. */
function secretValues(secrets: readonly V1Secret[]): Map<string, Map<string, Buffer>> {
  return new Map(
    secrets.map((secret) => [
      secret.metadata?.name ?? '',
      new Map(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')])),
    ]),
  );
}
