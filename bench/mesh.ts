// Benchmark (not a test): how long an IpsecMesh rotation round takes on real kernels (issue 12).
// The real control plane and controller on the host, one agent per node in the test VM
// (test/infra/cluster, as test/e2e-mesh/mesh-churn.test.ts), a transport IPv4 mesh over N nodes
// (default 3). Each round is requested with the rotate annotation and timed, from the
// annotation to:
//
//   - status: every node on a new key generation, Rotating False, Ready, no request left
//     (what the controller says);
//   - settled: every node holds exactly one SA per direction with every peer, at both ends
//     with the same SPI (all pairs switched, the old generation's SAs gone, from
//     `ip xfrm state` dumps of every node);
//
// and each node's own rotation (its published startedAt → completedAt). The median of R rounds
// is printed with the load average before and after; proving 0 loss is the test's job
// (test/e2e-mesh), not this one's: no traffic runs here, so an old SA is idle as soon as it was
// switched away from and the grace period counts from the agent's first look at it.
//
// Needs root and `make bootstrap` (VM image, control plane build). Builds dist/ first. Cleans up
// the cluster, the control plane and the VM.
//
//   npm run bench:mesh [-- --rounds 3] [--nodes 3] [--max-concurrent 3] [--grace 3s]
//                      [--resync-seconds 5] [--kernel 6.1] [--json FILE]
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import buildDist from '../test/infra/build-dist.js';
import { buildVmImage } from '../test/infra/vm/image.js';
import { bootVm, type Vm } from '../test/infra/vm/vm.js';
import { startControlPlane, type ControlPlane } from '../test/infra/controlplane/controlplane.js';
import { startCluster, type Cluster } from '../test/infra/cluster/cluster.js';
import { warmCrypto } from '../test/support/vm-cli.js';
import { waitFor } from '../test/e2e/support.js';
import { parseStateDump } from '../test/support/traffic-proof.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    nodes: { type: 'string', default: '3' },
    'max-concurrent': { type: 'string', default: '3' },
    grace: { type: 'string', default: '3s' },
    'resync-seconds': { type: 'string', default: '5' },
    kernel: { type: 'string', default: process.env['IPSEC_OPERATOR_VM_KERNEL'] ?? '6.1' },
    'timeout-seconds': { type: 'string', default: '900' },
    json: { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const NODE_COUNT = Number(values.nodes);
const MAX_CONCURRENT = Number(values['max-concurrent']);
const RESYNC_SECONDS = Number(values['resync-seconds']);
const TIMEOUT_MS = Number(values['timeout-seconds']) * 1000;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a positive integer');
if (!Number.isInteger(NODE_COUNT) || NODE_COUNT < 2 || NODE_COUNT > 8) throw new Error('--nodes must be 2..8');
if (!Number.isInteger(MAX_CONCURRENT) || MAX_CONCURRENT < 1) throw new Error('--max-concurrent must be a positive integer');
if (!/^\d+(ms|s|m)$/.test(values.grace!)) throw new Error('--grace must be a duration such as 3s');

const MESH = 'bench-mesh';
const LABEL = 'ipsec.xfrm.io/mesh';
const NODES = Array.from({ length: NODE_COUNT }, (_, i) => String.fromCharCode('a'.charCodeAt(0) + i));
const log = (line: string) => process.stderr.write(`[bench:mesh] ${line}\n`);

interface MeshStatus {
  conditions?: { type: string; status: string }[];
  nodes?: { name: string; generation?: number; lastRotationTime?: string }[];
  rotationRequests?: unknown[];
}
interface Rotation {
  requestId: string;
  state: string;
  startedAt: string;
  completedAt?: string;
}
interface RoundResult {
  round: number;
  statusSeconds: number;
  settledSeconds: number;
  /** Per node: its rotation's startedAt → completedAt as it published them (whole seconds). */
  nodeSeconds: Record<string, number>;
}

const manifest = `apiVersion: ipsec.xfrm.io/v1alpha1
kind: IpsecMesh
metadata:
  name: ${MESH}
spec:
  nodeSelector: {matchLabels: {${LABEL}: ${MESH}}}
  addressFamilies: [IPv4]
  mode: transport
  aead: rfc4106-gcm-aes256
  rotation:
    interval: 24h
    gracePeriod: ${values.grace}
    backstop: 10m
    maxConcurrent: ${MAX_CONCURRENT}
`;

const condition = (status: MeshStatus, type: string) => status.conditions?.find((c) => c.type === type)?.status;

async function status(cluster: Cluster): Promise<MeshStatus> {
  return (JSON.parse(await cluster.kubectl(['get', 'ipsecmesh', MESH, '-o', 'json'])) as { status?: MeshStatus }).status ?? {};
}

async function rotations(cluster: Cluster): Promise<Map<string, Rotation | undefined>> {
  const out = new Map<string, Rotation | undefined>();
  for (const node of NODES) {
    const state = JSON.parse(await cluster.kubectl(['get', 'ipsecnodestate', node, '-o', 'json'])) as { status?: { meshes?: { mesh: string; rotation?: Rotation }[] } };
    out.set(node, state.status?.meshes?.find((entry) => entry.mesh === MESH)?.rotation);
  }
  return out;
}

/** Every node holds one SA per direction with every peer, and sender and receiver hold the same SPI. */
async function settled(cluster: Cluster): Promise<boolean> {
  const address = (node: string) => cluster.topology.node(node).ipv4!;
  const dumps = new Map<string, ReturnType<typeof parseStateDump>>();
  for (const node of NODES) dumps.set(node, parseStateDump((await cluster.topology.node(node).sh('ip xfrm state')).stdout).filter((sa) => sa.protocol === 'esp'));
  for (const from of NODES) {
    if (dumps.get(from)!.length !== 2 * (NODES.length - 1)) return false;
    for (const to of NODES) {
      if (from === to) continue;
      const held = (node: string) => dumps.get(node)!.filter((sa) => sa.source === address(from) && sa.destination === address(to)).map((sa) => sa.spi);
      const sent = held(from);
      const received = held(to);
      if (sent.length !== 1 || received.length !== 1 || sent[0] !== received[0]) return false;
    }
  }
  return true;
}

async function round(cluster: Cluster, index: number): Promise<RoundResult> {
  const before = new Map(((await status(cluster)).nodes ?? []).map((entry) => [entry.name, entry.generation ?? 0]));
  const started = Date.now();
  await cluster.kubectl(['annotate', 'ipsecmesh', MESH, 'ipsec.xfrm.io/rotate=now', '--overwrite']);
  await waitFor(
    `round ${index}: every node on a new generation, Rotating False, Ready`,
    async () => {
      const now = await status(cluster);
      const nodes = now.nodes ?? [];
      return (
        NODES.every((name) => (nodes.find((entry) => entry.name === name)?.generation ?? 0) > (before.get(name) ?? 0)) &&
        condition(now, 'Rotating') === 'False' &&
        condition(now, 'Ready') === 'True' &&
        (now.rotationRequests ?? []).length === 0
      );
    },
    TIMEOUT_MS,
    500,
  );
  const statusSeconds = (Date.now() - started) / 1000;
  await waitFor(`round ${index}: one SA per direction again`, async () => settled(cluster), TIMEOUT_MS, 500);
  const settledSeconds = (Date.now() - started) / 1000;
  const nodeSeconds: Record<string, number> = {};
  for (const [node, rotation] of await rotations(cluster)) {
    if (rotation?.completedAt !== undefined) nodeSeconds[node] = (Date.parse(rotation.completedAt) - Date.parse(rotation.startedAt)) / 1000;
  }
  log(`round ${index}: status ${statusSeconds.toFixed(1)} s, settled ${settledSeconds.toFixed(1)} s, nodes ${JSON.stringify(nodeSeconds)}`);
  return { round: index, statusSeconds, settledSeconds, nodeSeconds };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const loadBefore = loadavg();
  log('building dist/');
  buildDist();
  let vm: Vm | undefined;
  let controlPlane: ControlPlane | undefined;
  let cluster: Cluster | undefined;
  const results: RoundResult[] = [];
  let readySeconds = Number.NaN;
  try {
    log(`booting the test VM (kernel ${values.kernel})`);
    vm = await bootVm({ image: await buildVmImage(values.kernel) });
    controlPlane = await startControlPlane();
    await warmCrypto(vm);
    cluster = await startCluster({ vm, kubeconfigPath: controlPlane.kubeconfigPath, nodes: NODES, resyncSeconds: RESYNC_SECONDS, log });
    const running = cluster;
    await running.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/ipsecmeshes.ipsec.xfrm.io']);
    for (const node of NODES) {
      const address = running.topology.node(node).ipv4!;
      await running.kubectl(['patch', 'node', node, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address }, { type: 'Hostname', address: node }] } })]);
      await running.kubectl(['label', 'node', node, `${LABEL}=${MESH}`, '--overwrite']);
    }
    const applied = Date.now();
    await running.kubectl(['apply', '-f', '-'], manifest);
    await waitFor('the mesh Ready', async () => condition(await status(running), 'Ready') === 'True', TIMEOUT_MS, 500);
    await waitFor('one SA per direction', async () => settled(running), TIMEOUT_MS, 500);
    readySeconds = (Date.now() - applied) / 1000;
    log(`mesh Ready and settled ${readySeconds.toFixed(1)} s after apply (includes the agents' start in the guest)`);
    for (let index = 1; index <= ROUNDS; index++) results.push(await round(running, index));
  } finally {
    await cluster?.kubectl(['delete', 'ipsecmesh', MESH, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await cluster?.stop().catch((error: Error) => log(`cluster stop: ${error.message}`));
    await controlPlane?.stop().catch((error: Error) => log(`control plane stop: ${error.message}`));
    await vm?.shutdown().catch((error: Error) => log(`vm shutdown: ${error.message}`));
  }
  const loadAfter = loadavg();
  const s = (x: number) => `${x.toFixed(1)} s`;
  const nodeCells = (result: RoundResult) => NODES.map((node) => (result.nodeSeconds[node] === undefined ? '–' : `${result.nodeSeconds[node]} s`));
  const rows = results.map((result) => [String(result.round), s(result.statusSeconds), s(result.settledSeconds), ...nodeCells(result)]);
  const nodeMedian = NODES.map((node) => {
    const seen = results.flatMap((result) => (result.nodeSeconds[node] === undefined ? [] : [result.nodeSeconds[node]!]));
    return seen.length === 0 ? '–' : `${median(seen)} s`;
  });
  rows.push([`median of ${results.length}`, s(median(results.map((r) => r.statusSeconds))), s(median(results.map((r) => r.settledSeconds))), ...nodeMedian]);
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  console.log(
    `\nIpsecMesh rotation round, ${NODE_COUNT} nodes in the VM (kernel ${values.kernel}), maxConcurrent ${MAX_CONCURRENT}, grace ${values.grace}, agents resync ${RESYNC_SECONDS} s, no traffic`,
  );
  console.log(`mesh Ready and settled after apply: ${s(readySeconds)}; load average before ${load(loadBefore)}, after ${load(loadAfter)}\n`);
  console.log(table(['round', 'annotation → status done', 'annotation → old SAs gone', ...NODES.map((node) => `node ${node} rotation`)], rows));
  if (values.json) {
    writeFileSync(values.json, `${JSON.stringify({ nodes: NODE_COUNT, kernel: values.kernel, maxConcurrent: MAX_CONCURRENT, grace: values.grace, resyncSeconds: RESYNC_SECONDS, readySeconds, rounds: results, loadBefore, loadAfter }, null, 2)}\n`);
  }
}

main().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`[bench:mesh] failed: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
