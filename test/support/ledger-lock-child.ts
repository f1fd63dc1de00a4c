/**
 * A separate process that takes a ledger lock, for tests that need a real second holder (a lock
 * held by this very process would prove nothing about other processes, namespaces or deaths).
 * Started, bundled, by ledger-lock-process.ts. Modes:
 *
 *   hold LOCK [WAIT_MS]         take the lock, report {"event":"locked",...}, then hold it until killed
 *   race LOCK LOG COUNTER       take the lock (waiting), log start/end around a read-increment-replace
 *                               of COUNTER, release and exit: for mutual-exclusion tests
 *   prepare DIRECTORY           what Ledger.open does to a state directory before reading it (create,
 *                               preflight, lock): for tests run as another user
 *
 * Every report is one JSON line on stdout. A failure to lock reports {"event":"error"} and exits 3.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { assertWritable, ensureDirectory, replaceFile } from '../../src/ownership/durable-file.js';
import { LedgerError } from '../../src/ownership/errors.js';
import { LedgerLock } from '../../src/ownership/lock.js';

function report(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...event, pid: process.pid, hostPid: hostPid() })}\n`);
}

/** Our pid as the host sees it (the first NSpid field), when /proc is the host's. */
function hostPid(): number {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('NSpid:'));
  return Number(line?.split(/\s+/)[1] ?? process.pid);
}

async function main(): Promise<void> {
  const [mode, lockPath, ...rest] = process.argv.slice(2);
  if (lockPath === undefined) throw new Error('usage: ledger-lock-child.ts hold|race LOCK ...');
  switch (mode) {
    case 'hold': {
      await LedgerLock.acquire(lockPath, { waitMs: Number(rest[0] ?? 0) });
      // We keep no reference to the lock: a collected FileHandle is closed by Node, and the lock
      // must stay held regardless (started with --expose-gc, so collect for certain).
      for (let i = 0; i < 3; i++) {
        (globalThis as { gc?: () => void }).gc?.();
        await sleep(20);
      }
      report({ event: 'locked' });
      setInterval(() => undefined, 1 << 30); // hold until killed
      return;
    }
    case 'race': {
      const [log, counter] = rest;
      if (log === undefined || counter === undefined) throw new Error('race needs LOG and COUNTER');
      const lock = await LedgerLock.acquire(lockPath, { waitMs: 120_000 });
      appendFileSync(log, `start ${process.pid}\n`);
      const value = Number(readFileSync(counter, 'utf8'));
      await sleep(Math.random() * 5); // widen the window a lost update would need
      await replaceFile(counter, `${value + 1}\n`);
      appendFileSync(log, `end ${process.pid}\n`);
      await lock.release();
      report({ event: 'done' });
      return;
    }
    case 'prepare': {
      const directory = lockPath;
      await ensureDirectory(directory);
      await assertWritable(directory);
      await (await LedgerLock.acquire(join(directory, 'ledger.json.lock'), { waitMs: 0 })).release();
      report({ event: 'done' });
      return;
    }
    default:
      throw new Error(`unknown mode ${String(mode)}`);
  }
}

main().catch((error: unknown) => {
  report({ event: 'error', code: error instanceof LedgerError ? error.code : undefined, message: (error as Error).message });
  process.exit(3);
});
