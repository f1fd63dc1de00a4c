/**
 * The lock of one ledger: an exclusive flock(2) on `<ledger>.lock`, which the kernel releases
 * when its holder closes the file or dies in any way (SIGKILL, OOM kill, a crashed node's reboot).
 *
 * What decides "held" is only the kernel lock, never the file's contents: a PID cannot tell a
 * dead holder from a live one across PID namespaces, or from ourselves when a container's agent
 * is PID 1 again after a restart. The holder writes who it is into the file (pid, host, command,
 * start time) so that a refused caller can say whom it waited for; nothing reads it otherwise.
 *
 * The lock file is created if missing and never unlinked, not even on release: two processes
 * that each opened a different inode under the same name (one before an unlink, one after) would
 * both hold "the" lock.
 */
import { constants as fileConstants, readlinkSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

import { fileSystemError, LedgerError } from './errors.js';
import { tryLockExclusive } from './flock.js';

/** How long `acquire` waits for a held lock by default: a CLI run waits out a short agent pass. */
export const DEFAULT_LOCK_WAIT_MS = 3_000;
const FIRST_RETRY_MS = 10;
const MAX_RETRY_MS = 250;

/**
 * Every lock held in this process, until released. Node closes a FileHandle that is garbage
 * collected, which would drop the kernel lock silently while we still think we hold it (seen in a
 * test within 300 ms of taking it); this set keeps each held lock reachable.
 */
const heldLocks = new Set<LedgerLock>();

export interface LockOptions {
  /** How long to keep retrying a held lock before failing; 0 tries once. Default 3 s. */
  readonly waitMs?: number;
  /** What the lock protects, for messages (default: the lock path without `.lock`). */
  readonly subject?: string;
}

/** Who holds a lock, as the holder wrote it. For messages only. */
export interface LockHolder {
  readonly pid?: number;
  readonly pidNamespace?: string;
  readonly hostname?: string;
  readonly command?: string;
  readonly since?: string;
}

export class LedgerLock {
  readonly path: string;
  #handle: FileHandle | undefined;

  private constructor(path: string, handle: FileHandle) {
    this.path = path;
    this.#handle = handle;
  }

  /**
   * Opens (creating) `path` and takes its exclusive lock, retrying with backoff while another
   * holds it, up to `waitMs`. Fails with a LedgerError: code LOCKED naming the holder, or the
   * file-system condition (read-only, permission, space) naming the directory.
   */
  static async acquire(path: string, options: LockOptions = {}): Promise<LedgerLock> {
    const waitMs = options.waitMs ?? DEFAULT_LOCK_WAIT_MS;
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new RangeError(`lock wait must be a finite number of milliseconds >= 0, got ${waitMs}`);
    const subject = options.subject ?? path.replace(/\.lock$/, '');
    let handle: FileHandle;
    try {
      // O_CREAT without O_TRUNC: the contents belong to whoever holds the lock right now.
      handle = await open(path, fileConstants.O_RDWR | fileConstants.O_CREAT, 0o600);
    } catch (error) {
      throw fileSystemError(error, dirname(path), `opening the lock file ${path}`);
    }
    try {
      const started = performance.now(); // monotonic: a clock step must not stretch or cut the wait
      for (let delay = FIRST_RETRY_MS; ; delay = Math.min(delay * 2, MAX_RETRY_MS)) {
        const attempt = tryLockExclusive(handle.fd);
        if (attempt.locked) break;
        if (!attempt.held) {
          throw new LedgerError(`cannot lock ${path}: flock failed (${attempt.code}); the state directory's file system may not support locks`, { code: attempt.code, directory: dirname(path) });
        }
        const left = started + waitMs - performance.now();
        if (left <= 0) throw new LedgerError(await lockedMessage(subject, path, waitMs), { code: 'LOCKED', directory: dirname(path) });
        // Jitter keeps a crowd of waiters from retrying in step.
        await sleep(Math.min(left, delay / 2 + Math.random() * (delay / 2)));
      }
      await recordHolder(handle);
      const lock = new LedgerLock(path, handle);
      heldLocks.add(lock);
      return lock;
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
  }

  /** Whether this object still holds the lock (until `release`). */
  get held(): boolean {
    return this.#handle !== undefined;
  }

  /** Releases the lock by closing the descriptor; the file stays. Idempotent. */
  async release(): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    heldLocks.delete(this);
    await handle.close();
  }
}

/** Reads what the holder of `path` wrote about itself; empty when it wrote nothing (yet). */
export async function readLockHolder(path: string): Promise<LockHolder> {
  try {
    const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as LockHolder) : {};
  } catch {
    return {};
  }
}

async function lockedMessage(subject: string, path: string, waitMs: number): Promise<string> {
  const holder = await readLockHolder(path);
  const who =
    typeof holder.pid === 'number'
      ? `process ${holder.pid}${holder.pidNamespace === undefined ? '' : ` of ${holder.pidNamespace}`}` +
        `${holder.hostname === undefined ? '' : ` on ${holder.hostname}`}` +
        `${holder.command === undefined ? '' : ` (${holder.command})`}` +
        `${holder.since === undefined ? '' : `, holding it since ${holder.since}`}`
      : 'a process that has not recorded who it is (it may be starting)';
  return `ownership ledger ${subject} is locked by ${who}; another ipsec-operator is changing this namespace (waited ${waitMs} ms)`;
}

/** Replaces the file's contents with who we are. Best effort: the lock is already ours. */
async function recordHolder(handle: FileHandle): Promise<void> {
  const holder: LockHolder = {
    pid: process.pid,
    pidNamespace: pidNamespace(),
    hostname: hostname(),
    command: process.argv.slice(1, 3).join(' ').slice(0, 200) || process.argv0,
    since: new Date().toISOString(),
  };
  const bytes = Buffer.from(`${JSON.stringify(holder)}\n`);
  try {
    await handle.truncate(0);
    await handle.write(bytes, 0, bytes.length, 0);
  } catch {
    // A full disk must not keep us from a lock we hold; the message of a waiter is poorer.
  }
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}
