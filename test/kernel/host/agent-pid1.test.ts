// The agent process as PID 1 of a PID namespace of its own (`unshare --pid --fork
// --mount-proc`, what a container runtime gives it), on the host kernel, with an API server
// that does not answer: no cluster needed for what is tested here, which is the process itself.
// - SIGKILLed five times and started again each time (as a kubelet would): every start takes
//   the ledger lock the dead PID 1 held (a lock that counted a live "process 1" as its holder
//   would refuse forever: the restarted agent is itself process 1);
// - SIGTERM while it waits for caches that never sync: it gives the start up, stops what it
//   started and exits 0 (without a handler, PID 1 would ignore the signal: the kernel gives it
//   no default actions);
// - fail static throughout: a foreign policy in its namespace is never touched.
// The same loop against the real API server and SAs in the test VM, with convergence, is
// test/e2e/agent-pid1.test.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleCli } from './cli-bundle.js';
import { createNetns, type TestNetns } from './netns.js';
import { freePort } from '../../infra/free-port.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const KILLS = 5;
/**
 * The CLI bundled once (as scripts/bundle.mjs does, into a file of this run under dist/, where
 * the addon is found from): seven starts from the TypeScript sources took minutes on a loaded
 * machine.
 */
const BUNDLE = join(ROOT, 'dist', 'test-bundles', `agent-pid1-${randomBytes(4).toString('hex')}.mjs`);
/** Liveness bounds on a loaded 2-core machine, not speed. */
const START_BOUND_MS = 60_000;
const EXIT_BOUND_MS = 30_000;

interface Agent {
  readonly unshare: ChildProcess;
  output: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let netns: TestNetns;
let scratch: string;
let port: number;
const FOREIGN = ['xfrm', 'policy', 'add', 'src', '203.0.113.0/24', 'dst', '192.0.2.0/24', 'dir', 'out', 'priority', '9', 'tmpl', 'proto', 'esp', 'reqid', '77'];

function startAgent(): Agent {
  const unshare = spawn(
    'unshare',
    [
      '--pid', '--fork', '--mount-proc', '--kill-child',
      process.execPath, BUNDLE,
      'agent', '--node-name', 'pid1', '--namespace', 'ipsec-operator', '--netns', netns.name,
      '--kubeconfig', join(scratch, 'kubeconfig'), '--state-dir', join(scratch, 'state'), '--metrics-address', `127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const agent: Agent = {
    unshare,
    output: '',
    exited: new Promise((resolve) => unshare.once('exit', (code, signal) => resolve({ code, signal }))),
  };
  const keep = (chunk: Buffer) => void (agent.output += chunk.toString());
  unshare.stdout!.on('data', keep);
  unshare.stderr!.on('data', keep);
  return agent;
}

/** The agent itself: unshare's only child, which is PID 1 of the new namespace (its NSpid ends in 1). */
async function agentPid(agent: Agent): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const child = Number(readFileSync(`/proc/${agent.unshare.pid}/task/${agent.unshare.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(child) && child > 0) {
      expect(readFileSync(`/proc/${child}/status`, 'utf8')).toMatch(/^NSpid:\s+\d+\s+1$/m);
      return child;
    }
    if (Date.now() > deadline) throw new Error(`unshare (pid ${agent.unshare.pid}) forked no child:\n${agent.output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Resolves once the agent serves its probes: it starts them only after it has opened its
 * netlink socket and locked its ledger. Fails at once if the agent exits first.
 */
async function serving(agent: Agent): Promise<void> {
  const deadline = Date.now() + START_BOUND_MS;
  for (;;) {
    if (agent.unshare.exitCode !== null || agent.unshare.signalCode !== null) throw new Error(`the agent exited before serving its probes:\n${agent.output}`);
    const answer = await fetch(`http://127.0.0.1:${port}/healthz`).then((response) => response.status, () => undefined);
    if (answer === 200) return;
    if (Date.now() > deadline) throw new Error(`the agent did not serve /healthz within ${START_BOUND_MS / 1000} s:\n${agent.output}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('the agent as PID 1 of its own PID namespace (host kernel, API server unreachable)', () => {
  let foreignBefore = '';
  beforeAll(async () => {
    netns = createNetns();
    netns.ip(...FOREIGN);
    foreignBefore = netns.ip('xfrm', 'policy');
    scratch = mkdtempSync(join(tmpdir(), 'ipsecop-pid1-'));
    // Nothing listens on port 1: every list fails at once, so the caches never sync.
    writeFileSync(
      join(scratch, 'kubeconfig'),
      'apiVersion: v1\nkind: Config\nclusters: [{name: x, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\ncurrent-context: x\n',
      { mode: 0o600 },
    );
    port = await freePort();
    await bundleCli('ipsecop-agent-pid1', BUNDLE);
  }, 120_000);
  afterAll(() => {
    rmSync(BUNDLE, { force: true });
    netns?.remove();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it(`starts again after each of ${KILLS} SIGKILLs of PID 1, taking the ledger lock the dead process held`, async () => {
    for (let kill = 1; kill <= KILLS; kill++) {
      const agent = startAgent();
      try {
        await serving(agent);
        expect(agent.output).not.toMatch(/lock/i);
        process.kill(await agentPid(agent), 'SIGKILL');
        await within(agent.exited, EXIT_BOUND_MS, 'the killed agent did not end');
      } finally {
        agent.unshare.kill('SIGKILL');
      }
    }
    expect(netns.ip('xfrm', 'policy')).toBe(foreignBefore);
  }, (KILLS + 1) * (START_BOUND_MS + EXIT_BOUND_MS));

  it('stops on SIGTERM while its caches wait for the API server: exit 0, the kernel as it was', async () => {
    const agent = startAgent();
    try {
      await serving(agent);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toContain('caches-synced failed');
      process.kill(await agentPid(agent), 'SIGTERM');
      const exit = await within(agent.exited, EXIT_BOUND_MS, 'the agent did not exit after SIGTERM');
      expect(exit, agent.output).toEqual({ code: 0, signal: null });
      expect(agent.output).toContain('stop signal received: stopping');
      expect(agent.output).toContain('agent stopped; the kernel keeps its entries');
      expect(agent.output).not.toContain('"level":"error"');
    } finally {
      agent.unshare.kill('SIGKILL');
    }
    expect(netns.ip('xfrm', 'policy')).toBe(foreignBefore);
  }, START_BOUND_MS + EXIT_BOUND_MS * 2);
});
