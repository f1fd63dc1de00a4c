/**
 * The ledger lock against real second processes: what holds it is the kernel's flock on the open
 * file, so a waiter names the holder, a SIGKILLed holder frees it at once, a lock file's contents
 * (empty, or naming a live pid such as our own) never count as a holder, and twenty processes
 * racing for it take turns.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { LedgerError } from '../../src/ownership/errors.js';
import { tryLockExclusive } from '../../src/ownership/flock.js';
import { LedgerLock, readLockHolder } from '../../src/ownership/lock.js';
import { lockChildBundle, startLockChild, type LockChild } from '../support/ledger-lock-process.js';

let directory: string;
let lockPath: string;
let bundle: string;
const children: LockChild[] = [];

beforeAll(async () => {
  bundle = await lockChildBundle();
}, 60_000);

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ipsecop-lock-'));
  lockPath = join(directory, 'ledger.json.lock');
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    await child.exited;
  }
  await rm(directory, { recursive: true, force: true });
});

function start(args: readonly string[]): LockChild {
  const child = startLockChild(bundle, args);
  children.push(child);
  return child;
}

describe('ledger lock', () => {
  it('makes a second process wait, then fail naming the holder; the holder SIGKILLed frees it at once', { timeout: 30_000 }, async () => {
    const holder = start(['hold', lockPath]);
    const report = await holder.report;
    expect(report.event).toBe('locked');

    const refused = await LedgerLock.acquire(lockPath, { waitMs: 300, subject: 'ledger.json' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(LedgerError);
    expect((refused as LedgerError).code).toBe('LOCKED');
    const message = (refused as LedgerError).message;
    expect(message).toContain(`is locked by process ${report.pid}`);
    expect(message).toContain(`on ${hostname()}`);
    expect(message).toMatch(/\(\S*ledger-lock-child-\d+\.mjs hold\)/);
    expect(message).toMatch(/holding it since \d{4}-\d\d-\d\dT/);
    expect(message).toContain('waited 300 ms');

    holder.process.kill('SIGKILL');
    expect(await holder.exited).toEqual({ code: null, signal: 'SIGKILL' });
    // No stale-lock judgement, no wait: the kernel dropped the lock with the process.
    const lock = await LedgerLock.acquire(lockPath, { waitMs: 0 });
    expect(lock.held).toBe(true);
    expect((await readLockHolder(lockPath)).pid).toBe(process.pid);
    await lock.release();
    expect(lock.held).toBe(false);
    // The lock file stays: unlinking it would let two holders lock two different inodes.
    expect(await readdir(directory)).toEqual(['ledger.json.lock']);
  });

  it('gives the lock to a waiter when the holder dies while it waits', { timeout: 30_000 }, async () => {
    const holder = start(['hold', lockPath]);
    await holder.report;
    const waiting = LedgerLock.acquire(lockPath, { waitMs: 20_000 });
    holder.process.kill('SIGKILL');
    const lock = await waiting;
    expect((await readLockHolder(lockPath)).pid).toBe(process.pid);
    await lock.release();
  });

  it('holds against a second open in the same process until released', async () => {
    const first = await LedgerLock.acquire(lockPath, { waitMs: 0 });
    await expect(LedgerLock.acquire(lockPath, { waitMs: 0 })).rejects.toMatchObject({ code: 'LOCKED' });
    await first.release();
    await first.release(); // idempotent
    const second = await LedgerLock.acquire(lockPath, { waitMs: 0 });
    await second.release();
  });

  it('does not take a lock file’s contents for a holder: empty, or naming a live process', async () => {
    await writeFile(lockPath, '');
    const fromEmpty = await LedgerLock.acquire(lockPath, { waitMs: 0 });
    await fromEmpty.release();
    // What the PID-file lock did after a container restart: "process 1" (or our own pid) alive.
    for (const stale of ['1\n', `${process.pid}\n`, JSON.stringify({ pid: 1, hostname: 'gone' })]) {
      await writeFile(lockPath, stale);
      const lock = await LedgerLock.acquire(lockPath, { waitMs: 0 });
      expect(await readLockHolder(lockPath)).toMatchObject({ pid: process.pid, hostname: hostname() });
      await lock.release();
    }
  });

  it('says a holder that recorded nothing is unknown, not absent', async () => {
    const held = await LedgerLock.acquire(lockPath, { waitMs: 0 });
    await writeFile(lockPath, ''); // as if the holder had not written its details yet
    await expect(LedgerLock.acquire(lockPath, { waitMs: 0 })).rejects.toThrow(/locked by a process that has not recorded who it is/);
    await held.release();
  });

  it('reports the errno of a lock attempt that failed for another reason than a holder', async () => {
    // Above any descriptor limit, so certainly not open (a closed one could be reused meanwhile).
    expect(tryLockExclusive(1 << 30)).toMatchObject({ locked: false, held: false, code: 'EBADF' });
    expect(() => tryLockExclusive(-1)).toThrow(/not a file descriptor/);
  });

  it('refuses a negative or non-finite wait before touching the file', async () => {
    await expect(LedgerLock.acquire(lockPath, { waitMs: -1 })).rejects.toThrow(RangeError);
    await expect(LedgerLock.acquire(lockPath, { waitMs: Number.NaN })).rejects.toThrow(RangeError);
    expect(await readdir(directory)).toEqual([]);
  });

  it('lets 20 racing processes hold it one at a time, losing no update', { timeout: 120_000 }, async () => {
    const log = join(directory, 'log');
    const counter = join(directory, 'counter');
    await writeFile(log, '');
    await writeFile(counter, '0\n');
    const racers = Array.from({ length: 20 }, () => start(['race', lockPath, log, counter]));
    const reports = await Promise.all(racers.map((racer) => racer.report));
    expect(reports.map((report) => report.event)).toEqual(Array(20).fill('done'));

    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(40);
    // Mutual exclusion: every start is followed directly by the same process's end.
    for (let i = 0; i < lines.length; i += 2) {
      const pid = lines[i]?.split(' ')[1];
      expect([lines[i], lines[i + 1]]).toEqual([`start ${pid}`, `end ${pid}`]);
    }
    expect(new Set(lines.map((line) => line.split(' ')[1])).size).toBe(20);
    expect(Number(await readFile(counter, 'utf8'))).toBe(20);
    expect((await readdir(directory)).sort()).toEqual(['counter', 'ledger.json.lock', 'log']);
  });
});
