// Helpers for end-to-end tests: polling with a deadline (the tests assert outcomes, never how
// fast they came; the measured times are printed), and reading resources' Ready condition.
import type { Cluster } from '../infra/cluster/cluster.js';

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 120_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface ResourceState {
  kind: string;
  name: string;
  ready: string | undefined;
  reason: string | undefined;
  message: string | undefined;
  finalizers: string[];
}

export async function resourceStates(cluster: Cluster): Promise<ResourceState[]> {
  const text = await cluster.kubectl(['get', 'securityassociations,ipsecpolicies', '-o', 'json']);
  const list = JSON.parse(text) as {
    items: { kind: string; metadata: { name: string; finalizers?: string[] }; status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }[];
  };
  return list.items.map((item) => {
    const ready = item.status?.conditions?.find((condition) => condition.type === 'Ready');
    return { kind: item.kind, name: item.metadata.name, ready: ready?.status, reason: ready?.reason, message: ready?.message, finalizers: item.metadata.finalizers ?? [] };
  });
}

export function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  return work().finally(() => console.log(`[e2e] ${label}: ${((Date.now() - started) / 1000).toFixed(2)} s`));
}
