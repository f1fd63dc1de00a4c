// Compacts the control plane's etcd on demand, through etcd's own JSON gateway
// (/v3/kv/...), so tests of "resourceVersion too old" (410 Gone) are deterministic.
// The apiserver runs with --etcd-compaction-interval=0: nothing else compacts.

/** Compacts etcd up to its current revision and returns that revision. */
export async function compactEtcd(etcdUrl: string): Promise<number> {
  // Any range answers with the store's current revision in its header.
  const range = await etcdPost(etcdUrl, '/v3/kv/range', { key: Buffer.from('\0').toString('base64'), limit: 1 });
  const revision = Number((range as { header?: { revision?: string } }).header?.revision);
  if (!Number.isSafeInteger(revision) || revision <= 0) {
    throw new Error(`etcd at ${etcdUrl} returned no revision: ${JSON.stringify(range)}`);
  }
  // physical: answer only once the compaction is applied to the backend, not just scheduled.
  await etcdPost(etcdUrl, '/v3/kv/compaction', { revision: String(revision), physical: true });
  return revision;
}

async function etcdPost(etcdUrl: string, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(new URL(path, etcdUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`etcd ${path} at ${etcdUrl} answered ${res.status}: ${text}`);
  return JSON.parse(text) as unknown;
}
