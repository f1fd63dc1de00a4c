#!/usr/bin/env node
// `npm test`: every test layer, one after the other (each boots its own infrastructure, and
// two cores cannot carry a VM and a control plane for every layer at once). Every layer runs
// even when an earlier one failed; the exit status is non-zero if any failed.
//
// Each layer also writes vitest's JSON report, and the end of the output names every failed
// test with the first line of its error, just above the table: CI keeps only the tail of a
// run's output, and a layer that failed must say which test failed and why there.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// node: the chart on a real kubelet + containerd 2 in the test VM (test/node/); it needs the
// image and the node binaries that scripts/bootstrap.sh builds.
// e2e-mesh: test/e2e-mesh/mesh-churn.test.ts on 6.1 (rotation rounds, a join, a SIGKILLed agent, a
// boot id change and a leave under traffic, the key scan, the agents' mesh metrics) and
// mesh-modes.test.ts (dual-stack transport and tunnel mode for pod CIDRs, a round each, failClosed) and
// mesh-natt.test.ts (ESP in UDP across a switch that drops protocol 50); its 6.12
// twin (e2e-mesh-6.12) is `npm run test:e2e-mesh`, outside CI's time bound.
const layers = ['unit', 'kernel', 'vm', 'vm-6.12', 'controlplane', 'e2e', 'e2e-6.12', 'e2e-mesh', 'node'];
const only = process.argv.slice(2);
const reports = mkdtempSync(join(tmpdir(), 'ipsec-operator-test-all-'));
const results = [];
for (const layer of only.length > 0 ? only : layers) {
  const started = Date.now();
  console.log(`\n===== ${layer} =====`);
  const report = join(reports, `${layer}.json`);
  const run = spawnSync('npx', ['vitest', 'run', '--project', layer, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`], { stdio: 'inherit' });
  const status = run.status === 0 ? 'passed' : `FAILED (exit ${run.status ?? run.signal})`;
  results.push({ layer, status, seconds: ((Date.now() - started) / 1000).toFixed(1), failures: run.status === 0 ? [] : failuresIn(report) });
}
rmSync(reports, { recursive: true, force: true });

const failed = results.filter((result) => result.status !== 'passed');
if (failed.length > 0) {
  console.log('\nfailed tests (layer, file > test: first line of the error):');
  for (const { layer, failures } of failed) {
    if (failures.length === 0) console.log(`  ${layer}: no failed test in its report (a setup or teardown error, or a crash: see the layer's output)`);
    for (const failure of failures.slice(0, 6)) console.log(`  ${layer}: ${failure}`);
    if (failures.length > 6) console.log(`  ${layer}: ... and ${failures.length - 6} more`);
  }
}
console.log('\nlayer         result      seconds');
for (const { layer, status, seconds } of results) console.log(`${layer.padEnd(13)} ${status.padEnd(11)} ${seconds.padStart(7)}`);
process.exit(failed.length === 0 ? 0 : 1);

/** The failed tests of a vitest JSON report, one line each (at most 400 characters). */
function failuresIn(path) {
  let report;
  try {
    report = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
  const lines = [];
  for (const file of report.testResults ?? []) {
    const name = file.name?.replace(`${process.cwd()}/`, '') ?? '?';
    for (const test of file.assertionResults ?? []) {
      if (test.status !== 'failed') continue;
      lines.push(oneLine(`${name} > ${test.fullName}: ${withoutStack(test.failureMessages?.[0] ?? '')}`));
    }
    // A file that failed outside any test (its import, a hook): vitest reports the file's message.
    if (file.status === 'failed' && !(file.assertionResults ?? []).some((test) => test.status === 'failed')) lines.push(oneLine(`${name}: ${file.message ?? 'failed'}`));
  }
  return lines;
}

/** An error's text without its stack frames (the file and line are in the layer's own output). */
function withoutStack(message) {
  return message.split('\n').filter((line) => !/^\s+at /.test(line)).join(' ');
}

function oneLine(text) {
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/\x1b\[[0-9;]*m/g, '').replace(/\s+/g, ' ').trim();
  return flat.length > 400 ? `${flat.slice(0, 397)}...` : flat;
}
