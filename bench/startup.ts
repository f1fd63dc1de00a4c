// Benchmark (not a test): how fast the bundled CLI and agent start (issue 10: `--help` ≤ 0.2 s),
// on the host and in the test VM (qemu TCG, where every VM and e2e test pays it). Whole
// processes, timed inside the machine that runs them (the guest's own clock for the VM, so the
// control server's round trips are not counted):
//   node -e 0            the floor: node itself
//   --help               the entry alone
//   apply (1 / 40)       `apply -f FILE --netns NS --state-dir DIR` of 1 and 40 out policies, each
//                        into a fresh network namespace and state directory
//   agent → /healthz     exec of `agent` (an API server that refuses connections) until its
//                        /healthz answers 200; the health server starts before the caches
// Wall seconds (median of the rounds) and peak RSS (GNU time). Several bundles can be compared
// in the same run (`--cli LABEL=PATH`, repeatable; default: dist/bundle/ipsec-operator.mjs, as
// `npm run build` makes it); their rounds interleave so that load changes weigh on each alike.
// Each bundle must live inside the package (it finds the native addon from there).
//
//   npm run bench:startup [-- --rounds 3] [--no-vm] [--no-host] [--cli before=dist/x.mjs --cli after=dist/bundle/ipsec-operator.mjs] [--json FILE]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { manifestText, workload } from './xfrm-workload.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'vm-rounds': { type: 'string' },
    cli: { type: 'string', multiple: true },
    'no-vm': { type: 'boolean', default: false },
    'no-host': { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

const PHASES = ['node -e 0', '--help', 'apply 1', 'apply 40', 'agent → /healthz'] as const;
type Phase = (typeof PHASES)[number];
interface Sample {
  readonly seconds: number;
  readonly maxRssKiB: number;
}
type Results = Record<string, Partial<Record<Phase, Sample[]>>>;

const clis = (values.cli ?? ['bundle=dist/bundle/ipsec-operator.mjs']).map((spec) => {
  const equals = spec.indexOf('=');
  if (equals <= 0) throw new Error(`--cli ${spec}: expected LABEL=PATH`);
  return { label: spec.slice(0, equals), path: resolve(ROOT, spec.slice(equals + 1)) };
});

/**
 * One POSIX shell script that runs every phase of every bundle `rounds` times and prints
 * `RESULT <label>\t<phase>\t<seconds>\t<max RSS KiB>` lines. The same script runs on the host and
 * in the guest: there `date`, GNU time, curl and ip are the host's own binaries (the guest
 * sees the host's files), so both measure the same way.
 */
function script(dir: string, rounds: number): string {
  const one = join(dir, 'one.yaml');
  const forty = join(dir, 'forty.yaml');
  writeFileSync(one, manifestText(workload(1, false)));
  writeFileSync(forty, manifestText(workload(40, false)));
  // An API server nothing listens on: the agent keeps retrying its lists, its health server
  // answers all the same (it starts before the caches, see src/agent/agent.ts).
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]\n' +
      'users: [{name: u, user: {token: bench}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
  );
  const lines = [
    'set -u',
    `W=$(mktemp -d /run/startup-bench.XXXXXX 2>/dev/null || mktemp -d)`,
    'now() { date +%s%N; }',
    // timed LABEL PHASE command...: wall time from our clock, peak RSS from GNU time
    'timed() { l=$1; p=$2; shift 2; s=$(now); /usr/bin/time -f "%M" -o "$W/rss" "$@" > "$W/out" 2>&1 || { echo "FAILED $l $p"; cat "$W/out"; }; e=$(now); printf "RESULT %s\\t%s\\t%s\\t%s\\n" "$l" "$p" "$(( (e - s) / 1000 ))" "$(tail -n 1 "$W/rss")"; }',
    'n=0',
    'apply() { n=$((n + 1)); ns=startup-bench-$$-$n; ip netns add $ns; timed "$1" "$2" node "$3" apply -f "$4" --netns $ns --state-dir "$W/state-$n"; ip netns del $ns; }',
    // agent LABEL CLI PORT: exec to the first 200 from /healthz, then SIGTERM
    'agent() { n=$((n + 1)); ns=startup-bench-$$-$n; ip netns add $ns; s=$(now);' +
      ` /usr/bin/time -f "%M" -o "$W/agent-rss" node "$2" agent --kubeconfig ${kubeconfig} --namespace bench --node-name bench --netns $ns --state-dir "$W/state-$n" --metrics-address 127.0.0.1:$3 > "$W/agent.log" 2>&1 & pid=$!;` +
      ' until [ "$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:$3/healthz)" = 200 ]; do kill -0 $pid 2>/dev/null || { echo "FAILED $1 agent"; cat "$W/agent.log"; break; }; sleep 0.05; done; e=$(now);' +
      ' pkill -TERM -P $pid 2>/dev/null || kill -TERM $pid 2>/dev/null; wait $pid; printf "RESULT %s\\t%s\\t%s\\t%s\\n" "$1" "agent → /healthz" "$(( (e - s) / 1000 ))" "$(tail -n 1 "$W/agent-rss")"; ip netns del $ns; }',
  ];
  for (let round = 0; round < rounds; round++) {
    for (const [index, { label, path }] of clis.entries()) {
      lines.push(
        `timed ${label} "node -e 0" node -e 0`,
        `timed ${label} --help node ${path} --help`,
        `apply ${label} "apply 1" ${path} ${one}`,
        `apply ${label} "apply 40" ${path} ${forty}`,
        `agent ${label} ${path} ${19400 + index}`,
      );
    }
  }
  lines.push('rm -rf "$W"');
  return lines.join('\n') + '\n';
}

function parse(output: string, into: Results): void {
  for (const line of output.split('\n')) {
    if (line.startsWith('FAILED')) process.stderr.write(`[bench:startup] ${line}\n`);
    const match = /^RESULT (\S+)\t([^\t]+)\t(\d+)\t(\d*)$/.exec(line);
    if (!match) continue;
    const [, label, phase, micros, rss] = match;
    ((into[label!] ??= {})[phase as Phase] ??= []).push({ seconds: Number(micros) / 1e6, maxRssKiB: Number(rss || 0) });
  }
  const failed = output.split('\n').filter((line) => line.startsWith('FAILED'));
  if (failed.length > 0) process.stderr.write(`[bench:startup] output:\n${output.split('\n').filter((line) => !line.startsWith('RESULT')).join('\n')}\n`);
}

function median(samples: readonly Sample[]): Sample {
  const sorted = [...samples].sort((a, b) => a.seconds - b.seconds);
  return sorted[(sorted.length - 1) >> 1]!;
}

function table(title: string, results: Results): string {
  const labels = clis.map((cli) => cli.label);
  const rows = [`${title}`, `| phase | ${labels.map((label) => `${label} (s, MiB)`).join(' | ')} |`, `|---|${labels.map(() => '---|').join('')}`];
  for (const phase of PHASES) {
    const cells = labels.map((label) => {
      const samples = results[label]?.[phase];
      if (!samples || samples.length === 0) return '–';
      const m = median(samples);
      const spread = samples.length > 1 ? ` [${Math.min(...samples.map((s) => s.seconds)).toFixed(2)}–${Math.max(...samples.map((s) => s.seconds)).toFixed(2)}]` : '';
      return `${m.seconds.toFixed(2)}${spread}, ${(m.maxRssKiB / 1024).toFixed(0)}`;
    });
    rows.push(`| ${phase} | ${cells.join(' | ')} |`);
  }
  return rows.join('\n');
}

if (!values['no-build']) {
  process.stderr.write('[bench:startup] npm run build\n');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
}
const rounds = Number(values.rounds);
const vmRounds = Number(values['vm-rounds'] ?? values.rounds);
// Under the package (the guest sees the host's files at the same paths, but not its /tmp).
const dir = mkdtempSync(join(ROOT, 'dist', 'startup-bench-'));
const report: { host?: Results; vm?: Results; load: number[][] } = { load: [] };
try {
  if (!values['no-host']) {
    report.load.push(loadavg());
    const results: Results = {};
    parse(execFileSync('sh', ['-c', script(dir, rounds)], { encoding: 'utf8', maxBuffer: 64 << 20 }), results);
    report.load.push(loadavg());
    report.host = results;
    console.log(`\n${table(`Host (load ${report.load.at(-2)![0]!.toFixed(1)} → ${report.load.at(-1)![0]!.toFixed(1)}), median of ${rounds} [min–max]`, results)}`);
  }
  if (!values['no-vm']) {
    const { bootVm } = await import('../test/infra/vm/vm.js');
    process.stderr.write('[bench:startup] booting the test VM\n');
    const vm = await bootVm();
    try {
      const before = loadavg();
      const result = await vm.exec({ script: script(dir, vmRounds) }, { timeoutMs: 3_600_000 });
      const after = loadavg();
      report.load.push(before, after);
      const results: Results = {};
      parse(result.stdout + result.stderr, results);
      report.vm = results;
      console.log(`\n${table(`Test VM (qemu TCG, ${(await vm.health()).kernel}; host load ${before[0]!.toFixed(1)} → ${after[0]!.toFixed(1)}), median of ${vmRounds} [min–max]`, results)}`);
    } finally {
      await vm.shutdown();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2));
