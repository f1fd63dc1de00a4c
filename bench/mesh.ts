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
// the cluster, the control plane and the VM. bench/scale.ts runs the same measurement
// (measureMeshRotation) as its mesh phase (`--mesh-nodes N`).
//
//   npm run bench:mesh [-- --rounds 3] [--nodes 3] [--max-concurrent 3] [--grace 3s]
//                      [--resync-seconds 5] [--kernel 6.1] [--json FILE]
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import buildDist from '../test/infra/build-dist.js';
import { buildVmImage } from '../test/infra/vm/image.js';
import { bootVm, type Vm } from '../test/infra/vm/vm.js';
import { startControlPlane, type ControlPlane } from '../test/infra/controlplane/controlplane.js';
import { startCluster, type Cluster } from '../test/infra/cluster/cluster.js';
import { warmCrypto } from '../test/support/vm-cli.js';
import { waitFor } from '../test/e2e/support.js';
import { parseStateDump } from '../test/support/traffic-proof.js';

export interface MeshRotationOptions {
  /** Mesh members, each a network namespace and an agent process in the guest: 2..26 (named a..z). */
  readonly nodes: number;
  readonly rounds: number;
  readonly maxConcurrent: number;
  /** The mesh's rotation.gracePeriod, e.g. '3s'. */
  readonly grace: string;
  readonly resyncSeconds: number;
  /** The test VM's kernel: '6.1' or '6.12'. */
  readonly kernel: string;
  /** How long one wait (mesh Ready, a round done, old SAs gone) may take before the run fails. */
  readonly timeoutMs: number;
  readonly log?: (line: string) => void;
}

export const MESH_ROTATION_DEFAULTS = {
  nodes: 3,
  rounds: 3,
  maxConcurrent: 3,
  grace: '3s',
  resyncSeconds: 5,
  kernel: process.env['IPSEC_OPERATOR_VM_KERNEL'] ?? '6.1',
  // Each wait's bound, not a figure: at 10 nodes and load ~12 the mesh took 773 s to be Ready and
  // settled (the agents' start in the guest), and a round with maxConcurrent 3 took 844 s to the
  // status saying done, 56 s short of the former 900 s bound.
  timeoutMs: 1_800_000,
} as const satisfies Omit<MeshRotationOptions, 'log'>;

/** Throws a clear error for options no run can use; called before anything boots. */
export function checkMeshRotationOptions(options: MeshRotationOptions): void {
  const { nodes, rounds, maxConcurrent, grace, resyncSeconds, timeoutMs } = options;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`the mesh's rounds must be a positive integer, got ${rounds}`);
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 26) throw new Error(`the mesh's nodes must be 2..26 (named a..z), got ${nodes}`);
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) throw new Error(`the mesh's max-concurrent must be a positive integer, got ${maxConcurrent}`);
  if (!/^\d+(ms|s|m)$/.test(grace)) throw new Error(`the mesh's grace must be a duration such as 3s, got ${JSON.stringify(grace)}`);
  if (!Number.isInteger(resyncSeconds) || resyncSeconds < 1) throw new Error(`the mesh's resync-seconds must be a positive integer, got ${resyncSeconds}`);
  if (!(timeoutMs > 0)) throw new Error(`the mesh's timeout-seconds must be positive, got ${timeoutMs / 1000}`);
}

export interface RoundResult {
  round: number;
  statusSeconds: number;
  settledSeconds: number;
  /** Per node: its rotation's startedAt → completedAt as it published them (whole seconds). */
  nodeSeconds: Record<string, number>;
}

export interface MeshRotationResult {
  readonly nodes: number;
  readonly nodeNames: readonly string[];
  readonly kernel: string;
  readonly maxConcurrent: number;
  readonly grace: string;
  readonly resyncSeconds: number;
  /** Apply → Ready and one SA per direction (includes the agents' start in the guest). */
  readonly readySeconds: number;
  readonly rounds: readonly RoundResult[];
  /** What the guest had left once the mesh was up, and after the rounds (`free` and the agents' RSS). */
  readonly guestMemory: { readonly ready: string; readonly after: string };
  readonly loadBefore: readonly number[];
  readonly loadAfter: readonly number[];
}

const MESH = 'bench-mesh';
const LABEL = 'ipsec.xfrm.io/mesh';

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

const manifest = (options: MeshRotationOptions) => `apiVersion: ipsec.xfrm.io/v1alpha1
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
    gracePeriod: ${options.grace}
    backstop: 10m
    maxConcurrent: ${options.maxConcurrent}
`;

const condition = (status: MeshStatus, type: string) => status.conditions?.find((c) => c.type === type)?.status;

/** The running mesh: its cluster and member names, what every measurement below reads. */
interface Run {
  readonly cluster: Cluster;
  readonly nodes: readonly string[];
  readonly timeoutMs: number;
  readonly log: (line: string) => void;
}

async function status(run: Run): Promise<MeshStatus> {
  return (JSON.parse(await run.cluster.kubectl(['get', 'ipsecmesh', MESH, '-o', 'json'])) as { status?: MeshStatus }).status ?? {};
}

async function rotations(run: Run): Promise<Map<string, Rotation | undefined>> {
  const out = new Map<string, Rotation | undefined>();
  for (const node of run.nodes) {
    const state = JSON.parse(await run.cluster.kubectl(['get', 'ipsecnodestate', node, '-o', 'json'])) as { status?: { meshes?: { mesh: string; rotation?: Rotation }[] } };
    out.set(node, state.status?.meshes?.find((entry) => entry.mesh === MESH)?.rotation);
  }
  return out;
}

/** Every node holds one SA per direction with every peer, and sender and receiver hold the same SPI. */
async function settled(run: Run): Promise<boolean> {
  const { cluster, nodes } = run;
  const address = (node: string) => cluster.topology.node(node).ipv4!;
  const dumps = new Map<string, ReturnType<typeof parseStateDump>>();
  for (const node of nodes) dumps.set(node, parseStateDump((await cluster.topology.node(node).sh('ip xfrm state')).stdout).filter((sa) => sa.protocol === 'esp'));
  for (const from of nodes) {
    if (dumps.get(from)!.length !== 2 * (nodes.length - 1)) return false;
    for (const to of nodes) {
      if (from === to) continue;
      const held = (node: string) => dumps.get(node)!.filter((sa) => sa.source === address(from) && sa.destination === address(to)).map((sa) => sa.spi);
      const sent = held(from);
      const received = held(to);
      if (sent.length !== 1 || received.length !== 1 || sent[0] !== received[0]) return false;
    }
  }
  return true;
}

async function round(run: Run, index: number): Promise<RoundResult> {
  const before = new Map(((await status(run)).nodes ?? []).map((entry) => [entry.name, entry.generation ?? 0]));
  const started = Date.now();
  await run.cluster.kubectl(['annotate', 'ipsecmesh', MESH, 'ipsec.xfrm.io/rotate=now', '--overwrite']);
  await waitFor(
    `round ${index}: every node on a new generation, Rotating False, Ready`,
    async () => {
      const now = await status(run);
      const nodes = now.nodes ?? [];
      return (
        run.nodes.every((name) => (nodes.find((entry) => entry.name === name)?.generation ?? 0) > (before.get(name) ?? 0)) &&
        condition(now, 'Rotating') === 'False' &&
        condition(now, 'Ready') === 'True' &&
        (now.rotationRequests ?? []).length === 0
      );
    },
    run.timeoutMs,
    500,
  );
  const statusSeconds = (Date.now() - started) / 1000;
  await waitFor(`round ${index}: one SA per direction again`, async () => settled(run), run.timeoutMs, 500);
  const settledSeconds = (Date.now() - started) / 1000;
  const nodeSeconds: Record<string, number> = {};
  for (const [node, rotation] of await rotations(run)) {
    if (rotation?.completedAt !== undefined) nodeSeconds[node] = (Date.parse(rotation.completedAt) - Date.parse(rotation.startedAt)) / 1000;
  }
  run.log(`round ${index}: status ${statusSeconds.toFixed(1)} s, settled ${settledSeconds.toFixed(1)} s, nodes ${JSON.stringify(nodeSeconds)}`);
  return { round: index, statusSeconds, settledSeconds, nodeSeconds };
}

/**
 * The guest's MemTotal and MemAvailable and the agents' resident memory. The pattern is anchored
 * at the node binary: this script's own shells have the words in their command lines too.
 */
async function guestMemory(vm: Vm): Promise<string> {
  const script = `grep -E '^(MemTotal|MemAvailable):' /proc/meminfo | tr -s ' ' | tr '\\n' ' '; for pid in $(pgrep -f '^[^ ]*node [^ ]*ipsec-operator.mjs agent '); do grep '^VmRSS:' /proc/$pid/status; done | awk '{ kb += $2; n++ } END { printf "agents %d, RSS %d MiB", n, kb / 1024 }'`;
  return (await vm.sh(script).then((result) => result.stdout, (error: Error) => `not read: ${error.message}`)).trim();
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Boots the test VM and the control plane, starts the controller and one agent per node, applies
 * the mesh, waits for it Ready and settled, times `rounds` rotation rounds; cleans all of it up,
 * also when a wait fails. dist/ must be built (the agents run the bundle).
 */
export async function measureMeshRotation(options: MeshRotationOptions): Promise<MeshRotationResult> {
  checkMeshRotationOptions(options);
  const log = options.log ?? (() => undefined);
  const nodes = Array.from({ length: options.nodes }, (_, i) => String.fromCharCode('a'.charCodeAt(0) + i));
  const loadBefore = loadavg();
  let vm: Vm | undefined;
  let controlPlane: ControlPlane | undefined;
  let cluster: Cluster | undefined;
  const results: RoundResult[] = [];
  try {
    log(`booting the test VM (kernel ${options.kernel})`);
    vm = await bootVm({ image: await buildVmImage(options.kernel) });
    controlPlane = await startControlPlane();
    await warmCrypto(vm);
    cluster = await startCluster({ vm, kubeconfigPath: controlPlane.kubeconfigPath, nodes, resyncSeconds: options.resyncSeconds, log });
    const run: Run = { cluster, nodes, timeoutMs: options.timeoutMs, log };
    await cluster.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/ipsecmeshes.ipsec.xfrm.io']);
    for (const node of nodes) {
      const address = cluster.topology.node(node).ipv4!;
      await cluster.kubectl(['patch', 'node', node, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address }, { type: 'Hostname', address: node }] } })]);
      await cluster.kubectl(['label', 'node', node, `${LABEL}=${MESH}`, '--overwrite']);
    }
    const applied = Date.now();
    await cluster.kubectl(['apply', '-f', '-'], manifest(options));
    await waitFor('the mesh Ready', async () => condition(await status(run), 'Ready') === 'True', options.timeoutMs, 500);
    await waitFor('one SA per direction', async () => settled(run), options.timeoutMs, 500);
    const readySeconds = (Date.now() - applied) / 1000;
    log(`mesh Ready and settled ${readySeconds.toFixed(1)} s after apply (includes the agents' start in the guest)`);
    const memoryReady = await guestMemory(vm);
    log(`guest memory, mesh up: ${memoryReady}`);
    for (let index = 1; index <= options.rounds; index++) results.push(await round(run, index));
    const memoryAfter = await guestMemory(vm);
    log(`guest memory, after the rounds: ${memoryAfter}`);
    return {
      nodes: options.nodes,
      nodeNames: nodes,
      kernel: options.kernel,
      maxConcurrent: options.maxConcurrent,
      grace: options.grace,
      resyncSeconds: options.resyncSeconds,
      readySeconds,
      rounds: results,
      guestMemory: { ready: memoryReady, after: memoryAfter },
      loadBefore,
      loadAfter: loadavg(),
    };
  } finally {
    await cluster?.kubectl(['delete', 'ipsecmesh', MESH, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await cluster?.stop().catch((error: Error) => log(`cluster stop: ${error.message}`));
    await controlPlane?.stop().catch((error: Error) => log(`control plane stop: ${error.message}`));
    await vm?.shutdown().catch((error: Error) => log(`vm shutdown: ${error.message}`));
  }
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The run's heading, its load and the table of rounds with their median, as bench:mesh prints them. */
export function meshRotationReport(result: MeshRotationResult): string {
  const nodes = result.nodeNames;
  const s = (x: number) => `${x.toFixed(1)} s`;
  const nodeCells = (round: RoundResult) => nodes.map((node) => (round.nodeSeconds[node] === undefined ? '–' : `${round.nodeSeconds[node]} s`));
  const rows = result.rounds.map((round) => [String(round.round), s(round.statusSeconds), s(round.settledSeconds), ...nodeCells(round)]);
  const nodeMedian = nodes.map((node) => {
    const seen = result.rounds.flatMap((round) => (round.nodeSeconds[node] === undefined ? [] : [round.nodeSeconds[node]!]));
    return seen.length === 0 ? '–' : `${median(seen)} s`;
  });
  rows.push([`median of ${result.rounds.length}`, s(median(result.rounds.map((r) => r.statusSeconds))), s(median(result.rounds.map((r) => r.settledSeconds))), ...nodeMedian]);
  const load = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(' ');
  return [
    `IpsecMesh rotation round, ${result.nodes} nodes in the VM (kernel ${result.kernel}), maxConcurrent ${result.maxConcurrent}, grace ${result.grace}, agents resync ${result.resyncSeconds} s, no traffic`,
    `mesh Ready and settled after apply: ${s(result.readySeconds)}; load average before ${load(result.loadBefore)}, after ${load(result.loadAfter)}`,
    `guest memory, mesh up: ${result.guestMemory.ready}; after the rounds: ${result.guestMemory.after}`,
    '',
    table(['round', 'annotation → status done', 'annotation → old SAs gone', ...nodes.map((node) => `node ${node} rotation`)], rows),
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: String(MESH_ROTATION_DEFAULTS.rounds) },
      nodes: { type: 'string', default: String(MESH_ROTATION_DEFAULTS.nodes) },
      'max-concurrent': { type: 'string', default: String(MESH_ROTATION_DEFAULTS.maxConcurrent) },
      grace: { type: 'string', default: MESH_ROTATION_DEFAULTS.grace },
      'resync-seconds': { type: 'string', default: String(MESH_ROTATION_DEFAULTS.resyncSeconds) },
      kernel: { type: 'string', default: MESH_ROTATION_DEFAULTS.kernel },
      'timeout-seconds': { type: 'string', default: String(MESH_ROTATION_DEFAULTS.timeoutMs / 1000) },
      json: { type: 'string' },
    },
  });
  const log = (line: string) => process.stderr.write(`[bench:mesh] ${line}\n`);
  const options: MeshRotationOptions = {
    nodes: Number(values.nodes),
    rounds: Number(values.rounds),
    maxConcurrent: Number(values['max-concurrent']),
    grace: values.grace!,
    resyncSeconds: Number(values['resync-seconds']),
    kernel: values.kernel!,
    timeoutMs: Number(values['timeout-seconds']) * 1000,
    log,
  };
  checkMeshRotationOptions(options);
  log('building dist/');
  buildDist();
  const result = await measureMeshRotation(options);
  console.log(`\n${meshRotationReport(result)}`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
}

// Run as a script (npm run bench:mesh), not when bench/scale.ts imports the measurement.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (error: Error) => {
      process.stderr.write(`[bench:mesh] failed: ${error.stack ?? error.message}\n`);
      process.exit(1);
    },
  );
}
