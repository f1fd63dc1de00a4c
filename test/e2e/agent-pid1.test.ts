// The agent as PID 1 of its container (issue 8, item 9), on the real control plane and the VM's
// kernel: each agent runs as PID 1 of a PID namespace of its own (`unshare --pid --fork
// --mount-proc`, what a container runtime gives it). Node a's agent is SIGKILLed five times
// (after it converged, and right after it took the ledger lock, before its first reconcile)
// and started again each time, as a kubelet would: every time it starts — no refusal of the
// ledger lock left by the dead PID 1 — and converges without changing anything in the kernel
// (the tables compared with `ip -s`, counters aside; add times and policy indexes kept; an
// `ip xfrm monitor` on the node sees no change through the whole loop; the new process counts
// no kernel change). Then SIGTERM: the agent stops its components and exits 0, the kernel as
// it was. Without a SIGTERM handler the process would ignore the signal (PID 1 has no default
// actions) and the wait would end in a timeout.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';
import { startCluster, type Cluster } from '../infra/cluster/cluster.js';
import type { VmProcessStatus } from '../infra/vm/client.js';
import { warmCrypto } from '../support/vm-cli.js';
import { resourceStates, timed, waitFor } from './support.js';

const vm = vmFromInject();
const EXAMPLE = join(REPO_ROOT, 'examples/host-to-host');
const PID_NAMESPACE = ['unshare', '--pid', '--fork', '--mount-proc'];
const KILLS = 5;
/** Generous bounds for a slow emulated VM: liveness, not speed. */
const START_BOUND_MS = 180_000;
const SIGTERM_BOUND_MS = 30_000;

let cluster: Cluster;
const agent = (node: string) => cluster.agents.get(node)!;

/**
 * The kernel tables of a node, counters aside: byte/packet counts, use times and the replay
 * state move with traffic. Add times and policy indexes stay: a re-created entry changes them.
 */
async function tables(node: string): Promise<string> {
  const { stdout } = await cluster.topology.node(node).sh('ip -s xfrm state; ip -s xfrm policy');
  return stdout
    .replace(/anti-replay context:.*$/gm, '')
    .replace(/^\s*replay-window \d+ replay \d+ failed \d+$/gm, '')
    .replace(/\d+\(bytes\), \d+\(packets\)/g, 'N(bytes), N(packets)')
    .replace(/ use (?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|-)/g, ' use T');
}

/**
 * The agent process: the spawned `unshare` forks it, so it is unshare's only child. Its
 * NSpid line says which pid it has in each namespace: the last one is 1.
 */
async function agentProcess(node: string): Promise<{ pid: number; nspid: string }> {
  const { pid } = await vm.logs(agent(node).id);
  const found = await waitFor(`the agent of node ${node} under unshare (pid ${pid})`, async () => {
    const result = await vm.trySh(`cat /proc/${pid}/task/${pid}/children`);
    const child = Number(result.stdout.trim().split(/\s+/)[0]);
    if (!Number.isInteger(child) || child <= 0) return undefined;
    const status = await vm.trySh(`grep NSpid /proc/${child}/status`);
    return status.exitCode === 0 ? { pid: child, nspid: status.stdout.trim() } : undefined;
  }, 30_000, 100);
  return found;
}

async function agentLog(node: string): Promise<string> {
  return cluster.agentLogs(node);
}

/** Polls `probe` until it holds; fails at once (with the agent's log) if the agent exited. */
async function whileAgentRuns<T>(node: string, what: string, probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status: VmProcessStatus = await vm.logs(agent(node).id);
    if (!status.running) {
      throw new Error(`the agent of node ${node} exited (status ${String(status.exitCode)}, signal ${String(status.signal)}) while waiting for ${what}:\n${(status.stdout + status.stderr).slice(-4000)}`);
    }
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; agent log tail:\n${(await agentLog(node)).slice(-4000)}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** GET on the agent's metrics address, from inside the VM (busybox wget: exit 0 only on 200). */
async function agentHttp(node: string, path: string): Promise<string | undefined> {
  const result = await vm.trySh(`wget -q -T 5 -O - http://10.0.2.15:${agent(node).metricsPort}${path}`);
  return result.exitCode === 0 ? result.stdout : undefined;
}

/** Ready: caches synced and the kernel reconciled once by this process. */
function untilReady(node: string): Promise<string> {
  return whileAgentRuns(node, `node ${node}'s agent ready (caches synced, kernel reconciled)`, () => agentHttp(node, '/readyz'), START_BOUND_MS);
}

/** Kernel writes this agent process made (the counter starts at 0 with each process). */
async function kernelChanges(node: string): Promise<number> {
  const metrics = (await agentHttp(node, '/metrics')) ?? '';
  if (!metrics.includes('ipsec_operator_reconcile_total')) throw new Error(`no metrics from node ${node}'s agent:\n${metrics.slice(0, 2000)}`);
  return [...metrics.matchAll(/^ipsec_operator_kernel_changes_total\{[^}]*\} (\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

describe('the agent as PID 1 of its own PID namespace', () => {
  beforeAll(async () => {
    await warmCrypto(vm);
    cluster = await startCluster({ vm, kubeconfigPath: injectedKubeconfigPath(), nodes: ['a', 'b'], agentPrefix: PID_NAMESPACE, log: (line) => console.log(`[e2e] ${line}`) });
    await cluster.kubectl(['apply', '-f', EXAMPLE]);
    await timed('examples Ready with PID-1 agents', () =>
      waitFor('every resource Ready', async () => {
        const states = await resourceStates(cluster);
        return states.length > 0 && states.every((state) => state.ready === 'True');
      }, 300_000, 1000),
    );
  });
  afterAll(async () => {
    if (!cluster) return;
    console.log(`[e2e] agent a log tail:\n${(await agentLog('a').catch(() => '')).slice(-3000)}`);
    await cluster.kubectl(['delete', '-f', EXAMPLE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    // Agents (restarted if a test stopped one) remove the entries; then the finalizers go.
    for (const node of ['a', 'b']) {
      if (!(await vm.logs(agent(node).id)).running) await cluster.startAgent(node);
    }
    await waitFor('every object gone', async () => ((await resourceStates(cluster)).length === 0 ? true : undefined), 180_000, 1000).catch(() => undefined);
    await cluster.stop();
  });

  it('runs on the kernel its project asks for (e2e: 6.1, e2e-6.12: 6.12)', async () => {
    const asked = process.env['IPSEC_OPERATOR_VM_KERNEL'] ?? '6.1';
    const { kernel } = await vm.health();
    expect(kernel.startsWith(`${asked}.`) || kernel.startsWith(`${asked}-`), `asked ${asked}, booted ${kernel}`).toBe(true);
  });

  it('runs each agent as PID 1 and converges', async () => {
    for (const node of ['a', 'b']) {
      const { nspid } = await agentProcess(node);
      expect(nspid).toMatch(/^NSpid:\s+\d+\s+1$/);
      await untilReady(node);
    }
  });

  it(`restarts after each of ${KILLS} SIGKILLs and converges without changing the kernel, with no refusal of the ledger lock`, async () => {
    await untilReady('a');
    const before = await tables('a');
    expect(before).toContain('spi 0x00001000');
    const monitor = await vm.spawn({ argv: ['ip', '-n', cluster.topology.node('a').netns, 'xfrm', 'monitor'] });
    let restartedOnce = false;
    /** The running agent process converged, changed nothing, and never met a held lock. */
    const converged = async (label: string) => {
      await untilReady('a');
      const log = await agentLog('a');
      expect(log).toContain('agent started');
      expect(log).not.toMatch(/locked by|is locked|lock.*held/i);
      if (restartedOnce) expect(await kernelChanges('a'), `${label}: kernel changes by the restarted agent`).toBe(0);
      expect(await tables('a'), `${label}: the kernel tables`).toBe(before);
    };
    try {
      for (let kill = 1; kill <= KILLS; kill++) {
        // Odd kills hit a converged agent; even ones the agent just restarted, right after it
        // took the ledger lock and began serving probes (it starts them only after the lock),
        // before its caches synced and its first reconcile.
        const early = kill % 2 === 0;
        if (early) await whileAgentRuns('a', 'the health server of the restarted agent', async () => ((await agentLog('a')).includes('serving /healthz') ? true : undefined), START_BOUND_MS, 50);
        else await converged(`before kill ${kill}`);
        const { pid, nspid } = await agentProcess('a');
        expect(nspid).toMatch(/^NSpid:\s+\d+\s+1$/);
        const wasReady = (await agentHttp('a', '/readyz')) !== undefined;
        await vm.sh(`kill -KILL ${pid}`);
        const ended = await vm.wait(agent('a').id, 30_000);
        expect(ended.running).toBe(false);
        const restarted = Date.now();
        await cluster.startAgent('a');
        restartedOnce = true;
        console.log(`[e2e] SIGKILL ${kill}/${KILLS} of PID 1 (${early ? 'after it took the lock' : 'converged'}; ready when killed: ${wasReady}); restarted`);
        if (kill === KILLS) {
          await converged(`after kill ${kill}`);
          console.log(`[e2e] ready ${((Date.now() - restarted) / 1000).toFixed(1)} s after the last restart`);
        }
      }
    } finally {
      await vm.kill(monitor.id, 'SIGTERM').catch(() => undefined);
    }
    const events = (await vm.logs(monitor.id)).stdout.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('Async event'));
    expect(events).toEqual([]);
  }, 900_000);

  it('stops on SIGTERM: components stopped in order, exit status 0, the kernel as it was', async () => {
    await untilReady('a');
    const before = await tables('a');
    const { pid } = await agentProcess('a');
    const signalled = Date.now();
    await vm.sh(`kill -TERM ${pid}`);
    const ended = await vm.wait(agent('a').id, SIGTERM_BOUND_MS);
    console.log(`[e2e] SIGTERM to PID 1: exited after ${((Date.now() - signalled) / 1000).toFixed(1)} s`);
    expect(ended.running, `the agent did not exit within ${SIGTERM_BOUND_MS / 1000} s of SIGTERM:\n${(ended.stdout + ended.stderr).slice(-3000)}`).toBe(false);
    expect({ exitCode: ended.exitCode, signal: ended.signal }).toEqual({ exitCode: 0, signal: null });
    const log = ended.stdout + ended.stderr;
    expect(log).toContain('stop signal received: stopping');
    expect(log).toContain('agent stopped; the kernel keeps its entries');
    expect(log).not.toContain('"level":"error"');
    expect(await tables('a')).toBe(before);
  });
});
