// One run of bench:xfrm inside one kernel (the host's, or the test VM's, where bench/xfrm.ts
// runs this file bundled): in a fresh network namespace it creates and deletes itself,
//   1. the iproute2 references: `ip -batch` adding the workload, `ip xfrm state/policy list`,
//      `ip -batch` deleting it;
//   2. the engine in this process, through the path the CLI and the agent run (manifests →
//      desired tables → converge: dump → plan → ledger → kernel → verify), phase by phase,
//      with where the time went (dumps, kernel batches, ledger commits, the rest: planning);
//   3. the CLI as whole processes (apply, diff, one change, prune), wall time and peak RSS.
// Prints one JSON object (see RunResult) on stdout. A benchmark, not a test: it asserts that
// each phase did what it should (so a number never describes a failed run), never a time.
//
//   node dist/bench/xfrm-run.mjs --count N [--states] [--rounds R] --cli "node bin/ipsec-operator.js"
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { converge, type ConvergeResult, type KernelTables } from '../src/engine/converge.js';
import { openKernelTables } from '../src/engine/kernel.js';
import { Ledger } from '../src/ownership/ledger.js';
import { parseManifests } from '../src/model/manifests.js';
import { desiredTables } from '../src/model/desired.js';
import type { DesiredTables } from '../src/plan/planner.js';
import { ipBatch, manifestText, workload, type Workload } from './xfrm-workload.js';

export interface PhaseTimes {
  /** Wall time of the whole converge call. */
  total: number;
  /** Time in dumps and in reads of single identities (the verifying pass of a small plan). */
  dump: number;
  dumps: number;
  reads: number;
  kernel: number;
  changes: number;
  ledger: number;
  commits: number;
  /** total − dump − kernel − ledger: planning, fingerprints, describing, bookkeeping. */
  rest: number;
  steps: number;
}

export interface ProcessRun {
  seconds: number;
  maxRssMiB: number;
  exitCode: number;
}

export interface RunResult {
  kernel: string;
  count: number;
  withStates: boolean;
  rounds: number;
  /** Medians over the rounds (seconds). */
  reference: { batchAdd: number; stateList: number; policyList: number; list: number; batchDelete: number };
  /** Manifests → validated resources, and resources → desired tables, in this process. */
  input: { parse: number; build: number; documents: number };
  engine: { initial: PhaseTimes; noop: PhaseTimes; change: PhaseTimes; prune: PhaseTimes };
  cli: { apply: ProcessRun; diff: ProcessRun; noopApply: ProcessRun; change: ProcessRun; prune: ProcessRun; help: ProcessRun; nodeStart?: ProcessRun };
  /** Peak RSS of this process (the engine phases with 10,000 entries held three times over). */
  runnerMaxRssMiB: number;
  /** /proc/loadavg's 1-minute figure when the run started and ended: the machine is shared. */
  load?: { start: number; end: number };
}

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    states: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '3' },
    cli: { type: 'string' },
  },
});
const count = Number(values.count);
const rounds = Number(values.rounds);
const cli = values.cli?.split(' ').filter(Boolean);
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(rounds) || rounds < 1) throw new Error('--count and --rounds must be positive integers');

const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const log = (line: string) => process.stderr.write(`[bench:xfrm ${count}${values.states ? ' SAs+policies' : ' policies'}] ${line}\n`);

function ip(netns: string, args: readonly string[], input?: string): number {
  const start = process.hrtime.bigint();
  execFileSync('ip', ['-n', netns, ...args], { input, stdio: ['pipe', 'ignore', 'inherit'], maxBuffer: 1 << 30 });
  return seconds(start);
}

function entriesIn(netns: string): { states: number; policies: number } {
  const text = execFileSync('ip', ['-n', netns, 'xfrm', 'state', 'count'], { encoding: 'utf8' }) + execFileSync('ip', ['-n', netns, 'xfrm', 'policy', 'count'], { encoding: 'utf8' });
  const numbers = [...text.matchAll(/(\d+)/g)].map((match) => Number(match[1]));
  return { states: numbers[0] ?? -1, policies: numbers.slice(1).reduce((a, b) => a + b, 0) };
}

function expectEntries(netns: string, work: Workload, present: boolean, what: string): void {
  const found = entriesIn(netns);
  const want = { states: present && work.withStates ? work.count : 0, policies: present ? work.count : 0 };
  if (found.states !== want.states || found.policies !== want.policies) {
    throw new Error(`${what}: the namespace holds ${found.states} SAs and ${found.policies} policies, expected ${want.states} and ${want.policies}`);
  }
}

function references(netns: string, work: Workload) {
  const add = ipBatch(work, 'add');
  const remove = ipBatch(work, 'delete');
  const samples = { batchAdd: [] as number[], stateList: [] as number[], policyList: [] as number[], list: [] as number[], batchDelete: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    samples.batchAdd.push(ip(netns, ['-batch', '-'], add));
    expectEntries(netns, work, true, 'ip -batch add');
    const stateList = ip(netns, ['xfrm', 'state', 'list']);
    const policyList = ip(netns, ['xfrm', 'policy', 'list']);
    samples.stateList.push(stateList);
    samples.policyList.push(policyList);
    samples.list.push(work.withStates ? stateList + policyList : policyList);
    samples.batchDelete.push(ip(netns, ['-batch', '-'], remove));
    expectEntries(netns, work, false, 'ip -batch delete');
  }
  return { batchAdd: median(samples.batchAdd), stateList: median(samples.stateList), policyList: median(samples.policyList), list: median(samples.list), batchDelete: median(samples.batchDelete) };
}

function zeroTimes(): PhaseTimes {
  return { total: 0, dump: 0, dumps: 0, reads: 0, kernel: 0, changes: 0, ledger: 0, commits: 0, rest: 0, steps: 0 };
}

/** The engine's kernel, with the time spent in dumps, reads and batches counted into `times`. */
function timedKernel(kernel: KernelTables, times: () => PhaseTimes): KernelTables {
  return {
    ...(kernel.features ? { features: kernel.features } : {}),
    async dump() {
      const start = process.hrtime.bigint();
      try {
        return await kernel.dump();
      } finally {
        times().dump += seconds(start);
        times().dumps += 1;
      }
    },
    async read(ids) {
      const start = process.hrtime.bigint();
      try {
        return await kernel.read!(ids);
      } finally {
        times().dump += seconds(start);
        times().reads += ids.states.length + ids.policies.length;
      }
    },
    async apply(changes) {
      const start = process.hrtime.bigint();
      try {
        return await kernel.apply(changes);
      } finally {
        times().kernel += seconds(start);
        times().changes += changes.length;
      }
    },
  };
}

/**
 * The ledger as it is, with the time spent in `commit` counted into `times`. A proxy rather
 * than a hand-written wrapper, so the bench follows the ledger's interface as it evolves; every
 * method runs on the real object (it has private fields).
 */
function timedLedger<T extends object>(ledger: T, times: () => PhaseTimes): T {
  return new Proxy(ledger, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      if (property !== 'commit') return value.bind(target);
      return async (...args: unknown[]) => {
        const start = process.hrtime.bigint();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          times().ledger += seconds(start);
          times().commits += 1;
        }
      };
    },
  });
}

function settled(result: ConvergeResult, expectSteps: number, what: string): void {
  if (result.outcome === 'failed') {
    // What the kernel refused (identity keys and the kernel's reason: never key material).
    const report = result.report as { failures: readonly { step: { key: string }; code: string; message: string }[]; stopped?: string };
    const refused = report.failures.slice(0, 3).map((failure) => `${failure.step.key}: ${failure.message} (${failure.code})`);
    throw new Error(`${what}: converge ended failed: ${[...refused, ...(report.stopped ? [`stopped: ${report.stopped}`] : [])].join('; ')}`);
  }
  if (result.outcome !== 'applied') throw new Error(`${what}: converge ended ${result.outcome}`);
  if (result.remaining.steps.length > 0 || result.remaining.conflicts.length > 0) throw new Error(`${what}: the kernel does not match after apply`);
  if (result.plan.steps.length !== expectSteps) throw new Error(`${what}: ${result.plan.steps.length} steps, expected ${expectSteps}`);
}

async function engine(netns: string, work: Workload, tables: { full: DesiredTables; changed: DesiredTables }) {
  const phases = ['initial', 'noop', 'change', 'prune'] as const;
  const samples = Object.fromEntries(phases.map((phase) => [phase, [] as PhaseTimes[]])) as Record<(typeof phases)[number], PhaseTimes[]>;
  const entries = work.count * (work.withStates ? 2 : 1);
  for (let round = 0; round < rounds; round++) {
    const state = mkdtempSync(join(tmpdir(), 'bench-xfrm-ledger-'));
    const kernelTables = await openKernelTables(netns);
    const ledger = await Ledger.open(join(state, 'ledger.json'));
    let current = zeroTimes();
    const kernel = timedKernel(kernelTables, () => current);
    const store = timedLedger(ledger, () => current);
    const run = async (phase: (typeof phases)[number], desired: DesiredTables, expectSteps: number) => {
      current = zeroTimes();
      const start = process.hrtime.bigint();
      const result = await converge(kernel, store, { desired, prune: true, dryRun: false });
      current.total = seconds(start);
      current.rest = current.total - current.dump - current.kernel - current.ledger;
      current.steps = result.plan.steps.length;
      settled(result, expectSteps, `engine ${phase}`);
      samples[phase].push(current);
    };
    try {
      await run('initial', tables.full, entries);
      expectEntries(netns, work, true, 'engine initial apply');
      await run('noop', tables.full, 0);
      await run('change', tables.changed, 1);
      await run('prune', { states: [], policies: [] }, entries);
      expectEntries(netns, work, false, 'engine prune');
    } finally {
      await ledger.close();
      kernelTables.close();
      rmSync(state, { recursive: true, force: true });
    }
  }
  const pick = (phase: (typeof phases)[number]) => {
    const runs = samples[phase];
    return runs.find((times) => times.total === median(runs.map((t) => t.total)))!;
  };
  return { initial: pick('initial'), noop: pick('noop'), change: pick('change'), prune: pick('prune') };
}

/** One CLI process: wall time from here, peak RSS from GNU time (-f %M: kilobytes). */
function process1(command: readonly string[], args: readonly string[], expectExit: number, what: string): ProcessRun {
  const rss = join(tmpdir(), `bench-xfrm-rss-${randomBytes(4).toString('hex')}`);
  const start = process.hrtime.bigint();
  const child = spawnSync('/usr/bin/time', ['-f', '%M', '-o', rss, ...command, ...args], { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 28 });
  const wall = seconds(start);
  const maxRssKiB = Number(execFileSync('tail', ['-n', '1', rss], { encoding: 'utf8' }).trim());
  rmSync(rss, { force: true });
  if (child.status !== expectExit) throw new Error(`${what}: exit ${child.status}, expected ${expectExit}:\n${child.stderr.toString().slice(0, 2000)}`);
  return { seconds: wall, maxRssMiB: maxRssKiB / 1024, exitCode: child.status };
}

function cliRuns(netns: string, work: Workload, command: readonly string[], files: { full: string; changed: string; empty: string }) {
  const runs: Record<string, ProcessRun[]> = { apply: [], diff: [], noopApply: [], change: [], prune: [], help: [], nodeStart: [] };
  for (let round = 0; round < rounds; round++) {
    const state = mkdtempSync(join(tmpdir(), 'bench-xfrm-cli-'));
    const common = ['--netns', netns, '--state-dir', state];
    try {
      runs.apply!.push(process1(command, ['apply', '-f', files.full, ...common], 0, 'cli apply'));
      expectEntries(netns, work, true, 'cli apply');
      runs.diff!.push(process1(command, ['diff', '-f', files.full, '--prune', ...common], 0, 'cli no-op diff'));
      runs.noopApply!.push(process1(command, ['apply', '-f', files.full, '--prune', ...common], 0, 'cli no-op apply'));
      runs.change!.push(process1(command, ['apply', '-f', files.changed, '--prune', ...common], 0, 'cli one change'));
      runs.prune!.push(process1(command, ['apply', '-f', files.empty, '--prune-all', ...common], 0, 'cli prune'));
      expectEntries(netns, work, false, 'cli prune');
      runs.help!.push(process1(command, ['--help'], 0, 'cli --help'));
      // What node alone takes to start and exit here: the floor under every CLI figure.
      runs.nodeStart!.push(process1([command[0]!], ['-e', '0'], 0, 'node -e 0'));
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  }
  const pick = (name: string) => {
    const list = runs[name]!;
    const seconds = median(list.map((run) => run.seconds));
    return { seconds, maxRssMiB: Math.max(...list.map((run) => run.maxRssMiB)), exitCode: list[0]!.exitCode };
  };
  return { apply: pick('apply'), diff: pick('diff'), noopApply: pick('noopApply'), change: pick('change'), prune: pick('prune'), help: pick('help'), nodeStart: pick('nodeStart') };
}

function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

const work = workload(count, values.states);
const netns = `bench-xfrm-${randomBytes(3).toString('hex')}`;
const files = mkdtempSync(join(tmpdir(), 'bench-xfrm-manifests-'));
execFileSync('ip', ['netns', 'add', netns]);
try {
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  const loadStart = loadAverage();
  log(`kernel ${kernel}, namespace ${netns}`);
  const texts = { full: manifestText(work), changed: manifestText(work, { changed: Math.floor(count / 2) }), empty: '' };
  const paths = { full: join(files, 'full.yaml'), changed: join(files, 'changed.yaml'), empty: join(files, 'empty.yaml') };
  mkdirSync(files, { recursive: true });
  for (const name of ['full', 'changed', 'empty'] as const) writeFileSync(paths[name], texts[name], { mode: 0o600 });

  log('references: ip -batch, ip xfrm list');
  const reference = references(netns, work);

  log('input: parse and validate the manifests, build the desired tables');
  let start = process.hrtime.bigint();
  const manifests = parseManifests([{ file: paths.full, text: texts.full }]);
  const parse = seconds(start);
  if (manifests.errors.length > 0) throw new Error(`the generated manifests are invalid: ${JSON.stringify(manifests.errors.slice(0, 3))}`);
  start = process.hrtime.bigint();
  const full = desiredTables(manifests, { labels: undefined, resolveDevice: () => undefined });
  const build = seconds(start);
  const changedSet = parseManifests([{ file: paths.changed, text: texts.changed }]);
  const changed = desiredTables(changedSet, { labels: undefined, resolveDevice: () => undefined });
  if (full.errors.length > 0 || changed.errors.length > 0) throw new Error(`the desired tables could not be built: ${JSON.stringify([...full.errors, ...changed.errors].slice(0, 3))}`);

  log('engine phases in this process');
  const engineTimes = await engine(netns, work, { full: full.tables, changed: changed.tables });

  let cliTimes: RunResult['cli'] | undefined;
  if (cli) {
    log(`whole processes: ${cli.join(' ')}`);
    cliTimes = cliRuns(netns, work, cli, paths);
  }
  const result: Partial<RunResult> = {
    kernel,
    count,
    withStates: work.withStates,
    rounds,
    reference,
    input: { parse, build, documents: manifests.securityAssociations.length + manifests.policies.length + manifests.secrets.size },
    engine: engineTimes,
    ...(cliTimes ? { cli: cliTimes } : {}),
    runnerMaxRssMiB: process.resourceUsage().maxRSS / 1024,
    load: { start: loadStart, end: loadAverage() },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  execFileSync('ip', ['netns', 'del', netns]);
  rmSync(files, { recursive: true, force: true });
}
