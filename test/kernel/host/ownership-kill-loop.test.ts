/**
 * Ownership through what production does to a node, against the host kernel (policies; the
 * host has no ESP), through the real CLI process:
 * - a randomised SIGKILL loop: applies and prunes of 1,000 policies of varied shapes,
 *   with 25 foreign policies present (several one field away from ours), the CLI killed at a
 *   random moment of each run (loading, locking, dumping, mid-batch, writing the ledger,
 *   settling), then run again to the end: nothing foreign touched, nothing leaked,
 *   `diff --prune` exit 0 after every recovery;
 * - a reboot: the namespace deleted and made again under the same name (the ledger file
 *   survives, the kernel tables do not), then a foreign daemon installs entries with our
 *   identities: untouched, reported as conflicts;
 * - a ledger copied from another namespace's path: it proves nothing there, nothing is touched.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, type TestNetns } from './netns.js';
import { bundleCli } from './cli-bundle.js';

let bundle: string;
let scratch: string;
const namespaces: TestNetns[] = [];

beforeAll(async () => {
  bundle = await bundleCli('ipsecop-kill-loop');
  scratch = mkdtempSync(join(tmpdir(), 'ipsecop-kill-'));
}, 120_000);
afterAll(() => {
  for (const netns of namespaces) netns.remove();
  if (bundle) rmSync(bundle, { force: true });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function cli(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [bundle, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, output: `${result.stdout}\n${result.stderr}` };
}

/** Starts the CLI and SIGKILLs it after `delayMs`; resolves with whether it was still running. */
function killAfter(args: string[], delayMs: number): Promise<{ killed: boolean; status: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bundle, ...args], { stdio: 'ignore' });
    let exited = false;
    const timer = setTimeout(() => {
      if (!exited) child.kill('SIGKILL');
    }, delayMs);
    child.on('exit', (status, signal) => {
      exited = true;
      clearTimeout(timer);
      resolve({ killed: signal === 'SIGKILL', status });
    });
  });
}

// ---- manifests ----

interface PolicyShape {
  readonly name: string;
  readonly spec: Record<string, unknown>;
}

/** Varied shapes: directions, host and subnet selectors, protocols and ports, marks, actions, tunnel templates. */
function shapes(count: number, variant: number): PolicyShape[] {
  const result: PolicyShape[] = [];
  for (let i = 0; i < count; i++) {
    const a = (i >> 8) & 0xff;
    const b = i & 0xff;
    const direction = (['out', 'in', 'fwd'] as const)[i % 3]!;
    const selector: Record<string, unknown> =
      i % 5 === 0
        ? { source: `10.${a}.${b}.0/24`, destination: `10.200.${b}.0/24` }
        : { source: `10.${a}.${b}.1/32`, destination: `10.100.${a}.${b}/32`, ...(i % 4 === 1 ? { protocol: 'tcp', destinationPort: 1000 + (i % 50) } : {}) };
    const spec: Record<string, unknown> = { direction, priority: 1000 + (i % 7) + (variant === 1 && i % 4 === 0 ? 100 : 0), selector };
    if (i % 11 === 0) spec.mark = { value: 1 + (i % 3), mask: 0xff };
    if (i % 13 === 0) spec.action = 'block';
    else if (i % 6 === 2) spec.templates = [{ protocol: 'esp', mode: 'tunnel', source: '192.0.2.1', destination: '192.0.2.2', reqid: 100 + (i % 9) + (variant === 1 && i % 8 === 2 ? 50 : 0) }];
    else spec.templates = [{ protocol: 'esp', mode: 'transport', reqid: 1 + (i % 5) }];
    result.push({ name: `p-${i}`, spec });
  }
  return result;
}

function writeManifests(directory: string, policies: readonly PolicyShape[]): string {
  rmSync(directory, { recursive: true, force: true });
  mkdirSync(directory, { recursive: true });
  const documents = policies.map((policy) => JSON.stringify({ apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'IpsecPolicy', metadata: { name: policy.name }, spec: policy.spec }));
  writeFileSync(join(directory, 'policies.yaml'), documents.join('\n---\n'));
  return directory;
}

/** `ip xfrm policy` lines of a namespace, without counters and kernel-chosen indices, as a sorted list of entries. */
function policyEntries(netns: TestNetns): string[] {
  const text = netns.ip('xfrm', 'policy', 'list');
  const entries: string[] = [];
  let current = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('src ')) {
      if (current) entries.push(current);
      current = line.trim();
    } else if (line.trim()) current += ` | ${line.trim().replace(/\bindex \d+\b/, '').replace(/\s+/g, ' ')}`;
  }
  if (current) entries.push(current);
  return entries.sort();
}

/** 25 foreign policies: some with our selectors but another mark, mask, if_id or type; one with a mark 0/0. */
function addForeign(netns: TestNetns): void {
  const lines: string[] = [];
  for (let i = 0; i < 20; i++) lines.push(`xfrm policy add src 172.16.${i}.1/32 dst 172.17.${i}.1/32 dir out priority 5 tmpl proto esp reqid 77`);
  lines.push('xfrm policy add src 10.0.1.1/32 dst 10.100.0.1/32 dir in priority 5 mark 7 mask 0xff tmpl proto esp reqid 77'); // p-1's selector, a mark ours lacks
  lines.push('xfrm policy add src 10.0.2.1/32 dst 10.100.0.2/32 dir fwd priority 5 if_id 9 tmpl proto esp reqid 77'); // p-2's selector, an if_id
  lines.push('xfrm policy add src 10.0.3.1/32 dst 10.100.0.3/32 dir out ptype sub priority 5 tmpl proto esp reqid 77'); // p-3's selector, type sub
  lines.push('xfrm policy add src 10.0.11.1/32 dst 10.100.0.11/32 dir fwd priority 5 mark 2 mask 0x0f tmpl proto esp reqid 77'); // p-11's selector and mark value, another mask
  lines.push('xfrm policy add src 10.0.4.1/32 dst 10.100.0.4/32 dir in priority 5 mark 0 mask 0xffffffff tmpl proto esp reqid 77');
  const batch = join(scratch, `foreign-${netns.name}.batch`);
  writeFileSync(batch, `${lines.join('\n')}\n`);
  execIp(['-n', netns.name, '-batch', batch]);
}

function execIp(args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
}

describe('ownership through SIGKILL at random moments (real CLI, host kernel)', () => {
  it('apply and prune of 1,000 varied policies, killed 22 times: nothing foreign touched, nothing leaked', async () => {
    const netns = createNetns();
    namespaces.push(netns);
    addForeign(netns);
    const foreign = policyEntries(netns);
    expect(foreign).toHaveLength(25);
    const state = join(scratch, 'state-kill');
    const sets = [shapes(1000, 0), [...shapes(1000, 1).slice(120), ...shapes(1150, 0).slice(1000)]];
    const manifests = sets.map((set, index) => writeManifests(join(scratch, `set-${index}`), set));
    const args = (index: number, command = 'apply') => [command, '-f', manifests[index]!, '--netns', netns.name, '--state-dir', state, '--prune'];

    // Clean runs first: the initial apply, then one switch each way, timed to size the window
    // the kills are spread over (a switch changes a few hundred entries; the window is its time).
    expect(cli(args(0)).status).toBe(0);
    const switches: number[] = [];
    for (const target of [1, 0]) {
      const started = Date.now();
      expect(cli(args(target)).status).toBe(0);
      switches.push(Date.now() - started);
    }
    const window = Math.min(...switches);

    const kills: { delay: number; killed: boolean }[] = [];
    const rounds = 22;
    for (let round = 0; round < rounds; round++) {
      const target = (round + 1) % 2;
      // Kill moments spread over the whole run (stratified, with jitter): loading and locking,
      // the dump, the batches, the ledger writes, the verifying dump and settling. A run that
      // finished first is tried again with half the delay, so that every round is a kill.
      let delay = Math.floor(((round + Math.random()) / rounds) * window * 0.9);
      let run = await killAfter(args(target), delay);
      for (let retry = 0; !run.killed && retry < 4; retry++) {
        expect(run.status, `round ${round}: a run that was not killed failed`).toBe(0);
        delay = Math.floor(delay / 2);
        run = await killAfter(args(target), delay);
      }
      kills.push({ delay, killed: run.killed });
      // Recovery: the next run finishes, and then nothing is left to do.
      const recovered = cli(args(target));
      expect(recovered.status, `round ${round} (killed after ${delay} ms): ${recovered.output.slice(-2000)}`).toBe(0);
      const diff = cli(args(target, 'diff'));
      expect(diff.status, `round ${round}: diff --prune after recovery: ${diff.output.slice(-2000)}`).toBe(0);
      const now = policyEntries(netns);
      // Foreign policies exactly as they were; ours exactly the desired set (nothing leaked).
      expect(foreign.every((entry) => now.includes(entry)), `round ${round}: a foreign policy changed`).toBe(true);
      expect(now.length, `round ${round}: leaked or missing policies`).toBe(foreign.length + sets[target]!.length);
    }
    const killed = kills.filter((kill) => kill.killed).length;
    const bins = [0, 0, 0, 0];
    for (const kill of kills.filter((k) => k.killed)) bins[Math.min(3, Math.floor((kill.delay / window) * 4))]! += 1;
    console.log(`a switch takes ${window} ms; ${killed} of ${kills.length} runs killed mid-way; kills by quarter of the run: ${bins.join(' / ')}`);
    expect(killed).toBeGreaterThanOrEqual(20);
  }, 900_000);
});

describe('ledgers that prove nothing here', () => {
  const manifests = () => writeManifests(join(scratch, 'small'), shapes(20, 0));

  it('after a reboot (namespace made again under the same name), a daemon that took our identities first is left alone', () => {
    const netns = createNetns();
    namespaces.push(netns);
    const state = join(scratch, 'state-reboot');
    const directory = manifests();
    expect(cli(['apply', '-f', directory, '--netns', netns.name, '--state-dir', state]).status).toBe(0);
    // "Reboot": the kernel tables go, the ledger file stays.
    spawnSync('ip', ['netns', 'del', netns.name]);
    execIp(['netns', 'add', netns.name]);
    // A daemon that starts before us installs policies with three of our identities.
    execIp(['-n', netns.name, 'xfrm', 'policy', 'add', 'src', '10.0.1.1/32', 'dst', '10.100.0.1/32', 'proto', 'tcp', 'dport', '1001', 'dir', 'in', 'priority', '3', 'tmpl', 'proto', 'esp', 'reqid', '55']);
    execIp(['-n', netns.name, 'xfrm', 'policy', 'add', 'src', '10.0.2.1/32', 'dst', '10.100.0.2/32', 'dir', 'fwd', 'priority', '3', 'tmpl', 'proto', 'esp', 'reqid', '55']);
    execIp(['-n', netns.name, 'xfrm', 'policy', 'add', 'src', '10.0.3.1/32', 'dst', '10.100.0.3/32', 'dir', 'out', 'priority', '3', 'tmpl', 'proto', 'esp', 'reqid', '55']);
    const theirs = policyEntries(netns);
    // apply refuses (conflicts), prune of everything deletes nothing of theirs.
    const applied = cli(['apply', '-f', directory, '--netns', netns.name, '--state-dir', state]);
    expect(applied.status).toBe(1);
    expect(applied.output).toMatch(/3 conflict/);
    expect(policyEntries(netns)).toEqual(theirs);
    const emptied = writeManifests(join(scratch, 'none'), []);
    const pruned = cli(['apply', '-f', emptied, '--netns', netns.name, '--state-dir', state, '--prune-all']);
    expect(pruned.status, pruned.output).toBe(0);
    expect(policyEntries(netns)).toEqual(theirs);
  }, 120_000);

  it('a ledger copied from another namespace proves nothing there: nothing is touched', () => {
    const source = createNetns();
    const target = createNetns();
    namespaces.push(source, target);
    const state = join(scratch, 'state-copy');
    const directory = manifests();
    expect(cli(['apply', '-f', directory, '--netns', source.name, '--state-dir', state]).status).toBe(0);
    // The target holds the same policies, made by someone else (say, a copy of the same config).
    const batch = join(scratch, 'copy.batch');
    const lines = shapes(20, 0).map((shape) => {
      const selector = shape.spec.selector as { source: string; destination: string; protocol?: string; destinationPort?: number };
      const ports = selector.protocol ? ` proto ${selector.protocol} dport ${selector.destinationPort}` : '';
      const mark = shape.spec.mark ? ` mark ${(shape.spec.mark as { value: number }).value} mask 0xff` : '';
      return `xfrm policy add src ${selector.source} dst ${selector.destination}${ports} dir ${String(shape.spec.direction)}${mark} priority 9 tmpl proto esp reqid 66`;
    });
    writeFileSync(batch, `${lines.join('\n')}\n`);
    execIp(['-n', target.name, '-batch', batch]);
    const theirs = policyEntries(target);
    cpSync(join(state, `netns-${source.name}`), join(state, `netns-${target.name}`), { recursive: true });
    const emptied = writeManifests(join(scratch, 'none-2'), []);
    const pruned = cli(['apply', '-f', emptied, '--netns', target.name, '--state-dir', state, '--prune-all']);
    expect(pruned.status, pruned.output).toBe(0);
    expect(policyEntries(target)).toEqual(theirs);
    // The source namespace's own ledger still owns its entries.
    expect(cli(['diff', '-f', directory, '--netns', source.name, '--state-dir', state, '--prune']).status).toBe(0);
  }, 120_000);
});
