// Probe (not a test, not the bench table): the kernel batch phase on its own. XfrmClient.applyBatch
// of N NEWPOLICY requests (the bench workload's policies) against `ip -batch` adding the same
// policies, in the same round, each in a fresh network namespace, with user and system CPU time
// apart, under a few batch shapes (window size, one request per datagram). Rounds cycle through
// the shapes, so the first round of the process also shows the cold (not yet optimised) cost.
// Needs root.
//   node --import ./scripts/ts-register.mjs bench/xfrm-batch-probe.ts [rounds]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { desiredTables } from '../src/model/desired.js';
import { parseManifests } from '../src/model/manifests.js';
import { XfrmClient, type XfrmClientOptions } from '../src/xfrm/client.js';
import { ipBatch, manifestText, workload } from './xfrm-workload.js';

const rounds = Number(process.argv[2] ?? 6);
const work = workload(10000, false);
const manifests = parseManifests([{ file: 'probe.yaml', text: manifestText(work, {}) }]);
const built = desiredTables(manifests, { labels: undefined, resolveDevice: () => undefined });
const requests = built.tables.policies.map(({ entry }) => ({ op: 'add-policy' as const, policy: entry }));
const dir = mkdtempSync(join(tmpdir(), 'xfrm-batch-probe-'));
const batchFile = join(dir, 'add.batch');
writeFileSync(batchFile, ipBatch(work, 'add'));
// The default window (from the receive buffer), a small window, one request per datagram.
const shapes: Array<Pick<XfrmClientOptions, 'maxInFlight' | 'maxDatagramBytes'>> = [{}, { maxInFlight: 64 }, { maxDatagramBytes: 512 }];
try {
  for (let round = 0; round < rounds; round += 1) {
    const shape = shapes[round % shapes.length]!;
    execFileSync('ip', ['netns', 'add', 'probe-ip']);
    execFileSync('ip', ['netns', 'add', 'probe-engine']);
    try {
      let start = performance.now();
      execFileSync('ip', ['-n', 'probe-ip', '-batch', batchFile]);
      const ipMs = performance.now() - start;
      const client = await XfrmClient.open({ netns: '/run/netns/probe-engine', ...shape });
      start = performance.now();
      const cpu = process.cpuUsage();
      const results = await client.applyBatch(requests);
      const used = process.cpuUsage(cpu);
      const engineMs = performance.now() - start;
      client.close();
      const failed = results.filter((result) => !result.ok).length;
      process.stdout.write(
        `round ${round} ${JSON.stringify(shape)}: ip -batch ${ipMs.toFixed(0)} ms; applyBatch ${engineMs.toFixed(0)} ms wall, ` +
          `user ${(used.user / 1000).toFixed(0)} ms, sys ${(used.system / 1000).toFixed(0)} ms, ${failed} failed; load ${loadavg()[0]!.toFixed(1)}\n`,
      );
    } finally {
      execFileSync('ip', ['netns', 'del', 'probe-ip']);
      execFileSync('ip', ['netns', 'del', 'probe-engine']);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
