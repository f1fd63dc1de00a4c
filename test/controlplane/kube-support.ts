// Shared by the kube-*.test.ts files: KubeConfigs through a TcpProxy, and polling for state
// that the apiserver and the informers reach asynchronously (never asserting how fast).
import { KubeConfig } from '@kubernetes/client-node';

/** A copy of `base` whose current cluster is reached at `server` (e.g. a TcpProxy's URL). */
export function kubeConfigVia(base: KubeConfig, server: string): KubeConfig {
  const cluster = base.getCurrentCluster();
  const user = base.getCurrentUser();
  const context = base.getContextObject(base.getCurrentContext());
  if (!cluster || !user || !context) throw new Error('base KubeConfig has no current cluster, user or context');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...cluster, server }],
    users: [user],
    contexts: [context],
    currentContext: context.name,
  });
  return kc;
}

/** Polls `check` until it returns without throwing; gives up (with the last error) after `limitMs`. */
export async function eventually<T>(what: string, check: () => T | Promise<T>, limitMs = 30_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  let last: unknown;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached: ${last instanceof Error ? last.message : String(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Throws unless `condition` holds: for use inside eventually(). */
export function ensure(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}
