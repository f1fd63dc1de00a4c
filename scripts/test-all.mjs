#!/usr/bin/env node
// `npm test`: every test layer, one after the other (each boots its own infrastructure, and
// two cores cannot carry a VM and a control plane for every layer at once). Every layer runs
// even when an earlier one failed; the exit status is non-zero if any failed.
import { spawnSync } from 'node:child_process';

const layers = ['unit', 'kernel', 'vm', 'vm-6.12', 'controlplane', 'e2e', 'e2e-6.12', 'node'];
const only = process.argv.slice(2);
const results = [];
for (const layer of only.length > 0 ? only : layers) {
  const started = Date.now();
  console.log(`\n===== ${layer} =====`);
  const run = spawnSync('npx', ['vitest', 'run', '--project', layer], { stdio: 'inherit' });
  results.push({ layer, status: run.status === 0 ? 'passed' : `FAILED (exit ${run.status ?? run.signal})`, seconds: ((Date.now() - started) / 1000).toFixed(1) });
}
console.log('\nlayer         result      seconds');
for (const { layer, status, seconds } of results) console.log(`${layer.padEnd(13)} ${status.padEnd(11)} ${seconds.padStart(7)}`);
process.exit(results.every((result) => result.status === 'passed') ? 0 : 1);
