/**
 * The ledger on file systems and in namespaces that production gives it (root): a full tmpfs, a
 * read-only bind mount, a lock holder in another PID namespace, and the container case, where
 * every agent is PID 1 of its own namespace and the previous one was SIGKILLed.
 *
 * Mounts are made under a temporary directory in the host's mount namespace and unmounted after;
 * PID namespaces come from `unshare --pid --fork` (without --mount-proc, so that the child can
 * read its host pid from /proc/self/status and be killed from here).
 */
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { replaceFile, writeFully } from '../../../src/ownership/durable-file.js';
import { LedgerError } from '../../../src/ownership/errors.js';
import { Ledger } from '../../../src/ownership/ledger.js';
import { LedgerLock } from '../../../src/ownership/lock.js';
import { lockChildBundle, startLockChild, type LockChild } from '../../support/ledger-lock-process.js';

const NEW_PID_NAMESPACE = ['unshare', '--pid', '--fork'];

let root: string;
let bundle: string;
const mounts: string[] = [];
const children: LockChild[] = [];

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('ledger file-system tests need root (mount, unshare --pid)');
  root = await mkdtemp(join(tmpdir(), 'ipsecop-ledgerfs-'));
  bundle = await lockChildBundle();
}, 60_000);

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.process.exitCode === null && child.process.signalCode === null) {
      const report = await child.report.catch(() => undefined);
      if (report !== undefined) killQuietly(report.hostPid);
      child.process.kill('SIGKILL');
    }
    await child.exited;
  }
});

afterAll(async () => {
  // Lazy: a descriptor left open by a failed test must not leave the mount behind.
  for (const mountpoint of mounts.reverse()) execFileSync('umount', ['--lazy', mountpoint]);
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

function mount(...args: string[]): void {
  execFileSync('mount', args, { stdio: 'pipe' });
  mounts.push(args[args.length - 1] as string);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Every file in `directory` with its contents, to prove that nothing changed; the lock file only
 * by name (each holder rewrites who it is, which is not ledger state).
 */
async function snapshot(directory: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const name of (await readdir(directory)).sort()) files[name] = name.endsWith('.lock') ? '(lock)' : await readFile(join(directory, name), 'utf8');
  return files;
}

/** Writes zeros to `path` until the file system refuses with ENOSPC. */
async function fill(path: string): Promise<void> {
  const handle = await open(path, 'w');
  const chunk = Buffer.alloc(4096);
  try {
    for (;;) await handle.write(chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    await handle.close();
  }
}

function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

function startInNewPidNamespace(args: readonly string[]): LockChild {
  const child = startLockChild(bundle, args, NEW_PID_NAMESPACE);
  children.push(child);
  return child;
}

describe('a full state directory', () => {
  it('fails a commit with ENOSPC naming the directory, keeps the old ledger, leaves no temporary', { timeout: 60_000 }, async () => {
    const directory = join(root, 'full');
    await mkdir(directory);
    mount('-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'ipsecop-ledgerfs', directory);
    const path = join(directory, 'ledger.json');
    const ledger = await Ledger.open(path);
    try {
      await ledger.commit({ remove: ['absent-before-the-disk-filled'] });
      const filler = join(directory, 'filler');
      await fill(filler);
      const before = await snapshot(directory);

      // More than a page, so that no slack in a partly used page can absorb it.
      const remove = Array.from({ length: 1000 }, (_, i) => `absent-${i}`);
      const error = await rejection(ledger.commit({ remove }));
      expect(error).toBeInstanceOf(LedgerError);
      expect(error).toMatchObject({ code: 'ENOSPC', directory });
      expect((error as Error).message).toContain(`no space left on the file system of state directory ${directory}`);
      expect(await snapshot(directory)).toEqual(before);

      // The file layer itself: the replace fails, the old file stays, its temporary is gone.
      const replaced = await rejection(replaceFile(path, 'x'.repeat(64 * 1024)));
      expect(replaced).toMatchObject({ name: 'LedgerError', code: 'ENOSPC', directory });
      expect((replaced as Error).message).toContain('the previous version of ledger.json is intact');
      expect(await snapshot(directory)).toEqual(before);

      // A write that runs out of space is short, not an error, until one loops: writeFully does.
      const handle = await open(join(directory, 'ledger.json.tmp-short'), 'w');
      try {
        await expect(writeFully(handle, 'x'.repeat(20_000), 0)).rejects.toMatchObject({ code: 'ENOSPC' });
      } finally {
        await handle.close();
        await rm(join(directory, 'ledger.json.tmp-short'));
      }

      // Opening on a full disk fails at the preflight, before anything could be applied.
      await ledger.close();
      const opened = await rejection(Ledger.open(path));
      expect(opened).toMatchObject({ name: 'LedgerError', code: 'ENOSPC', directory });
      expect((opened as Error).message).toContain('checking that the state directory is writable');
      expect(await snapshot(directory)).toEqual(before);

      // Space again: the same ledger opens and commits.
      await rm(filler);
      const again = await Ledger.open(path);
      await again.commit({ remove });
      await again.close();
      expect((await readdir(directory)).filter((name) => name.includes('.tmp-'))).toEqual([]);
    } finally {
      await ledger.close();
    }
  });
});

describe('a read-only state directory', () => {
  it('fails at open with a clear read-only error and changes nothing', { timeout: 60_000 }, async () => {
    const writable = join(root, 'rw');
    const readOnly = join(root, 'ro');
    await mkdir(writable);
    await mkdir(readOnly);
    const ledger = await Ledger.open(join(writable, 'ledger.json'));
    await ledger.commit({ remove: ['absent'] });
    await ledger.close();
    const before = await snapshot(writable);
    mount('--bind', writable, readOnly);
    execFileSync('mount', ['-o', 'remount,bind,ro', readOnly], { stdio: 'pipe' });

    const existing = await rejection(Ledger.open(join(readOnly, 'ledger.json')));
    expect(existing).toBeInstanceOf(LedgerError);
    expect(existing).toMatchObject({ code: 'EROFS', directory: readOnly });
    expect((existing as Error).message).toContain(`state directory ${readOnly} is on a read-only file system`);

    const fresh = await rejection(Ledger.open(join(readOnly, 'netns-x', 'ledger.json')));
    expect(fresh).toMatchObject({ name: 'LedgerError', code: 'EROFS', directory: join(readOnly, 'netns-x') });

    expect(await snapshot(writable)).toEqual(before);
  });
});

describe('a state directory the agent may not write', () => {
  it('fails with permission denied naming the directory, for an existing and a missing one', { timeout: 60_000 }, async () => {
    await chmod(root, 0o755); // let the unprivileged user reach it
    const state = join(root, 'perm');
    await mkdir(state, { mode: 0o755 });
    const asNobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
    for (const directory of [state, join(state, 'host')]) {
      const child = startLockChild(bundle, ['prepare', directory], asNobody);
      children.push(child);
      const report = await child.report;
      expect(report).toMatchObject({ event: 'error', code: 'EACCES' });
      expect(report.message).toContain(`permission denied on state directory ${directory}`);
    }
    expect(await readdir(state)).toEqual([]);
  });
});

describe('locks across PID namespaces', () => {
  it('a holder in another PID namespace blocks us, and its SIGKILL releases the lock at once', { timeout: 60_000 }, async () => {
    const lockPath = join(root, 'other-ns.lock');
    const holder = startInNewPidNamespace(['hold', lockPath]);
    const report = await holder.report;
    expect(report).toMatchObject({ event: 'locked', pid: 1 });
    expect(report.hostPid).not.toBe(1);

    const refused = await rejection(LedgerLock.acquire(lockPath, { waitMs: 200 }));
    expect(refused).toMatchObject({ name: 'LedgerError', code: 'LOCKED' });
    // Named by what the holder wrote: its own pid 1, in a PID namespace that is not ours.
    expect((refused as Error).message).toMatch(/is locked by process 1 of pid:\[\d+\]/);
    expect((refused as Error).message).not.toContain(readlinkSync('/proc/self/ns/pid'));

    process.kill(report.hostPid, 'SIGKILL');
    await holder.exited;
    const lock = await LedgerLock.acquire(lockPath, { waitMs: 0 });
    await lock.release();
  });

  it('the container case: PID 1 SIGKILLed, the next PID 1 takes the lock at once', { timeout: 60_000 }, async () => {
    const lockPath = join(root, 'container.lock');
    const first = startInNewPidNamespace(['hold', lockPath]);
    const firstReport = await first.report;
    expect(firstReport).toMatchObject({ event: 'locked', pid: 1 });

    // While it lives, another PID 1 is refused (and names "process 1": not itself).
    const rival = startInNewPidNamespace(['hold', lockPath, '0']);
    expect(await rival.report).toMatchObject({ event: 'error', code: 'LOCKED', pid: 1 });

    process.kill(firstReport.hostPid, 'SIGKILL');
    await first.exited;
    // The lock file still says "process 1", as a live PID 1 would read it: not a holder.
    expect(JSON.parse(await readFile(lockPath, 'utf8'))).toMatchObject({ pid: 1 });
    const next = startInNewPidNamespace(['hold', lockPath, '0']);
    expect(await next.report).toMatchObject({ event: 'locked', pid: 1 });
  });
});
