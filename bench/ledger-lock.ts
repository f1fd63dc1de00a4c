// Benchmark (not a test): the ledger's lock and file layer. Prints
//  - uncontended LedgerLock acquire + release (open, flock, record the holder, close),
//  - assertWritable (the preflight at Ledger.open) and replaceFile of a 100 KiB ledger,
//  - how long a waiter takes to get the lock after its holder (another process) is SIGKILLed:
//    bounded by the retry backoff (at most 250 ms between attempts).
// Run: node --import ./scripts/ts-register.mjs bench/ledger-lock.ts [ROUNDS]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { assertWritable, replaceFile } from '../src/ownership/durable-file.js';
import { LedgerLock } from '../src/ownership/lock.js';
import { lockChildBundle, startLockChild } from '../test/support/ledger-lock-process.js';

const rounds = Number(process.argv[2] ?? 500);
const directory = await mkdtemp(join(tmpdir(), 'ipsecop-bench-lock-'));
const lockPath = join(directory, 'ledger.json.lock');

async function perOperation(label: string, count: number, operation: () => Promise<void>): Promise<void> {
  const started = performance.now();
  for (let i = 0; i < count; i++) await operation();
  const each = (performance.now() - started) / count;
  console.log(`${label.padEnd(48)} ${each.toFixed(3).padStart(9)} ms each (${count} rounds)`);
}

try {
  await perOperation('lock acquire + release, uncontended', rounds, async () => {
    await (await LedgerLock.acquire(lockPath, { waitMs: 0 })).release();
  });
  await perOperation('assertWritable (Ledger.open preflight)', Math.min(rounds, 200), () => assertWritable(directory));
  const ledger = 'x'.repeat(100 * 1024);
  await perOperation('replaceFile, 100 KiB (fsync, rename, fsync dir)', Math.min(rounds, 200), () => replaceFile(join(directory, 'ledger.json'), ledger));

  const bundle = await lockChildBundle();
  const takeovers: number[] = [];
  for (let i = 0; i < 5; i++) {
    const holder = startLockChild(bundle, ['hold', lockPath]);
    await holder.report;
    const waiting = LedgerLock.acquire(lockPath, { waitMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 600)); // let the backoff reach its cap
    const killed = performance.now();
    holder.process.kill('SIGKILL');
    await (await waiting).release();
    takeovers.push(performance.now() - killed);
    await holder.exited;
  }
  console.log(`${'waiter gets the lock after holder SIGKILL'.padEnd(48)} ${takeovers.map((ms) => ms.toFixed(0)).join(', ')} ms (5 rounds)`);
} finally {
  await rm(directory, { recursive: true, force: true });
}
