#!/usr/bin/env node
// `npm test`: every test layer, one after the other (each boots its own infrastructure, and
// two cores cannot carry a VM and a control plane for every layer at once). Every layer runs
// even when an earlier one failed; the exit status is non-zero if any failed.
import { spawnSync } from 'node:child_process';

// node: the chart on a real kubelet + containerd 2 in the test VM (test/node/); it needs the
// image and the node binaries that scripts/bootstrap.sh builds.
// e2e-mesh: test/e2e-mesh/mesh-churn.test.ts on 6.1 (rotation rounds, a join, a SIGKILLed agent, a
// boot id change and a leave under traffic, the key scan, the agents' mesh metrics) and
// mesh-modes.test.ts (dual-stack transport and tunnel mode for pod CIDRs, a round each); its 6.12
// twin (e2e-mesh-6.12) is `npm run test:e2e-mesh`, outside CI's time bound.
const layers = ['unit', 'kernel', 'vm', 'vm-6.12', 'controlplane', 'e2e', 'e2e-6.12', 'e2e-mesh', 'node'];
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
