// Benchmark (not a test): one agent at table size (issue 10's agent targets). The real control
// plane, the controller and the bundled `ipsec-operator agent` reconciling a fresh network
// namespace on the host kernel (policies only: the host has no ESP). Measured, in one run:
//
//   - `kubectl apply` of `--policies` IpsecPolicies (default 10,000) selecting the node →
//     the agent owns every one of them in the kernel (its owned_policies gauge, checked against
//     `ip xfrm policy count`); the agent's peak RSS (VmHWM) at that moment, and its RSS after
//     `--resyncs` full resyncs with nothing to do;
//   - drift repair: `--drifts` times (spread over the table) one policy deleted with
//     `ip xfrm policy delete` in the namespace; from the kernel's delete event to its re-add
//     event, both timestamped by one `ip -ts -o xfrm monitor policy` in that namespace (the
//     agent's own `elapsedMs` of the repair beside it); the same at `--small-policies` (100);
//   - with `--cpu-prof`, where the agent's CPU went during the drift trials (samples of a
//     `node --cpu-prof` of the agent, cut to the trials' window).
//
// Needs root (network namespaces) and the control plane build (scripts/build-controlplane.sh).
// Cleans up every namespace, process and directory it made.
//
//   npm run bench:agent [-- --policies 10000] [--drifts 20] [--small-policies 100]
//                       [--resync-seconds 10] [--resyncs 3] [--cpu-prof] [--json FILE]
//                       [--agent-node-flags="--trace-gc …"]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import type { ControlPlane } from '../test/infra/controlplane/controlplane.js';
import { freePort } from '../test/infra/free-port.js';
import { agentArgs, buildProduct, CLI, NAMESPACE, processUsage, quantile, ready, removeBenchState, startBenchControlPlane, sumBy, type Kubectl } from './cluster.js';

const { values } = parseArgs({
  options: {
    policies: { type: 'string', default: '10000' },
    drifts: { type: 'string', default: '20' },
    'small-policies': { type: 'string', default: '100' },
    'resync-seconds': { type: 'string', default: '10' },
    resyncs: { type: 'string', default: '3' },
    'timeout-seconds': { type: 'string', default: '900' },
    'cpu-prof': { type: 'boolean', default: false },
    // Extra node flags for the agent (space-separated), e.g. "--trace-gc" or
    // "--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=/tmp/x": to see where its memory goes.
    'agent-node-flags': { type: 'string', default: '' },
    json: { type: 'string' },
  },
});
const POLICIES = Number(values.policies);
const SMALL = Number(values['small-policies']);
const DRIFTS = Number(values.drifts);
const RESYNCS = Number(values.resyncs);
const TIMEOUT_MS = Number(values['timeout-seconds']) * 1000;
for (const [name, value, max] of [['--policies', POLICIES, 60_000], ['--small-policies', SMALL, 60_000], ['--drifts', DRIFTS, 1000], ['--resyncs', RESYNCS, 100]] as const) {
  if (!Number.isInteger(value) || value < 1 || value > max) throw new Error(`${name} must be an integer 1..${max}`);
}
if (DRIFTS > Math.min(POLICIES, SMALL)) throw new Error('--drifts must not exceed the policies of either table');

const NODE_LABEL = 'ipsec.xfrm.io/node';
const log = (line: string) => process.stderr.write(`[bench:agent] ${line}\n`);
const loadNow = () => loadavg().map((l) => l.toFixed(1)).join(' ');

/** One table under test: a node, its namespace, the policies that select it. */
interface Table {
  readonly node: string;
  readonly netns: string;
  readonly policies: number;
  /** Second octet of its addresses: the two tables never share a selector. */
  readonly net: number;
}
const source = (table: Table) => `10.${table.net}.0.1/32`;
const destination = (table: Table, index: number) => `10.${table.net + 1 + (index >> 16)}.${(index >> 8) & 255}.${index & 255}/32`;

function policyList(table: Table): string {
  const items = Array.from({ length: table.policies }, (_, index) => ({
    apiVersion: 'ipsec.xfrm.io/v1alpha1',
    kind: 'IpsecPolicy',
    metadata: { name: `${table.node}-p${String(index).padStart(5, '0')}` },
    spec: { nodeSelector: { matchLabels: { [NODE_LABEL]: table.node } }, direction: 'out', selector: { source: source(table), destination: destination(table, index) }, templates: [{ protocol: 'esp', reqid: 1 }] },
  }));
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items });
}

interface Made {
  controlPlane?: ControlPlane;
  readonly children: ChildProcess[];
  readonly netns: string[];
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

async function until(what: string, test: () => boolean | Promise<boolean>, everyMs: number, timeoutMs = TIMEOUT_MS): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await test()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

// --- the kernel's own clock of the drift: `ip -ts -o xfrm monitor policy` ---

interface MonitorEvent {
  readonly deleted: boolean;
  readonly destination: string;
  /** The monitor's wall-clock timestamp, in microseconds. */
  readonly micros: number;
}

/** `[2026-12-03T19:18:08.271912] Deleted src 10.0.0.1/32 dst 10.0.0.2/32 …` → an event. */
function parseMonitorLine(line: string): MonitorEvent | undefined {
  const match = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\] (Deleted )?src \S+ dst (\S+)/.exec(line);
  if (!match) return undefined;
  return { deleted: match[3] !== undefined, destination: match[4]!, micros: Date.parse(`${match[1]}Z`) * 1000 + Number(match[2]) };
}

class PolicyMonitor {
  readonly #process: ChildProcess;
  readonly #events: MonitorEvent[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(netns: string, made: Made) {
    this.#process = spawn('ip', ['-n', netns, '-ts', '-o', 'xfrm', 'monitor', 'policy'], { stdio: ['ignore', 'pipe', 'inherit'] });
    made.children.push(this.#process);
    createInterface({ input: this.#process.stdout! }).on('line', (line) => {
      const event = parseMonitorLine(line);
      if (!event) return;
      this.#events.push(event);
      for (const wake of this.#waiters) wake();
    });
  }

  /** The first event after position `from` that matches, and its position. */
  async next(from: number, match: (event: MonitorEvent) => boolean, timeoutMs: number): Promise<{ event: MonitorEvent; at: number }> {
    const deadline = performance.now() + timeoutMs;
    for (let at = from; ; ) {
      for (; at < this.#events.length; at++) if (match(this.#events[at]!)) return { event: this.#events[at]!, at };
      const left = deadline - performance.now();
      if (left <= 0) throw new Error('no such kernel event within the timeout');
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  get position(): number {
    return this.#events.length;
  }

  stop(): Promise<void> {
    return stop(this.#process);
  }
}

interface DriftResult {
  readonly policies: number;
  /** Kernel delete event → re-add event, ms, in trial order. */
  readonly kernelMs: number[];
  /** The agent's own figure (`repaired drift` … elapsedMs): its first event → repair applied. */
  readonly agentMs: number[];
  readonly load: string;
  /** Self time (ms) per function in the agent during the trials, with --cpu-prof. */
  profile?: { windowMs: number; busyMs: number; top: { name: string; ms: number }[] };
  /** The trials' window on the monotonic clock (µs), for the profile. */
  readonly window: readonly [number, number];
}

async function driftTrials(table: Table, monitor: PolicyMonitor, agentLog: string): Promise<DriftResult> {
  const loggedBefore = repairsLogged(agentLog).length;
  const kernelMs: number[] = [];
  const start = monotonicMicros();
  for (let trial = 0; trial < DRIFTS; trial++) {
    const index = Math.floor(((trial + 0.5) * table.policies) / DRIFTS);
    const dst = destination(table, index);
    const from = monitor.position;
    execFileSync('ip', ['-n', table.netns, 'xfrm', 'policy', 'delete', 'src', source(table), 'dst', dst, 'dir', 'out']);
    const deleted = await monitor.next(from, (event) => event.deleted && event.destination === dst, 10_000);
    const added = await monitor.next(deleted.at + 1, (event) => !event.deleted && event.destination === dst, 60_000);
    kernelMs.push((added.event.micros - deleted.event.micros) / 1000);
    // Let the repair's reconcile finish (its verify, its status write) before the next drift.
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  const window = [start, monotonicMicros()] as const;
  // A repair the agent made without an event's timestamp (a resync found it first) logs no
  // elapsedMs: wait a little for the last lines, not for a count that may never come.
  await until('the agent logged every repair', () => repairsLogged(agentLog).length >= loggedBefore + DRIFTS, 100, 10_000).catch(() => 0);
  return { policies: table.policies, kernelMs, agentMs: repairsLogged(agentLog).slice(loggedBefore), load: loadNow(), window };
}

function repairsLogged(agentLog: string): number[] {
  const found: number[] = [];
  for (const line of readFileSync(agentLog, 'utf8').split('\n')) {
    if (!line.includes('repaired drift')) continue;
    const elapsed = (JSON.parse(line) as { elapsedMs?: number }).elapsedMs;
    if (elapsed !== undefined) found.push(elapsed);
  }
  return found;
}

const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

// --- where the agent's CPU went during the trials (V8's profile clock is the monotonic one) ---

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

function profileWindow(profile: CpuProfile, [from, to]: readonly [number, number], top = 12): NonNullable<DriftResult['profile']> {
  const label = new Map(profile.nodes.map(({ id, callFrame }) => [id, `${callFrame.functionName || '(anonymous)'} ${callFrame.url.split('/').pop() ?? ''}:${callFrame.lineNumber + 1}`]));
  const spent = new Map<string, number>();
  let clock = profile.startTime;
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    clock += profile.timeDeltas[i] ?? 0;
    if (clock < from || clock > to) continue;
    const name = label.get(profile.samples[i]!) ?? '?';
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    spent.set(name, (spent.get(name) ?? 0) + ms);
    if (!name.startsWith('(idle)')) busy += ms;
  }
  const ranked = [...spent].filter(([name]) => !name.startsWith('(idle)')).sort((a, b) => b[1] - a[1]);
  return { windowMs: (to - from) / 1000, busyMs: busy, top: ranked.slice(0, top).map(([name, ms]) => ({ name, ms })) };
}

// --- the run ---

interface AgentHandle {
  readonly process: ChildProcess;
  readonly log: string;
  readonly metricsPort: number;
  readonly profileDir: string;
}

async function startAgent(table: Table, kubeconfig: string, scratch: string, made: Made): Promise<AgentHandle> {
  const metricsPort = await freePort();
  const logFile = join(scratch, `${table.node}.log`);
  const profileDir = join(scratch, `${table.node}-profile`);
  const node = [...(values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []), ...values['agent-node-flags']!.split(' ').filter(Boolean)];
  const args = agentArgs({ node: table.node, netns: table.netns, kubeconfig, stateDir: join(scratch, 'state', table.node), metricsPort, resyncSeconds: values['resync-seconds']! });
  const output = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...node, ...args], { stdio: ['ignore', output, output] });
  made.children.push(child);
  await until(`the agent of ${table.node} ready`, () => ready(metricsPort), 100);
  return { process: child, log: logFile, metricsPort, profileDir };
}

async function ownedPolicies(agent: AgentHandle): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    return [...sumBy(text, 'ipsec_operator_owned_policies', 'direction').values()].reduce((a, b) => a + b, 0);
  } catch {
    return -1;
  }
}

function kernelPolicies(netns: string): number {
  const text = execFileSync('ip', ['-n', netns, 'xfrm', 'policy', 'count'], { encoding: 'utf8' });
  // "\t SPD IN  0 OUT 10000 FWD 0"
  return [...text.matchAll(/\b(?:IN|OUT|FWD)\s+(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
}

interface TableResult {
  readonly policies: number;
  readonly kubectlMs: number;
  readonly createToOwnedMs: number;
  readonly peakRssAtAppliedMb: number;
  readonly steadyRssMb: number;
  readonly peakRssEndMb: number;
  readonly agentCpuSeconds: number;
  readonly load: string;
}

async function converge(table: Table, agent: AgentHandle, kc: Kubectl): Promise<TableResult> {
  log(`kubectl apply of ${table.policies} policies selecting ${table.node}; load ${loadNow()}`);
  const start = performance.now();
  await kc(['apply', '--server-side', '--field-manager', 'bench-agent', '-f', '-'], policyList(table));
  const kubectlMs = performance.now() - start;
  await until(`${table.node} owns ${table.policies} policies`, async () => (await ownedPolicies(agent)) === table.policies, 200);
  const createToOwnedMs = performance.now() - start;
  const applied = processUsage(agent.process.pid);
  const inKernel = kernelPolicies(table.netns);
  if (inKernel !== table.policies) throw new Error(`the agent reports ${table.policies} owned policies but the kernel holds ${inKernel}`);
  log(`${table.node}: every policy in the kernel ${(createToOwnedMs / 1000).toFixed(1)} s after the apply; VmHWM ${applied.peakRssMb.toFixed(0)} MB; waiting ${RESYNCS} resyncs`);
  await new Promise((resolve) => setTimeout(resolve, RESYNCS * Number(values['resync-seconds']) * 1000));
  const steady = processUsage(agent.process.pid);
  return { policies: table.policies, kubectlMs, createToOwnedMs, peakRssAtAppliedMb: applied.peakRssMb, steadyRssMb: steady.rssMb, peakRssEndMb: steady.peakRssMb, agentCpuSeconds: steady.cpuSeconds, load: loadNow() };
}

async function measureTable(table: Table, context: { kubeconfig: string; kc: Kubectl; scratch: string; made: Made }): Promise<{ table: TableResult; drift: DriftResult }> {
  execFileSync('ip', ['netns', 'add', table.netns]);
  context.made.netns.push(table.netns);
  const agent = await startAgent(table, context.kubeconfig, context.scratch, context.made);
  const converged = await converge(table, agent, context.kc);
  const monitor = new PolicyMonitor(table.netns, context.made);
  await new Promise((resolve) => setTimeout(resolve, 500)); // the monitor's socket bound
  log(`${table.node}: ${DRIFTS} drift trials; load ${loadNow()}`);
  const drift = await driftTrials(table, monitor, agent.log);
  await monitor.stop();
  await stop(agent.process);
  if (values['cpu-prof']) {
    const file = readdirSync(agent.profileDir).find((name) => name.endsWith('.cpuprofile'));
    if (file) drift.profile = profileWindow(JSON.parse(readFileSync(join(agent.profileDir, file), 'utf8')) as CpuProfile, drift.window);
  }
  return { table: converged, drift };
}

interface Result {
  readonly loadBefore: string;
  readonly loadAfter: string;
  readonly big: { table: TableResult; drift: DriftResult };
  readonly small: { table: TableResult; drift: DriftResult };
  readonly controller: { cpuSeconds: number; peakRssMb: number };
}

async function run(scratch: string, made: Made): Promise<Result> {
  const loadBefore = loadNow();
  log('starting the control plane');
  const { kubeconfig, admin, kc } = await startBenchControlPlane(join(scratch, 'controlplane'), (controlPlane) => (made.controlPlane = controlPlane));
  const big: Table = { node: 'bagent-big', netns: `bagent-${process.pid}-big`, policies: POLICIES, net: 100 };
  const small: Table = { node: 'bagent-small', netns: `bagent-${process.pid}-small`, policies: SMALL, net: 150 };
  const core = admin.makeApiClient(CoreV1Api);
  for (const table of [big, small]) await core.createNode({ body: { metadata: { name: table.node, labels: { [NODE_LABEL]: table.node } } } });
  const controllerPort = await freePort();
  const controllerLog = openSync(join(scratch, 'controller.log'), 'a');
  const controller = spawn(process.execPath, [CLI, 'controller', '--kubeconfig', kubeconfig, '--namespace', NAMESPACE, '--metrics-address', `127.0.0.1:${controllerPort}`], {
    stdio: ['ignore', controllerLog, controllerLog],
    env: { ...process.env, POD_NAME: 'bench-agent-controller' },
  });
  made.children.push(controller);
  await until('the controller ready', () => ready(controllerPort), 100);
  const context = { kubeconfig, kc, scratch, made };
  const bigResult = await measureTable(big, context);
  const smallResult = await measureTable(small, context);
  const controllerUsage = processUsage(controller.pid);
  return { loadBefore, loadAfter: loadNow(), big: bigResult, small: smallResult, controller: { cpuSeconds: controllerUsage.cpuSeconds, peakRssMb: controllerUsage.peakRssMb } };
}

function print(result: Result): void {
  const ms = (value: number) => (value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${value.toFixed(value < 10 ? 1 : 0)} ms`);
  const verdict = (value: number, target: number) => (value <= target ? 'met' : `missed by ${(value - target).toFixed(0)} (${(value / target).toFixed(1)}×)`);
  const spread = (values: readonly number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? Number.NaN };
  };
  const rows: [string, string, string][] = [];
  const { table } = result.big;
  rows.push(
    [`kubectl apply --server-side of ${table.policies} policies (load ${table.load})`, ms(table.kubectlMs), ''],
    [`create → every policy in the kernel, owned by the agent`, ms(table.createToOwnedMs), ''],
    [`agent peak RSS (VmHWM) at ${table.policies} policies applied`, `${table.peakRssAtAppliedMb.toFixed(0)} MB`, `≤ 100 MB (SAs + policies): ${verdict(table.peakRssAtAppliedMb, 100)}`],
    [`agent RSS after ${RESYNCS} resyncs of ${values['resync-seconds']} s / VmHWM then`, `${table.steadyRssMb.toFixed(0)} MB / ${table.peakRssEndMb.toFixed(0)} MB`, ''],
    [`agent CPU seconds to converge and resync`, `${table.agentCpuSeconds.toFixed(1)} s`, ''],
  );
  for (const { drift } of [result.big, result.small]) {
    const kernel = spread(drift.kernelMs);
    const agent = spread(drift.agentMs);
    rows.push(
      [`drift at ${drift.policies}: kernel delete → re-add, p50 / p99 / max of ${drift.kernelMs.length} (load ${drift.load})`, `${ms(kernel.p50)} / ${ms(kernel.p99)} / ${ms(kernel.max)}`, `≤ 100 ms: ${verdict(kernel.p99, 100)}`],
      [`drift at ${drift.policies}: the agent's elapsedMs, p50 / max of ${drift.agentMs.length}`, drift.agentMs.length ? `${ms(agent.p50)} / ${ms(agent.max)}` : 'none logged', ''],
    );
    if (drift.profile) rows.push([`drift at ${drift.policies}: agent CPU busy during the ${ms(drift.profile.windowMs)} of trials`, ms(drift.profile.busyMs), '']);
  }
  rows.push([`controller CPU seconds, peak RSS (whole run)`, `${result.controller.cpuSeconds.toFixed(1)} s, ${result.controller.peakRssMb.toFixed(0)} MB`, '']);
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length), ['what', 'measured', 'target'][column]!.length));
  const line = (cells: readonly string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  const out = [
    `bench:agent — one agent in its own network namespace (host kernel, policies only), ${table.policies} and ${result.small.table.policies} IpsecPolicies`,
    `load average before ${result.loadBefore}, after ${result.loadAfter}`,
    '',
    line(['what', 'measured', 'target']),
    line(widths.map((width) => '-'.repeat(width))),
    ...rows.map(line),
  ];
  for (const { drift } of [result.big, result.small]) {
    if (!drift.profile) continue;
    out.push('', `agent self time during the drift trials at ${drift.policies} (--cpu-prof):`, ...drift.profile.top.map(({ name, ms: spent }) => `  ${spent.toFixed(1).padStart(8)} ms  ${name}`));
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(): Promise<void> {
  log(`building the product (tsc, bundle); load ${loadNow()}`);
  buildProduct(log);
  const scratch = mkdtempSync(join(tmpdir(), 'ipsecop-bench-agent-'));
  mkdirSync(join(scratch, 'state'));
  const made: Made = { children: [], netns: [] };
  const cleanUp = async () => {
    await Promise.all(made.children.map(stop));
    await removeBenchState(made.netns, made.controlPlane, scratch);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void cleanUp().finally(() => process.exit(130)));
  }
  try {
    const result = await run(scratch, made);
    print(result);
    if (values.json) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
  } catch (error) {
    for (const name of readdirSync(scratch).filter((file) => file.endsWith('.log'))) log(`${name}, last lines:\n${readFileSync(join(scratch, name), 'utf8').slice(-3000)}`);
    throw error;
  } finally {
    await cleanUp();
  }
}

await main();
