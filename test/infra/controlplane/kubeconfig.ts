// KubeConfigs for tests: the admin one the control plane wrote, and ServiceAccount ones built
// from a TokenRequest, so RBAC is tested with the same kind of credentials a Pod gets.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

/** The KubeConfig in a kubeconfig file (e.g. the admin one from the control plane). */
export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  if (!kc.getCurrentCluster()) throw new Error(`kubeconfig ${path} has no current cluster`);
  return kc;
}

export interface ServiceAccountRef {
  namespace: string;
  name: string;
  /** Token audiences. Default: the apiserver's own (its ServiceAccount issuer). */
  audiences?: string[];
  /** Token lifetime; the apiserver's minimum is 600. Default 3600. */
  expirationSeconds?: number;
}

/** Creates the ServiceAccount unless it exists. */
export async function ensureServiceAccount(admin: KubeConfig, namespace: string, name: string): Promise<void> {
  const core = admin.makeApiClient(CoreV1Api);
  try {
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err; // 409 AlreadyExists is fine
  }
}

/** A token for the ServiceAccount from the TokenRequest API (POST .../serviceaccounts/NAME/token). */
export async function mintServiceAccountToken(admin: KubeConfig, sa: ServiceAccountRef): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const res = await core.createNamespacedServiceAccountToken({
    namespace: sa.namespace,
    name: sa.name,
    body: { spec: { audiences: sa.audiences ?? [], expirationSeconds: sa.expirationSeconds ?? 3600 } },
  });
  const token = res.status?.token;
  if (!token) throw new Error(`TokenRequest for ${sa.namespace}/${sa.name} returned no token`);
  return token;
}

/**
 * A KubeConfig that authenticates as the ServiceAccount (creating it if missing) against the
 * same cluster as `admin`, with a freshly minted token. It has no permissions until a test
 * binds a Role to system:serviceaccount:<namespace>:<name>.
 */
export async function kubeConfigForServiceAccount(admin: KubeConfig, sa: ServiceAccountRef): Promise<KubeConfig> {
  await ensureServiceAccount(admin, sa.namespace, sa.name);
  const token = await mintServiceAccountToken(admin, sa);
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error('admin KubeConfig has no current cluster');
  const user = `system:serviceaccount:${sa.namespace}:${sa.name}`;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...cluster }],
    users: [{ name: user, token }],
    contexts: [{ name: user, cluster: cluster.name, user, namespace: sa.namespace }],
    currentContext: user,
  });
  return kc;
}

/**
 * The address of the host's loopback as seen from the qemu test VM (user-mode networking):
 * the serving certificate includes it, so a guest reaches the apiserver at https://10.0.2.2:<port>.
 */
export const GUEST_HOST_ADDRESS = '10.0.2.2';

/** A copy of `kc` whose current cluster is reached at another URL (e.g. https://10.0.2.2:<port> from the VM). */
export function withServer(kc: KubeConfig, server: string): KubeConfig {
  const cluster = kc.getCurrentCluster();
  const context = kc.getContextObject(kc.getCurrentContext());
  const user = kc.getCurrentUser();
  if (!cluster || !context || !user) throw new Error('KubeConfig has no current cluster, context or user');
  const copy = new KubeConfig();
  copy.loadFromOptions({
    clusters: [{ ...cluster, server }],
    users: [{ ...user }],
    contexts: [{ ...context }],
    currentContext: context.name,
  });
  return copy;
}
