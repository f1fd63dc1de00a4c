// Benchmark (not a test): the cluster at scale (issue 10). The real control plane
// (test/infra/controlplane), the controller and N agents (default 50), each a real process
// reconciling its own network namespace on the host kernel (policies only: the host has no
// ESP). IpsecPolicy objects are selected per node by label: policy i selects node i mod N,
// and one "fleet" policy selects every node. Measured, in one run:
//
//   - `kubectl apply --server-side` of every policy → each node's IpsecNodeState reports all of
//     its policies Applied (per node: p50/p99/max), and → every policy Ready in the controller's
//     status;
//   - one edit of the fleet policy → each node reports the new generation Applied (p50/p99);
//   - one agent stopped and started again → ready (its first reconcile converged);
//   - controller and agent CPU seconds and peak RSS, API requests per second by verb
//     (apiserver_request_total), open watches (apiserver_longrunning_requests);
//   - with `--mesh-nodes N` (off by default: it boots the test VM, whose TCG guest adds ten
//     minutes and more, and the phases above need none of it), after those: an IpsecMesh of N
//     nodes in the test VM (ESP needs the guest's kernel), the time for a rotation round to
//     complete (status done, old SAs gone), median of `--mesh-rounds`; bench/mesh.ts's
//     measurement, run after the host's processes are stopped so the two do not share the cores.
//
// Needs root (network namespaces) and the control plane build (scripts/build-controlplane.sh,
// done by `make bootstrap`). Cleans up every namespace, process and directory it made.
//
//   npm run bench:scale [-- --nodes 50] [--policies 2000] [--resync-seconds 30] [--json FILE]
//                       [--mesh-nodes N] [--mesh-rounds 1] [--mesh-max-concurrent 3] [--mesh-kernel 6.1]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, uptime as osUptime, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import type { ControlPlane } from '../test/infra/controlplane/controlplane.js';
import { agentArgs, buildProduct, CLI, NAMESPACE, processUsage, quantile, ready, removeBenchState, startBenchControlPlane, sumBy } from './cluster.js';
import { freePort } from '../test/infra/free-port.js';
import { IpsecResources } from '../src/kube/client.js';
import type { IpsecNodeState } from '../src/crd/node-state.js';
import { checkMeshRotationOptions, measureMeshRotation, median, MESH_ROTATION_DEFAULTS, type MeshRotationOptions, type MeshRotationResult } from './mesh.js';
import { appliedSetDigest } from '../src/crd/applied-set.js';

const NODE_LABEL = 'ipsec.xfrm.io/node';
const FLEET = 'scale-fleet';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '50' },
    policies: { type: 'string', default: '2000' },
    'resync-seconds': { type: 'string', default: '30' },
    /** How long to wait for a phase to converge before giving up on it. */
    'timeout-seconds': { type: 'string', default: '600' },
    json: { type: 'string' },
    /** The mesh phase: 0 (the default) leaves it out. */
    'mesh-nodes': { type: 'string', default: '0' },
    'mesh-rounds': { type: 'string', default: '1' },
    'mesh-max-concurrent': { type: 'string', default: String(MESH_ROTATION_DEFAULTS.maxConcurrent) },
    'mesh-kernel': { type: 'string', default: MESH_ROTATION_DEFAULTS.kernel },
  },
});
const NODES = Number(values.nodes);
const POLICIES = Number(values.policies);
const TIMEOUT_MS = Number(values['timeout-seconds']) * 1000;
if (!Number.isInteger(NODES) || NODES < 1 || NODES > 250) throw new Error('--nodes must be 1..250');
if (!Number.isInteger(POLICIES) || POLICIES < NODES + 1) throw new Error('--policies must be more than --nodes');
const MESH: MeshRotationOptions | undefined =
  Number(values['mesh-nodes']) === 0
    ? undefined
    : { ...MESH_ROTATION_DEFAULTS, nodes: Number(values['mesh-nodes']), rounds: Number(values['mesh-rounds']), maxConcurrent: Number(values['mesh-max-concurrent']), kernel: values['mesh-kernel']!, log: (line) => process.stderr.write(`[bench:scale mesh] ${line}\n`) };
if (MESH) checkMeshRotationOptions(MESH);

const log = (line: string) => process.stderr.write(`[bench:scale] ${line}\n`);
const nodeName = (i: number) => `scale-n${String(i).padStart(3, '0')}`;
// Not "ipsecop-": other tests clean those up by prefix.
const netnsName = (i: number) => `bscale-${process.pid}-${i}`;

interface Agent {
  readonly node: string;
  readonly netns: string;
  readonly metricsPort: number;
  process: ChildProcess;
  output: string;
}

function policyManifest(index: number): Record<string, unknown> {
  const fleet = index === POLICIES - 1;
  const node = nodeName(index % NODES);
  return {
    apiVersion: 'ipsec.xfrm.io/v1alpha1',
    kind: 'IpsecPolicy',
    metadata: { name: fleet ? FLEET : `scale-p${String(index).padStart(5, '0')}` },
    spec: {
      nodeSelector: fleet ? { matchExpressions: [{ key: NODE_LABEL, operator: 'Exists' }] } : { matchLabels: { [NODE_LABEL]: node } },
      selector: { source: '10.199.0.1/32', destination: fleet ? '10.199.0.2/32' : `10.${200 + (index >> 16)}.${(index >> 8) & 255}.${index & 255}/32` },
      direction: 'out',
      templates: [{ protocol: 'esp', reqid: 1 }],
    },
  };
}

async function main(): Promise<void> {
  log(`building the product (tsc, bundle); load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  buildProduct(log);

  const scratch = mkdtempSync(join(tmpdir(), 'ipsecop-bench-scale-'));
  const made: { controlPlane?: ControlPlane; controller?: ChildProcess; agents: Agent[]; netns: string[] } = { agents: [], netns: [] };
  const stopAll = async () => {
    const stopping: Promise<unknown>[] = [];
    for (const child of [made.controller, ...made.agents.map((agent) => agent.process)]) {
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      stopping.push(new Promise((resolve) => child.once('exit', resolve)));
      child.kill('SIGTERM');
    }
    const timer = setTimeout(() => {
      for (const child of [made.controller, ...made.agents.map((agent) => agent.process)]) if (child && child.exitCode === null) child.kill('SIGKILL');
    }, 20_000);
    await Promise.all(stopping);
    clearTimeout(timer);
    await removeBenchState(made.netns, made.controlPlane, scratch);
  };
  const onSignal = () => {
    log('interrupted; cleaning up');
    void stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let result: Result;
  try {
    result = await run(scratch, made);
  } finally {
    await stopAll();
  }
  const mesh = MESH ? await meshPhase(MESH) : undefined;
  print(result, mesh);
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ ...result, ...(mesh ? { mesh } : {}) }, null, 2)}\n`);
  if (mesh && 'error' in mesh) process.exitCode = 1;
}

type MeshPhase = MeshRotationResult | { readonly nodes: number; readonly error: string };

/** bench/mesh.ts's measurement; a failure is reported in the table, not lost with the host's figures. */
async function meshPhase(options: MeshRotationOptions): Promise<MeshPhase> {
  log(`mesh phase: ${options.nodes} nodes in the test VM, ${options.rounds} round(s)`);
  try {
    return await measureMeshRotation(options);
  } catch (error) {
    log(`mesh phase failed: ${(error as Error).stack ?? String(error)}`);
    return { nodes: options.nodes, error: (error as Error).message.split('\n')[0]! };
  }
}

function meshRows(mesh: MeshPhase): [string, string, string][] {
  if ('error' in mesh) return [[`IpsecMesh of ${mesh.nodes} nodes in the VM: rotation round`, `failed: ${mesh.error}`, '']];
  const of = `median of ${mesh.rounds.length}`;
  const s = (seconds: number) => `${seconds.toFixed(1)} s`;
  const load = (l: readonly number[]) => l.map((x) => x.toFixed(1)).join(' ');
  const members = `IpsecMesh, ${mesh.nodes} nodes`;
  return [
    [`${members} in the VM (kernel ${mesh.kernel}, maxConcurrent ${mesh.maxConcurrent}, grace ${mesh.grace}, load ${load(mesh.loadBefore)} → ${load(mesh.loadAfter)}): apply → Ready, one SA per direction`, s(mesh.readySeconds), ''],
    [`${members}: rotation round, annotation → status done (${of})`, s(median(mesh.rounds.map((round) => round.statusSeconds))), ''],
    [`${members}: rotation round, annotation → old SAs gone (${of})`, s(median(mesh.rounds.map((round) => round.settledSeconds))), ''],
    [`${members}: guest memory after the rounds`, mesh.guestMemory.after, ''],
  ];
}

interface Latencies {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

interface Result {
  readonly nodes: number;
  readonly policies: number;
  readonly loadBefore: readonly number[];
  readonly loadAfter: readonly number[];
  readonly kubectlApplyMs: number;
  readonly createToNodeApplied: Latencies;
  /** Per node: from kubectl's return to the node applied (0 when it was done before). */
  readonly afterKubectl: Latencies;
  readonly createToAllReady: number;
  readonly editToNodeApplied: Latencies;
  readonly editToReady: number;
  readonly restartToReady: number;
  readonly restartChanges: number;
  readonly controller: { cpuSeconds: number; peakRssMb: number };
  readonly agents: { cpuSecondsTotal: number; cpuSecondsMax: number; peakRssMbMedian: number; peakRssMbMax: number };
  /** Per phase: requests per second by verb and resource (`POST events`). */
  readonly requestsPerSecond: Record<string, Record<string, number>>;
  /** Watches opened by the controller, the agents and the bench (the apiserver's own subtracted). */
  readonly openWatches: number;
  readonly baselineWatches: number;
  readonly benchWatches: number;
  /** Reconciles by result over the whole run (the agent restarted counts from its restart). */
  readonly controllerReconciles: Record<string, number>;
  readonly agentReconciles: Record<string, number>;
  /** A quiet period of one resync: what the cluster costs doing nothing. */
  readonly quietSeconds: number;
}

function latencies(values: number[]): Latencies {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? Number.NaN };
}

async function run(scratch: string, made: { controlPlane?: ControlPlane; controller?: ChildProcess; agents: Agent[]; netns: string[] }): Promise<Result> {
  const loadBefore = loadavg();
  log('starting the control plane');
  const { kubeconfig, admin, kc } = await startBenchControlPlane(join(scratch, 'controlplane'), (controlPlane) => (made.controlPlane = controlPlane));
  const openWatches = async () => [...sumBy(await kc(['get', '--raw', '/metrics']), 'apiserver_longrunning_requests', 'verb', (labels) => labels.includes('verb="WATCH"')).values()].reduce((a, b) => a + b, 0);
  // The apiserver's own informers watch too: counted before anything of ours starts.
  const baselineWatches = await openWatches();

  log(`creating ${NODES} Node objects and network namespaces`);
  const core = admin.makeApiClient(CoreV1Api);
  for (let i = 0; i < NODES; i++) {
    await core.createNode({ body: { metadata: { name: nodeName(i), labels: { [NODE_LABEL]: nodeName(i) } } } });
    execFileSync('ip', ['netns', 'add', netnsName(i)]);
    made.netns.push(netnsName(i));
  }

  const metrics = async (): Promise<string> => kc(['get', '--raw', '/metrics']);
  // By verb and resource: which objects a phase's writes go to (at 50 nodes the quiet period
  // showed 26 POSTs/s that the verb alone could not explain).
  const requestTotals = async () => sumBy(await metrics(), 'apiserver_request_total', ['verb', 'resource']);

  // The controller and the agents: the bundled CLI, as in a pod (admin credentials: RBAC is
  // not what this measures; the e2e layer runs them with the chart's).
  const controllerPort = await freePort();
  const controller = spawn(process.execPath, [CLI, 'controller', '--kubeconfig', kubeconfig, '--namespace', NAMESPACE, '--metrics-address', `127.0.0.1:${controllerPort}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, POD_NAME: 'bench-scale-controller' },
  });
  made.controller = controller;
  let controllerOutput = '';
  const keepController = (chunk: Buffer) => (controllerOutput = (controllerOutput + chunk.toString()).slice(-20_000));
  controller.stdout.on('data', keepController);
  controller.stderr.on('data', keepController);

  const startAgent = (agent: Omit<Agent, 'process' | 'output'> & Partial<Agent>): Agent => {
    const child = spawn(
      process.execPath,
      agentArgs({ node: agent.node, netns: agent.netns, kubeconfig, stateDir: join(scratch, 'state', agent.node), metricsPort: agent.metricsPort, resyncSeconds: values['resync-seconds']! }),
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const handle: Agent = { ...agent, process: child, output: '' };
    const keep = (chunk: Buffer) => (handle.output = (handle.output + chunk.toString()).slice(-20_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    return handle;
  };
  log(`starting the controller and ${NODES} agents`);
  for (let i = 0; i < NODES; i++) made.agents.push(startAgent({ node: nodeName(i), netns: netnsName(i), metricsPort: await freePort() }));

  const waitUntil = async (what: string, test: () => boolean | Promise<boolean>, everyMs = 20): Promise<number> => {
    const start = performance.now();
    while (!(await test())) {
      if (performance.now() - start > TIMEOUT_MS) {
        const dead = made.agents.filter((agent) => agent.process.exitCode !== null);
        throw new Error(`${what}: not within ${TIMEOUT_MS / 1000} s${dead.length ? `; agents exited: ${dead.map((agent) => `${agent.node}:\n${agent.output.slice(-2000)}`).join('\n')}` : ''}\ncontroller:\n${controllerOutput.slice(-3000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    return performance.now() - start;
  };
  const allReady = async () => (await Promise.all([controllerPort, ...made.agents.map((agent) => agent.metricsPort)].map(ready))).every(Boolean);
  const startupMs = await waitUntil('controller and agents ready', allReady, 250);
  log(`all ready in ${(startupMs / 1000).toFixed(1)} s`);

  // What the bench watches: node states (per-node convergence) and policies (controller status).
  const resources = new IpsecResources(admin);
  const nodeStates = resources.informer<IpsecNodeState>('ipsecnodestates');
  type PolicyObject = { metadata: { name: string; uid?: string; generation?: number }; status?: { observedGeneration?: number; conditions?: { type: string; status: string; observedGeneration?: number }[] } };
  const policies = resources.informer<PolicyObject & { kind?: string; apiVersion?: string }>('ipsecpolicies');
  /** Node → policy name → the generation it must report Applied. */
  const expected = new Map<string, Map<string, number>>();
  for (let i = 0; i < NODES; i++) expected.set(nodeName(i), new Map());
  for (let i = 0; i < POLICIES; i++) {
    const name = (policyManifest(i).metadata as { name: string }).name;
    if (i === POLICIES - 1) for (const map of expected.values()) map.set(name, 1);
    else expected.get(nodeName(i % NODES))!.set(name, 1);
  }
  const appliedAt = new Map<string, number>();
  let phaseStart = 0;
  /** Nodes whose state arrived before the bench saw the uid of one of their policies: checked again when it does. */
  const waitingForUid = new Set<string>();
  // A node applied what it must when its status lists no report and its applied set is the
  // expected one: the digest (src/crd/applied-set.ts) of those policies at those generations.
  const nodeApplied = (state: IpsecNodeState): boolean => {
    const node = state.spec?.nodeName ?? '';
    const want = expected.get(node);
    const status = state.status;
    if (!want || status?.applied === undefined || (status.resources?.length ?? 0) > 0) return false;
    const members = [];
    for (const [name, generation] of want) {
      const uid = policies.get(name)?.metadata.uid;
      if (uid === undefined) {
        waitingForUid.add(node);
        return false;
      }
      members.push({ kind: 'IpsecPolicy' as const, name, uid, generation });
    }
    const digest = appliedSetDigest(members);
    return status.applied.resources === digest.resources && status.applied.digest === digest.digest;
  };
  const onState = (state: IpsecNodeState) => {
    const node = state.spec?.nodeName ?? '';
    if (phaseStart > 0 && !appliedAt.has(node) && nodeApplied(state)) appliedAt.set(node, performance.now() - phaseStart);
  };
  nodeStates.addHandlers({ add: onState, update: (_old, state) => onState(state) });
  let readyPolicies = 0;
  const isReady = (policy: PolicyObject) => policy.status?.conditions?.some((condition) => condition.type === 'Ready' && condition.status === 'True' && condition.observedGeneration === policy.metadata.generation) ?? false;
  const readyNames = new Set<string>();
  const onPolicy = (policy: PolicyObject) => {
    if (isReady(policy)) readyNames.add(policy.metadata.name);
    else readyNames.delete(policy.metadata.name);
    readyPolicies = readyNames.size;
  };
  const recheckWaiting = () => {
    if (waitingForUid.size === 0) return;
    const nodes = [...waitingForUid];
    waitingForUid.clear();
    for (const node of nodes) {
      const state = nodeStates.get(node);
      if (state) onState(state);
    }
  };
  policies.addHandlers({
    add: (policy) => (onPolicy(policy), recheckWaiting()),
    update: (_old, policy) => onPolicy(policy),
    delete: (policy) => readyNames.delete(policy.metadata.name),
  });
  nodeStates.start();
  policies.start();
  await nodeStates.waitForSync();
  await policies.waitForSync();

  const usage = () => ({ controller: processUsage(controller.pid), agents: made.agents.map((agent) => processUsage(agent.process.pid)) });
  const phaseRates: Record<string, Record<string, number>> = {};
  const measurePhase = async <T>(name: string, body: () => Promise<T>): Promise<T> => {
    const before = await requestTotals();
    const start = performance.now();
    const value = await body();
    const seconds = (performance.now() - start) / 1000;
    const after = await requestTotals();
    phaseRates[name] = Object.fromEntries([...after].map(([verb, total]) => [verb, (total - (before.get(verb) ?? 0)) / seconds]).filter(([, rate]) => (rate as number) > 0));
    return value;
  };

  // 1. Create every policy with one kubectl apply.
  const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: Array.from({ length: POLICIES }, (_, i) => policyManifest(i)) });
  log(`kubectl apply of ${POLICIES} policies`);
  let kubectlApplyMs = 0;
  let createToAllReady = 0;
  await measurePhase('create', async () => {
    phaseStart = performance.now();
    await kc(['apply', '--server-side', '--field-manager', 'bench-scale', '-f', '-'], list);
    kubectlApplyMs = performance.now() - phaseStart;
    await waitUntil('every node applied its policies', () => appliedAt.size === NODES);
    createToAllReady = kubectlApplyMs + (await waitUntil('every policy Ready', () => readyPolicies === POLICIES));
  });
  const createToNodeApplied = latencies([...appliedAt.values()]);
  // The operator's own lag: after kubectl returned (kubectl sends one request per object, so at
  // 2,000 objects its own time dominates the figure above).
  const afterKubectl = latencies([...appliedAt.values()].map((at) => Math.max(0, at - kubectlApplyMs)));
  log(`created: nodes applied p50 ${createToNodeApplied.p50.toFixed(0)} ms, p99 ${createToNodeApplied.p99.toFixed(0)} ms; all Ready ${createToAllReady.toFixed(0)} ms`);

  // 2. One edit of the policy every node selects.
  for (const map of expected.values()) map.set(FLEET, 2);
  appliedAt.clear();
  let editToReady = 0;
  await measurePhase('edit', async () => {
    phaseStart = performance.now();
    await kc(['patch', 'ipsecpolicy', FLEET, '--type', 'merge', '-p', JSON.stringify({ spec: { priority: 100 } })]);
    await waitUntil('every node applied the edit', () => appliedAt.size === NODES);
    await waitUntil('the edited policy Ready', () => readyNames.has(FLEET) && policies.get(FLEET)?.metadata.generation === 2);
    editToReady = performance.now() - phaseStart;
  });
  const editToNodeApplied = latencies([...appliedAt.values()]);
  phaseStart = 0;
  log(`edited: nodes applied p50 ${editToNodeApplied.p50.toFixed(0)} ms, p99 ${editToNodeApplied.p99.toFixed(0)} ms`);

  // 3. Quiet: one resync period with nothing to do (what a steady cluster costs).
  const quietSeconds = Number(values['resync-seconds']);
  const quietBefore = usage();
  await measurePhase('quiet', () => new Promise((resolve) => setTimeout(resolve, quietSeconds * 1000)));
  const quietAfter = usage();
  log(`quiet ${quietSeconds} s: controller ${(quietAfter.controller.cpuSeconds - quietBefore.controller.cpuSeconds).toFixed(2)} CPU s`);

  // 4. One agent stopped and started again.
  const victim = made.agents[0]!;
  const exited = new Promise((resolve) => victim.process.once('exit', resolve));
  victim.process.kill('SIGTERM');
  await exited;
  let restartToReady = 0;
  await measurePhase('restart', async () => {
    const start = performance.now();
    made.agents[0] = startAgent(victim);
    await waitUntil('the restarted agent ready', () => ready(victim.metricsPort), 10);
    restartToReady = performance.now() - start;
  });
  const restartMetrics = await (await fetch(`http://127.0.0.1:${victim.metricsPort}/metrics`)).text();
  const restartChanges = [...sumBy(restartMetrics, 'ipsec_operator_kernel_changes_total', 'operation').values()].reduce((a, b) => a + b, 0);

  const watches = await openWatches();
  const scrape = async (port: number) => {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    } catch {
      return '';
    }
  };
  const controllerMetrics = await scrape(controllerPort);
  const agentMetrics = await Promise.all(made.agents.map((agent) => scrape(agent.metricsPort)));
  const reconciles = (text: string) => Object.fromEntries(sumBy(text, 'ipsec_operator_reconcile_total', 'result'));
  const agentReconciles: Record<string, number> = {};
  for (const text of agentMetrics) for (const [result, count] of Object.entries(reconciles(text))) agentReconciles[result] = (agentReconciles[result] ?? 0) + count;
  const end = usage();
  nodeStates.stop();
  policies.stop();
  const agentCpu = end.agents.map((agent) => agent.cpuSeconds);
  const agentRss = end.agents.map((agent) => agent.peakRssMb).sort((a, b) => a - b);
  return {
    nodes: NODES,
    policies: POLICIES,
    loadBefore,
    loadAfter: loadavg(),
    kubectlApplyMs,
    createToNodeApplied,
    afterKubectl,
    createToAllReady,
    editToNodeApplied,
    editToReady,
    restartToReady,
    restartChanges,
    controller: { cpuSeconds: end.controller.cpuSeconds, peakRssMb: end.controller.peakRssMb },
    agents: { cpuSecondsTotal: agentCpu.reduce((a, b) => a + b, 0), cpuSecondsMax: Math.max(...agentCpu), peakRssMbMedian: quantile(agentRss, 0.5), peakRssMbMax: agentRss.at(-1) ?? 0 },
    requestsPerSecond: phaseRates,
    openWatches: watches - baselineWatches,
    baselineWatches,
    benchWatches: 2,
    controllerReconciles: reconciles(controllerMetrics),
    agentReconciles,
    quietSeconds,
  };
}

function print(result: Result, mesh?: MeshPhase): void {
  const ms = (value: number) => (value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${value.toFixed(0)} ms`);
  const counts = (byResult: Record<string, number>) =>
    Object.entries(byResult)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, count]) => `${name} ${count}`)
      .join(', ') || '0';
  const verdict = (value: number, target: number) => (value <= target ? 'met' : `missed (${(value / target).toFixed(1)}×)`);
  const rows: [string, string, string][] = [
    [`kubectl apply --server-side of ${result.policies} policies`, ms(result.kubectlApplyMs), ''],
    ['create → every node applied: p50', ms(result.createToNodeApplied.p50), ''],
    ['create → every node applied: p99', ms(result.createToNodeApplied.p99), `≤ 1 s: ${verdict(result.createToNodeApplied.p99, 1000)}`],
    ['create → every node applied: max', ms(result.createToNodeApplied.max), ''],
    ['kubectl returned → every node applied: p50 / p99', `${ms(result.afterKubectl.p50)} / ${ms(result.afterKubectl.p99)}`, ''],
    ['create → every policy Ready (controller status)', ms(result.createToAllReady), ''],
    ['one edit → every node applied: p50', ms(result.editToNodeApplied.p50), ''],
    ['one edit → every node applied: p99', ms(result.editToNodeApplied.p99), `≤ 1 s: ${verdict(result.editToNodeApplied.p99, 1000)}`],
    ['one edit → Ready (controller status)', ms(result.editToReady), ''],
    [`agent restarted → ready (kernel changes: ${result.restartChanges})`, ms(result.restartToReady), ''],
    ['controller: CPU seconds, peak RSS', `${result.controller.cpuSeconds.toFixed(1)} s, ${result.controller.peakRssMb.toFixed(0)} MB`, ''],
    [`agents (${result.nodes}): CPU seconds total / max`, `${result.agents.cpuSecondsTotal.toFixed(1)} s / ${result.agents.cpuSecondsMax.toFixed(1)} s`, ''],
    ['agents: peak RSS median / max', `${result.agents.peakRssMbMedian.toFixed(0)} MB / ${result.agents.peakRssMbMax.toFixed(0)} MB`, ''],
    [`open watches: controller + agents + the bench's ${result.benchWatches} (apiserver's own ${result.baselineWatches} not counted)`, String(result.openWatches), ''],
    ['controller reconciles by result', counts(result.controllerReconciles), ''],
    ['agent reconciles by result (all agents)', counts(result.agentReconciles), ''],
  ];
  for (const [phase, rates] of Object.entries(result.requestsPerSecond)) {
    const text = Object.entries(rates)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([verbAndResource, rate]) => `${verbAndResource} ${rate.toFixed(1)}`)
      .join(', ');
    rows.push([`API requests/s by verb and resource, ${phase}${phase === 'quiet' ? ` (${result.quietSeconds} s, nothing changing)` : ''}`, text || '0', '']);
  }
  if (mesh) rows.push(...meshRows(mesh));
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length), ['what', 'measured', 'target'][column]!.length));
  const line = (cells: readonly string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  const out = [
    `bench:scale — ${result.nodes} nodes (agents in their own network namespaces, host kernel), ${result.policies} IpsecPolicies (one per node by label, one on every node)`,
    `load average before ${result.loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${result.loadAfter.map((l) => l.toFixed(2)).join(' ')} (uptime ${(osUptime() / 3600).toFixed(1)} h)`,
    '',
    line(['what', 'measured', 'target']),
    line(widths.map((width) => '-'.repeat(width))),
    ...rows.map(line),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
