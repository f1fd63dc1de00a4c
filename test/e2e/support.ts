// Helpers for end-to-end tests: polling with a deadline (the tests assert outcomes, never how
// fast they came; the measured times are printed), reading resources' Ready condition, and what
// the kernel and the wire show of an SA's sequence numbers.
import type { Cluster } from '../infra/cluster/cluster.js';
import type { VmClient } from '../infra/vm/client.js';
import type { TopologyNode } from '../infra/vm/topology.js';

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

/** The outbound counter of an SA as `node`'s kernel reports it (legacy `oseq`, or ESN `oseq-hi`/`oseq`). */
export async function outboundSequence(node: TopologyNode, from: string, to: string, spi: number): Promise<bigint> {
  const { stdout } = await node.sh(`ip -s xfrm state get src ${from} dst ${to} proto esp spi 0x${spi.toString(16)}`);
  const esn = /oseq-hi (0x[0-9a-f]+), oseq (0x[0-9a-f]+)/.exec(stdout);
  if (esn) return (BigInt(esn[1]!) << 32n) | BigInt(esn[2]!);
  const legacy = /oseq (0x[0-9a-f]+)/.exec(stdout);
  if (!legacy) throw new Error(`no oseq in:\n${stdout}`);
  return BigInt(legacy[1]!);
}

let captures = 0;
/**
 * The ESP sequence numbers of `spi` that tcpdump saw on `node`'s eth0 while `during` ran, in
 * wire order, with what `during` returned. The capture is listening before `during` starts.
 */
export async function espSequencesOnWire<T>(node: TopologyNode, spi: number, during: () => Promise<T>): Promise<{ sequences: bigint[]; result: T }> {
  const file = `/tmp/e2e-esp-${process.pid}-${(captures += 1)}`;
  await node.sh(`tcpdump -l -n -i eth0 esp > ${file}.txt 2> ${file}.err < /dev/null & echo $! > ${file}.pid; for i in $(seq 300); do grep -q 'listening on' ${file}.err 2>/dev/null && exit 0; sleep 0.2; done; cat ${file}.err; exit 1`, { timeoutMs: 90_000 });
  let result: T;
  try {
    result = await during();
  } finally {
    await node.sh(`sleep 1; kill -INT $(cat ${file}.pid); while kill -0 $(cat ${file}.pid) 2>/dev/null; do sleep 0.1; done`, { timeoutMs: 60_000 });
  }
  const { stdout } = await node.sh(`cat ${file}.txt; rm -f ${file}.*`);
  const pattern = new RegExp(`ESP\\(spi=0x${spi.toString(16).padStart(8, '0')},seq=(0x[0-9a-f]+)\\)`, 'g');
  return { sequences: [...stdout.matchAll(pattern)].map((match) => BigInt(match[1]!)), result };
}

/** One counter of /proc/net/xfrm_stat in `node`'s namespace (XfrmInStateSeqError, XfrmInNoStates, ...). */
export async function xfrmStat(node: TopologyNode, name: string): Promise<number> {
  const { stdout } = await node.sh('cat /proc/net/xfrm_stat');
  const value = Number(new RegExp(`^${name}\\s+(\\d+)$`, 'm').exec(stdout)?.[1] ?? NaN);
  if (Number.isNaN(value)) throw new Error(`no ${name} in /proc/net/xfrm_stat:\n${stdout}`);
  return value;
}

/** An agent's /metrics (or /readyz ...) as the VM sees it, by its metrics port on the VM's address. */
export async function agentEndpoint(vm: VmClient, port: number, path: string): Promise<{ code: number; body: string }> {
  const { stdout } = await vm.exec({ argv: ['curl', '-s', '-m', '10', '-w', '\n%{http_code}', `http://10.0.2.15:${port}${path}`] }, { timeoutMs: 30_000 });
  const end = stdout.lastIndexOf('\n');
  return { code: Number(stdout.slice(end + 1)), body: stdout.slice(0, Math.max(0, end)) };
}

/** The sum of a metric's samples in Prometheus text, over the samples whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const match of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
    const present = match[1] ?? '';
    if (Object.entries(labels).every(([key, value]) => present.includes(`${key}="${value}"`))) sum += Number(match[2]);
  }
  return sum;
}
