// Benchmark (not a test): installing and removing N XFRM policies in a fresh network namespace
// with the engine's pipelined applyBatch, against `ip -batch` doing the same in the same run.
// Prints a table of times and the ratio. Run: npm run bench:policies [-- N]   (root)
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { XfrmClient } from '../src/xfrm/client.js';
import { buildSecurityPolicy } from '../src/model/build.js';
import type { SecurityPolicy } from '../src/xfrm/types.js';

const count = Number(process.argv[2] ?? 10_000);
const rounds = 3;

function policies(): SecurityPolicy[] {
  return Array.from({ length: count }, (_, i) => {
    const built = buildSecurityPolicy(
      {
        direction: 'out',
        priority: 100,
        selector: { source: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`, destination: '192.0.2.1/32' },
        templates: [{ protocol: 'esp', reqid: 1 }],
      },
      { keys: { lookup: () => 'missing-secret' }, resolveDevice: () => undefined },
    );
    if (!built.ok) throw new Error(JSON.stringify(built.errors));
    return built.value;
  });
}

function ipBatch(verb: 'add' | 'delete'): string {
  return Array.from({ length: count }, (_, i) => {
    const selector = `src 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 dst 192.0.2.1/32 dir out`;
    return verb === 'add' ? `xfrm policy add ${selector} priority 100 tmpl proto esp reqid 1 mode transport` : `xfrm policy delete ${selector}`;
  }).join('\n') + '\n';
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const netns = `bench-${randomBytes(3).toString('hex')}`;
execFileSync('ip', ['netns', 'add', netns]);
const results: { what: string; engine: number; ip: number }[] = [];
try {
  const entries = policies();
  const client = await XfrmClient.open({ netns });
  for (let round = 0; round < rounds; round++) {
    let start = process.hrtime.bigint();
    const added = await client.applyBatch(entries.map((policy) => ({ op: 'add-policy' as const, policy })));
    const engineAdd = seconds(start);
    if (added.some((result) => !result.ok)) throw new Error('engine add failed');
    start = process.hrtime.bigint();
    const deleted = await client.applyBatch(entries.map((policy) => ({ op: 'delete-policy' as const, id: policy.id })));
    const engineDelete = seconds(start);
    if (deleted.some((result) => !result.ok)) throw new Error('engine delete failed');

    start = process.hrtime.bigint();
    execFileSync('ip', ['-n', netns, '-batch', '-'], { input: ipBatch('add') });
    const ipAdd = seconds(start);
    start = process.hrtime.bigint();
    execFileSync('ip', ['-n', netns, '-batch', '-'], { input: ipBatch('delete') });
    const ipDelete = seconds(start);
    results.push({ what: `add ${count} (round ${round + 1})`, engine: engineAdd, ip: ipAdd }, { what: `delete ${count} (round ${round + 1})`, engine: engineDelete, ip: ipDelete });
  }
  client.close();
} finally {
  execFileSync('ip', ['netns', 'del', netns]);
}
console.log('\noperation                   engine s   ip -batch s   engine/ip');
for (const { what, engine, ip } of results) {
  console.log(`${what.padEnd(27)} ${engine.toFixed(3).padStart(8)}   ${ip.toFixed(3).padStart(11)}   ${(engine / ip).toFixed(2).padStart(9)}`);
}
