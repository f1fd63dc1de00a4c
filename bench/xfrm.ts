// Benchmark (not a test): the engine path the CLI and the agent run, against iproute2 doing
// the same kernel work in the same run (issue 10). Builds the product (tsc + bundle) and
// bundles bench/xfrm-run.ts, runs it on the host kernel (policies only: the host has no ESP)
// and in the test VM (SAs + policies), and prints one table per kernel with the issue's
// targets beside the figures. Needs root; the VM part needs the test VM's image
// (scripts/build-vm.sh, done by `make bootstrap`).
//
//   npm run bench:xfrm [-- --count 10000] [--vm-count 10000] [--rounds 3] [--no-vm] [--no-vm-cli] [--json FILE]
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { PhaseTimes, RunResult } from './xfrm-run.js';
import { bundleForNode } from '../test/kernel/host/cli-bundle.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const RUNNER = `${ROOT}dist/bench/xfrm-run.mjs`;

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    'vm-count': { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    'vm-rounds': { type: 'string', default: '1' },
    'no-vm': { type: 'boolean', default: false },
    'no-host': { type: 'boolean', default: false },
    /** The CLI as whole processes in the VM: each re-reads every manifest under TCG (minutes). */
    'no-vm-cli': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

async function buildAll(): Promise<void> {
  process.stderr.write('[bench:xfrm] building the product (tsc, bundle) and the runner\n');
  try {
    execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    // tsc still emits on type errors; a bench measures speed, so it goes on and says so.
    const output = `${(error as { stdout?: Buffer }).stdout?.toString() ?? ''}`.trim();
    process.stderr.write(`[bench:xfrm] warning: tsc reported errors (dist/ was emitted anyway):\n${output.split('\n').slice(0, 5).join('\n')}\n`);
  }
  // The one-file bundle is what the VM runs (node_modules over 9p is slow); the host runs dist/.
  if (!values['no-vm']) execFileSync(process.execPath, ['scripts/bundle.mjs'], { cwd: ROOT, stdio: 'inherit' });
  await bundleForNode(`${ROOT}bench/xfrm-run.ts`, RUNNER);
}

function runHost(): RunResult {
  const output = execFileSync(
    process.execPath,
    [RUNNER, '--count', values.count!, '--rounds', values.rounds!, '--cli', `${process.execPath} ${ROOT}bin/ipsec-operator.js`],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  return JSON.parse(output.trim().split('\n').pop()!) as RunResult;
}

async function runVm(): Promise<RunResult> {
  const { bootVm } = await import('../test/infra/vm/vm.js');
  const { warmCrypto } = await import('../test/support/vm-cli.js');
  process.stderr.write('[bench:xfrm] booting the test VM\n');
  const vm = await bootVm();
  try {
    await warmCrypto(vm);
    const result = await vm.exec(
      {
        argv: [
          'node', RUNNER, '--count', values['vm-count']!, '--states', '--rounds', values['vm-rounds']!,
          ...(values['no-vm-cli'] ? [] : ['--cli', `node ${ROOT}dist/bundle/ipsec-operator.mjs`]),
        ],
      },
      { cwd: ROOT, timeoutMs: 3_600_000, env: { TMPDIR: '/run' } },
    );
    process.stderr.write(result.stderr);
    if (result.exitCode !== 0) throw new Error(`the run in the VM failed (exit ${result.exitCode})`);
    return JSON.parse(result.stdout.trim().split('\n').pop()!) as RunResult;
  } finally {
    await vm.shutdown();
  }
}

// NaN stands for "not measured" (the VM run without the CLI): shown as –.
const s = (x: number) => (Number.isNaN(x) ? '–' : x < 0.1 ? `${(x * 1000).toFixed(1)} ms` : `${x.toFixed(3)} s`);
const ratio = (a: number, b: number) => (Number.isNaN(a / b) ? '–' : `${(a / b).toFixed(2)}×`);
const verdict = (ok: boolean, measured = true) => (!measured ? 'not measured' : ok ? 'met' : 'MISSED');
const NOT_MEASURED = { seconds: Number.NaN, maxRssMiB: Number.NaN, exitCode: 0 };

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

function report(result: RunResult, where: 'host' | 'vm'): string {
  const { reference: ref, engine } = result;
  const cli = result.cli ?? { apply: NOT_MEASURED, diff: NOT_MEASURED, noopApply: NOT_MEASURED, change: NOT_MEASURED, prune: NOT_MEASURED, help: NOT_MEASURED };
  const measured = result.cli !== undefined;
  const what = result.withStates ? `${result.count} SAs + ${result.count} policies` : `${result.count} policies`;
  const applyTarget = where === 'host' ? 1.1 : 1.3;
  const rows: string[][] = [
    ['initial apply', s(engine.initial.total), s(cli.apply.seconds), `ip -batch add ${s(ref.batchAdd)}`, ratio(engine.initial.total, ref.batchAdd), ratio(cli.apply.seconds, ref.batchAdd),
      `in-process ≤ ${applyTarget}× ${verdict(engine.initial.total <= applyTarget * ref.batchAdd)}; CLI ≤ 4× ${verdict(cli.apply.seconds <= 4 * ref.batchAdd, measured)}`],
    ['no-op re-apply', s(engine.noop.total), s(cli.noopApply.seconds), `ip xfrm list ${s(ref.list)}`, ratio(engine.noop.total, ref.list), ratio(cli.noopApply.seconds, ref.list),
      `in-process ≤ 1.5× ${verdict(engine.noop.total <= 1.5 * ref.list)}`],
    ['no-op diff', '–', s(cli.diff.seconds), `ip xfrm list ${s(ref.list)}`, '–', ratio(cli.diff.seconds, ref.list), `CLI ≤ 0.5 s ${verdict(cli.diff.seconds <= 0.5, measured)}`],
    ['one change', s(engine.change.total), s(cli.change.seconds), '–', '–', '–', `in-process ≤ 20 ms ${verdict(engine.change.total <= 0.02)}`],
    ['delete all (prune)', s(engine.prune.total), s(cli.prune.seconds), `ip -batch delete ${s(ref.batchDelete)}`, ratio(engine.prune.total, ref.batchDelete), ratio(cli.prune.seconds, ref.batchDelete), '–'],
    ['--help', '–', s(cli.help.seconds), cli.nodeStart ? `node -e 0 ${s(cli.nodeStart.seconds)}` : '–', '–', cli.nodeStart ? ratio(cli.help.seconds, cli.nodeStart.seconds) : '–', `≤ 0.2 s ${verdict(cli.help.seconds <= 0.2, measured)}`],
  ];
  const peak = Math.max(cli.apply.maxRssMiB, cli.diff.maxRssMiB, cli.noopApply.maxRssMiB, cli.change.maxRssMiB, cli.prune.maxRssMiB);
  const breakdown = (name: string, t: PhaseTimes) => [name, s(t.total), `${s(t.dump)} (${t.dumps}${t.reads ? ` + ${t.reads} read` : ''})`, `${s(t.kernel)} (${t.changes})`, `${s(t.ledger)} (${t.commits})`, s(t.rest)];
  return [
    `\n${where === 'host' ? 'Host kernel' : 'Test VM (qemu TCG)'} ${result.kernel}: ${what}, median of ${result.rounds} round(s)` +
      `${result.load ? `, load average ${result.load.start} → ${result.load.end}` : ''}\n`,
    table(['phase', 'engine in-process', 'CLI process', 'reference', 'engine/ref', 'CLI/ref', 'target'], rows),
    measured
      ? `\nCLI peak RSS ${peak.toFixed(0)} MiB (apply ${cli.apply.maxRssMiB.toFixed(0)}, diff ${cli.diff.maxRssMiB.toFixed(0)}; --help ${cli.help.maxRssMiB.toFixed(0)}): ≤ 120 MB ${verdict(peak * 1.048576 <= 120)}`
      : `\nCLI processes not measured here (--no-vm-cli); peak RSS of the in-process run ${result.runnerMaxRssMiB.toFixed(0)} MiB`,
    `Input in-process: parse + validate ${result.input.documents} documents ${s(result.input.parse)} (${((result.input.parse / result.input.documents) * 1e6).toFixed(0)} µs each), build desired tables ${s(result.input.build)}`,
    `References: ip xfrm state list ${s(ref.stateList)}, ip xfrm policy list ${s(ref.policyList)}\n`,
    'Where the engine\'s time went (count in parentheses: dumps + identities read, kernel changes, ledger commits; rest = planning, fingerprints, bookkeeping):\n',
    table(['phase', 'total', 'dumps', 'kernel batches', 'ledger commits', 'rest'], [
      breakdown('initial apply', engine.initial),
      breakdown('no-op re-apply', engine.noop),
      breakdown('one change', engine.change),
      breakdown('delete all', engine.prune),
    ]),
  ].join('\n');
}

await buildAll();
const results: { host?: RunResult; vm?: RunResult } = {};
if (!values['no-host']) {
  results.host = runHost();
  process.stdout.write(`${report(results.host, 'host')}\n`);
}
if (!values['no-vm']) {
  results.vm = await runVm();
  process.stdout.write(`${report(results.vm, 'vm')}\n`);
}
if (values.json) writeFileSync(values.json, `${JSON.stringify(results, null, 1)}\n`);
