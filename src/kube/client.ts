/**
 * Access to the API server: where the credentials come from, and a small typed helper for the
 * operator's own custom resources (group ipsec.xfrm.io, version v1alpha1, all cluster-scoped).
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type V1ConfigMap, type V1Node, type V1Secret } from '@kubernetes/client-node';
import { API_GROUP, API_VERSION } from '../crd/types.js';
import { isNotFound } from './api-errors.js';
import { Informer, type InformerOptions, type KubeObject, type ListerWatcher } from './informer.js';
import { kubeListerWatcher, type ListPage, type ListPageRequest } from './list-watch.js';
import { StatusWriter, type StatusWriteOptions, type StatusWriteResult } from './status.js';

export class KubeConfigError extends Error {
  override readonly name = 'KubeConfigError';
}

/** Where a ServiceAccount token is mounted in a Pod. */
const IN_CLUSTER_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface LoadKubeConfigOptions {
  /** A kubeconfig file (a --kubeconfig flag); wins over everything else. */
  path?: string;
  /** Default process.env; KUBECONFIG may list several files (joined with ':'). */
  env?: NodeJS.ProcessEnv;
  /** For tests; default the Pod's token path. */
  inClusterTokenPath?: string;
  /** For tests; default ~/.kube/config. */
  homeConfigPath?: string;
}

/**
 * The KubeConfig to use, in kubectl's order of precedence, except that running in a Pod wins
 * over ~/.kube/config: an explicit path, then $KUBECONFIG, then the in-cluster ServiceAccount
 * (KUBERNETES_SERVICE_HOST set and a token mounted), then ~/.kube/config.
 */
export function loadKubeConfig(options: LoadKubeConfigOptions = {}): KubeConfig {
  const env = options.env ?? process.env;
  const kubeConfig = new KubeConfig();
  let source: string;
  if (options.path !== undefined && options.path !== '') {
    loadFiles(kubeConfig, [options.path]);
    source = options.path;
  } else if (env.KUBECONFIG !== undefined && env.KUBECONFIG !== '') {
    const files = env.KUBECONFIG.split(delimiter).filter((file) => file !== '');
    loadFiles(kubeConfig, files);
    source = `$KUBECONFIG (${files.join(delimiter)})`;
  } else if (env.KUBERNETES_SERVICE_HOST !== undefined && existsSync(options.inClusterTokenPath ?? IN_CLUSTER_TOKEN)) {
    kubeConfig.loadFromCluster();
    source = 'in-cluster ServiceAccount';
  } else {
    const home = options.homeConfigPath ?? join(homedir(), '.kube', 'config');
    if (!existsSync(home)) {
      throw new KubeConfigError('no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, run in a Pod, or create ~/.kube/config');
    }
    loadFiles(kubeConfig, [home]);
    source = home;
  }
  if (kubeConfig.getCurrentCluster() === null) throw new KubeConfigError(`kubeconfig from ${source} has no current context or cluster`);
  return kubeConfig;
}

function loadFiles(kubeConfig: KubeConfig, files: string[]): void {
  const [first, ...rest] = files;
  if (first === undefined) throw new KubeConfigError('empty kubeconfig path list');
  try {
    kubeConfig.loadFromFile(first);
    for (const file of rest) {
      const other = new KubeConfig();
      other.loadFromFile(file);
      // kubectl: the first file that sets current-context wins, and so does the first definition of a name.
      kubeConfig.mergeConfig(other, true);
    }
  } catch (error) {
    throw new KubeConfigError(`cannot load kubeconfig: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export const IPSEC_PLURALS = ['securityassociations', 'ipsecpolicies', 'ipsecnodestates', 'ipsecmeshes'] as const;
export type IpsecPlural = (typeof IPSEC_PLURALS)[number];

export const IPSEC_KINDS: Readonly<Record<IpsecPlural, string>> = {
  securityassociations: 'SecurityAssociation',
  ipsecpolicies: 'IpsecPolicy',
  ipsecnodestates: 'IpsecNodeState',
  ipsecmeshes: 'IpsecMesh',
};

/** `/apis/ipsec.xfrm.io/v1alpha1/<plural>`: the collection (list and watch). */
export function ipsecCollectionPath(plural: IpsecPlural): string {
  return `/apis/${API_GROUP}/${API_VERSION}/${plural}`;
}

/** `/apis/ipsec.xfrm.io/v1alpha1/<plural>/<name>`. */
export function ipsecObjectPath(plural: IpsecPlural, name: string): string {
  return `${ipsecCollectionPath(plural)}/${encodeURIComponent(name)}`;
}

export interface SelectorOptions {
  labelSelector?: string;
  fieldSelector?: string;
}

/**
 * Typed access to the operator's cluster-scoped custom resources. Reads for reconciling should
 * come from an informer (`informer()`); `get` is for the rare read that must be fresh.
 */
export class IpsecResources {
  readonly api: CustomObjectsApi;

  constructor(readonly kubeConfig: KubeConfig) {
    this.api = kubeConfig.makeApiClient(CustomObjectsApi);
  }

  async listPage<T>(plural: IpsecPlural, options: SelectorOptions & { limit?: number; continueToken?: string } = {}): Promise<ListPage<T>> {
    return (await this.api.listClusterCustomObject({
      group: API_GROUP,
      version: API_VERSION,
      plural,
      labelSelector: options.labelSelector,
      fieldSelector: options.fieldSelector,
      limit: options.limit,
      _continue: options.continueToken,
    })) as ListPage<T>;
  }

  /** The object, or undefined when it does not exist. */
  async get<T>(plural: IpsecPlural, name: string): Promise<T | undefined> {
    try {
      return (await this.api.getClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural, name })) as T;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * Server-side apply of a whole object (e.g. the agent's IpsecNodeState): creates it if
   * missing; the field manager owns what it sends. Status is ignored here (see applyStatus).
   */
  async apply<T>(plural: IpsecPlural, object: { metadata: { name: string } } & Record<string, unknown>, fieldManager: string): Promise<T> {
    const body = { ...object, apiVersion: `${API_GROUP}/${API_VERSION}`, kind: IPSEC_KINDS[plural] };
    return (await this.api.patchClusterCustomObject(
      { group: API_GROUP, version: API_VERSION, plural, name: object.metadata.name, body, fieldManager, force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    )) as T;
  }

  async delete(plural: IpsecPlural, name: string): Promise<void> {
    try {
      await this.api.deleteClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural, name });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  listerWatcher<T extends KubeObject>(plural: IpsecPlural, selectors: SelectorOptions = {}): ListerWatcher<T> {
    return kubeListerWatcher<T>(this.kubeConfig, {
      path: ipsecCollectionPath(plural),
      ...selectors,
      listPage: (request) => this.listPage<T>(plural, request),
    });
  }

  informer<T extends KubeObject>(plural: IpsecPlural, options: Omit<InformerOptions, 'resource'> & SelectorOptions = {}): Informer<T> {
    const { labelSelector, fieldSelector, ...informerOptions } = options;
    return new Informer(this.listerWatcher<T>(plural, { labelSelector, fieldSelector }), { resource: plural, ...informerOptions });
  }

  statusWriter(fieldManager: string): IpsecStatusWriter {
    return new IpsecStatusWriter(new StatusWriter(this.api, fieldManager));
  }
}

/** StatusWriter bound to the ipsec.xfrm.io resources: `write(plural, name, current, desired)`. */
export class IpsecStatusWriter {
  constructor(readonly writer: StatusWriter) {}

  write(plural: IpsecPlural, name: string, current: unknown, desired: Record<string, unknown>, options?: StatusWriteOptions): Promise<StatusWriteResult> {
    return this.writer.write({ group: API_GROUP, version: API_VERSION, plural, kind: IPSEC_KINDS[plural], name }, current, desired, options);
  }
}

/** Core (v1) resources the operator watches: key Secrets, ConfigMaps, Nodes (labels for nodeSelector). */
export interface CoreResourceTypes {
  secrets: V1Secret;
  configmaps: V1ConfigMap;
  nodes: V1Node;
}
export type CoreResource = keyof CoreResourceTypes;

/**
 * A ListerWatcher for a core resource: in one namespace, or across the cluster when `namespace`
 * is absent (Nodes are cluster-scoped). Selectors narrow it (e.g. `metadata.name=<node>` for an
 * agent that needs only its own Node).
 */
export function coreListerWatcher<R extends CoreResource>(
  kubeConfig: KubeConfig,
  resource: R,
  options: SelectorOptions & { namespace?: string } = {},
): ListerWatcher<CoreResourceTypes[R]> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const { namespace } = options;
  if (resource === 'nodes' && namespace !== undefined) throw new Error('nodes are cluster-scoped: no namespace');
  const path = namespace === undefined ? `/api/v1/${resource}` : `/api/v1/namespaces/${encodeURIComponent(namespace)}/${resource}`;
  const listPage = (request: ListPageRequest): Promise<ListPage<CoreResourceTypes[R]>> => {
    const page = { labelSelector: request.labelSelector, fieldSelector: request.fieldSelector, limit: request.limit, _continue: request.continueToken };
    const call: Promise<unknown> =
      resource === 'nodes'
        ? core.listNode(page)
        : resource === 'secrets'
          ? namespace === undefined
            ? core.listSecretForAllNamespaces(page)
            : core.listNamespacedSecret({ ...page, namespace })
          : namespace === undefined
            ? core.listConfigMapForAllNamespaces(page)
            : core.listNamespacedConfigMap({ ...page, namespace });
    return call as Promise<ListPage<CoreResourceTypes[R]>>;
  };
  return kubeListerWatcher(kubeConfig, { path, labelSelector: options.labelSelector, fieldSelector: options.fieldSelector, listPage });
}
