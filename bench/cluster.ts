// What the cluster benchmarks share (bench/scale.ts: 50 agents; bench/agent.ts: one agent at
// 10,000 entries): building the bundle users run, the real control plane with the CRDs
// installed, the agent's command line, and what /proc and the metrics endpoints say.
// Not a test: nothing here asserts a timing.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../test/infra/controlplane/controlplane.js';
import { loadKubeConfig } from '../test/infra/controlplane/kubeconfig.js';
import { check, kubectl } from '../test/infra/controlplane/tools.js';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** The bundled CLI: the code path users run (`ipsec-operator agent`, `controller`). */
export const CLI = join(ROOT, 'dist/bundle/ipsec-operator.mjs');
export const NAMESPACE = 'ipsec-operator';

/** Builds dist/ and the bundle, so that the bench measures the checkout, not a stale build. */
export function buildProduct(log: (line: string) => void): void {
  try {
    execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    log(`warning: tsc reported errors (dist/ was emitted anyway): ${String((error as { stdout?: Buffer }).stdout ?? '').split('\n').slice(0, 3).join(' | ')}`);
  }
  execFileSync(process.execPath, ['scripts/bundle.mjs'], { cwd: ROOT, stdio: 'inherit' });
}

export type Kubectl = (args: string[], input?: string) => Promise<string>;

export interface BenchControlPlane {
  readonly controlPlane: ControlPlane;
  readonly kubeconfig: string;
  readonly admin: KubeConfig;
  readonly kc: Kubectl;
}

/**
 * The control plane with the operator's CRDs established and its namespace made. `started` is
 * called as soon as there is something to stop, so that a failure after it still cleans up.
 */
export async function startBenchControlPlane(dataDir: string, started: (controlPlane: ControlPlane) => void): Promise<BenchControlPlane> {
  const controlPlane = await startControlPlane({ dataDir });
  started(controlPlane);
  const kubeconfig = controlPlane.kubeconfigPath;
  const admin = loadKubeConfig(kubeconfig);
  const kc: Kubectl = (args, input) => check(kubectl(args, { kubeconfig, ...(input === undefined ? {} : { input }) }), `kubectl ${args.slice(0, 3).join(' ')}`);
  await kc(['apply', '--server-side', '-f', join(ROOT, 'deploy/crds')]);
  await kc(['wait', '--for=condition=Established', '--timeout=60s', 'crd/securityassociations.ipsec.xfrm.io', 'crd/ipsecpolicies.ipsec.xfrm.io', 'crd/ipsecnodestates.ipsec.xfrm.io']);
  await kc(['create', 'namespace', NAMESPACE]);
  return { controlPlane, kubeconfig, admin, kc };
}

export interface AgentCommand {
  readonly node: string;
  readonly netns: string;
  readonly kubeconfig: string;
  readonly stateDir: string;
  readonly metricsPort: number;
  readonly resyncSeconds: string;
}

/** `ipsec-operator agent …` as a DaemonSet pod runs it, one network namespace per node. */
export function agentArgs(agent: AgentCommand): string[] {
  return [CLI, 'agent', '--node-name', agent.node, '--netns', agent.netns, '--namespace', NAMESPACE, '--kubeconfig', agent.kubeconfig, '--state-dir', agent.stateDir, '--metrics-address', `127.0.0.1:${agent.metricsPort}`, '--resync-seconds', agent.resyncSeconds];
}

/** After the processes are stopped: the network namespaces, the control plane, the scratch directory. */
export async function removeBenchState(netnsNames: readonly string[], controlPlane: ControlPlane | undefined, scratch: string): Promise<void> {
  for (const netns of netnsNames) {
    try {
      execFileSync('ip', ['netns', 'delete', netns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  await controlPlane?.stop();
  rmSync(scratch, { recursive: true, force: true });
}

/** Whether a controller's or agent's /readyz answers 200. */
export async function ready(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
  } catch {
    return false;
  }
}

/** CPU seconds (user + system) and peak RSS of a live process, from /proc. */
export function processUsage(pid: number | undefined): { cpuSeconds: number; rssMb: number; peakRssMb: number } {
  if (pid === undefined) return { cpuSeconds: 0, rssMb: 0, peakRssMb: 0 };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state is [0], utime [11], stime [12] (proc(5) numbers 14 and 15).
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { cpuSeconds: ticks / CLOCK_TICKS, rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024 };
  } catch {
    return { cpuSeconds: 0, rssMb: 0, peakRssMb: 0 };
  }
}
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Sums of a Prometheus metric's samples by the value of `label` (by the values of several, joined by a space), from the text format. */
export function sumBy(metrics: string, name: string, label: string | readonly string[], filter: (labels: string) => boolean = () => true): Map<string, number> {
  const sums = new Map<string, number>();
  const pattern = new RegExp(`^${name}\\{([^}]*)\\} ([0-9.e+-]+)$`, 'gm');
  const labels = typeof label === 'string' ? [label] : label;
  for (const match of metrics.matchAll(pattern)) {
    if (!filter(match[1]!)) continue;
    const value = labels.map((one) => new RegExp(`(?:^|,)${one}="([^"]*)"`).exec(match[1]!)?.[1] ?? '').join(' ');
    sums.set(value, (sums.get(value) ?? 0) + Number(match[2]));
  }
  return sums;
}
