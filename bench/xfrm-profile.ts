// Profiles (not a test, not a benchmark table): the engine phases of bench:xfrm on the host
// kernel, each phase under the V8 CPU profiler on its own, so that a profile shows one phase
// only (parsing the manifests and building the desired tables stay out of it). Writes
// <out>/<phase>.cpuprofile (open in Chrome DevTools) and prints each phase's wall time and its
// top functions by self time. Needs root (a network namespace of its own, deleted afterwards).
//
//   npm run bench:xfrm-profile [-- --count 10000] [--out DIR] [--top 25]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { converge } from '../src/engine/converge.js';
import { openKernelTables } from '../src/engine/kernel.js';
import { Ledger } from '../src/ownership/ledger.js';
import { parseManifests } from '../src/model/manifests.js';
import { desiredTables } from '../src/model/desired.js';
import type { DesiredTables } from '../src/plan/planner.js';
import { manifestText, workload } from './xfrm-workload.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    out: { type: 'string', default: join(tmpdir(), 'bench-xfrm-profiles') },
    top: { type: 'string', default: '25' },
    rounds: { type: 'string', default: '3' },
  },
});
const count = Number(values.count);
const top = Number(values.top);
const rounds = Number(values.rounds);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time per function (ms), highest first. */
function selfTimes(profile: Profile): Array<{ name: string; ms: number }> {
  const byNode = new Map<number, number>();
  profile.samples.forEach((id, i) => byNode.set(id, (byNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const byFunction = new Map<string, number>();
  for (const node of profile.nodes) {
    const micros = byNode.get(node.id) ?? 0;
    if (micros === 0) continue;
    const file = node.callFrame.url.split('/').pop() ?? '';
    const name = `${node.callFrame.functionName || '(anonymous)'} ${file}:${node.callFrame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros / 1000);
  }
  return [...byFunction].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms);
}

/** Total (inclusive) time per function (ms), recursion counted once, highest first. */
function totalTimes(profile: Profile): Array<{ name: string; ms: number }> {
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const visit = (node: ProfileNode, open: Set<string>): number => {
    const file = node.callFrame.url.split('/').pop() ?? '';
    const name = `${node.callFrame.functionName || '(anonymous)'} ${file}:${node.callFrame.lineNumber + 1}`;
    const inner = open.has(name) ? open : new Set([...open, name]);
    let micros = self.get(node.id) ?? 0;
    for (const child of node.children ?? []) micros += visit(nodes.get(child)!, inner);
    if (!open.has(name)) byFunction.set(name, (byFunction.get(name) ?? 0) + micros / 1000);
    return micros;
  };
  visit(profile.nodes[0]!, new Set());
  return [...byFunction].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms);
}

const work = workload(count, false);
const desired = (changed?: number): DesiredTables => {
  const manifests = parseManifests([{ file: 'bench.yaml', text: manifestText(work, changed === undefined ? {} : { changed }) }]);
  const built = desiredTables(manifests, { labels: undefined, resolveDevice: () => undefined });
  if (manifests.errors.length > 0 || built.errors.length > 0) throw new Error('the generated manifests are invalid');
  return built.tables;
};
const full = desired();
const changed = desired(Math.floor(count / 2));
const netns = `bench-prof-${randomBytes(3).toString('hex')}`;
const state = mkdtempSync(join(tmpdir(), 'bench-prof-ledger-'));
mkdirSync(values.out!, { recursive: true });
execFileSync('ip', ['netns', 'add', netns]);
const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: 200 });
try {
  const kernel = await openKernelTables(netns);
  const ledger = await Ledger.open(join(state, 'ledger.json'));
  try {
    const phases: Array<[string, DesiredTables]> = [['initial', full], ['noop', full], ['change', changed], ['prune', { states: [], policies: [] }]];
    const best = new Map<string, { wall: number; cpu: number }>();
    for (let round = 1; round <= rounds; round++) {
      for (const [phase, tables] of phases) {
        await session.post('Profiler.start');
        const cpuStart = process.cpuUsage();
        const start = process.hrtime.bigint();
        const result = await converge(kernel, ledger, { desired: tables, prune: true, dryRun: false });
        const wall = Number(process.hrtime.bigint() - start) / 1e6;
        const used = process.cpuUsage(cpuStart);
        const cpu = (used.user + used.system) / 1000;
        const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
        if (result.outcome !== 'applied') throw new Error(`${phase}: converge ended ${result.outcome}`);
        const previous = best.get(phase);
        best.set(phase, { wall: Math.min(wall, previous?.wall ?? Infinity), cpu: Math.min(cpu, previous?.cpu ?? Infinity) });
        if (round < rounds) continue;
        // The last round's profile (warm code, as an agent's passes run).
        writeFileSync(join(values.out!, `${phase}.cpuprofile`), JSON.stringify(profile));
        const total = (profile.endTime - profile.startTime) / 1000;
        process.stdout.write(`\n${phase}: ${wall.toFixed(1)} ms wall, ${cpu.toFixed(1)} ms CPU, ${result.plan.steps.length} steps; top self time of ${total.toFixed(0)} ms profiled:\n`);
        for (const { name, ms } of selfTimes(profile).slice(0, top)) process.stdout.write(`  ${ms.toFixed(1).padStart(8)} ms  ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${name}\n`);
        process.stdout.write(`  by total time:\n`);
        for (const { name, ms } of totalTimes(profile).slice(0, top)) process.stdout.write(`  ${ms.toFixed(1).padStart(8)} ms  ${((ms / total) * 100).toFixed(1).padStart(5)}%  ${name}\n`);
      }
    }
    process.stdout.write(`\nbest of ${rounds} round(s), under the profiler (load average ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}):\n`);
    for (const [phase, { wall, cpu }] of best) process.stdout.write(`  ${phase.padEnd(8)} ${wall.toFixed(1).padStart(8)} ms wall ${cpu.toFixed(1).padStart(8)} ms CPU\n`);
  } finally {
    await ledger.close();
    kernel.close();
  }
} finally {
  session.disconnect();
  execFileSync('ip', ['netns', 'del', netns]);
  rmSync(state, { recursive: true, force: true });
}
