/**
 * Files that survive crashes and fail safely: the ledger's write path.
 *
 * - `replaceFile` writes a new version beside the old one under a unique temporary name
 *   (`<name>.tmp-<random>`, same directory so that rename stays atomic), fsyncs it, renames it
 *   over the old one and fsyncs the directory: a crash at any point leaves the old or the new
 *   version, never a torn one. If anything fails before the rename, the temporary is removed and
 *   the old version is untouched.
 * - A process killed mid-write still leaves its temporary behind; `removeLeftoverTemporaries`
 *   removes them, but only for a caller holding the file's lock (a temporary of a live writer is
 *   not a leftover).
 * - `assertWritable` proves, before anything is applied, that the directory takes a create,
 *   write, fsync and rename: an agent on a read-only or full state directory must find out at
 *   start, not between two kernel changes.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { fileSystemError, LedgerError } from './errors.js';
import type { LedgerLock } from './lock.js';

const TEMPORARY_INFIX = '.tmp-';
const PROBE_STEM = '.ipsec-operator-probe';

/**
 * Creates `directory` (and parents, mode 0700) if missing, with a clear error if it cannot.
 * Walks the path itself instead of `mkdir({ recursive: true })`, which reports a refusal on a
 * read-only file system as ENOENT.
 */
export async function ensureDirectory(directory: string): Promise<void> {
  try {
    if ((await stat(directory)).isDirectory()) return;
    throw notADirectory(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') throw notADirectory(directory, error);
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fileSystemError(error, directory, 'looking up the state directory');
  }
  const parent = dirname(directory);
  if (parent !== directory) await ensureDirectory(parent);
  try {
    await mkdir(directory, { mode: 0o700 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await stat(directory).catch(() => undefined))?.isDirectory()) return; // made by someone else meanwhile
    if (code === 'EEXIST' || code === 'ENOTDIR') throw notADirectory(directory, error);
    throw fileSystemError(error, directory, 'creating the state directory');
  }
}

function notADirectory(directory: string, cause?: unknown): LedgerError {
  return new LedgerError(`state directory ${directory} (or one of its parents) exists and is not a directory`, { code: 'ENOTDIR', directory, cause });
}

/**
 * Writes all of `data` at `position`. A write that runs out of space can be short without an
 * error (the kernel writes what fits); FileHandle.write returns that count and does not throw,
 * so a caller that does not loop would acknowledge a torn record. Looping makes the next
 * write(2) report ENOSPC (or EDQUOT) as an error.
 */
export async function writeFully(handle: FileHandle, data: string | Uint8Array, position: number): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten === 0) throw Object.assign(new Error('write(2) wrote nothing'), { code: 'EIO' });
    done += bytesWritten;
  }
}

/**
 * Writes `chunks` one after the other from `position` (each as `writeFully` does), so that a
 * large text never exists as one string or Buffer. Returns the number of bytes written.
 */
export async function writeChunksFully(handle: FileHandle, chunks: Iterable<string>, position: number): Promise<number> {
  let written = 0;
  for (const chunk of chunks) {
    const bytes = Buffer.from(chunk);
    await writeFully(handle, bytes, position + written);
    written += bytes.length;
  }
  return written;
}

/**
 * Atomically and durably replaces `path` with `contents` (see the module comment); an iterable
 * of strings is written chunk by chunk (`writeChunksFully`).
 */
export async function replaceFile(path: string, contents: string | Uint8Array | Iterable<string>, options: { readonly mode?: number; readonly what?: string } = {}): Promise<void> {
  const directory = dirname(path);
  const what = options.what ?? `writing ${path}`;
  const temporary = temporaryName(path);
  let renamed = false;
  try {
    const handle = await open(temporary, 'wx', options.mode ?? 0o600);
    try {
      if (typeof contents === 'string' || contents instanceof Uint8Array) await handle.writeFile(contents);
      else await writeChunksFully(handle, contents, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
    renamed = true;
    await syncDirectory(directory);
  } catch (error) {
    if (!renamed) {
      await rm(temporary, { force: true }).catch(() => undefined);
      throw fileSystemError(error, directory, what, `the previous version of ${basename(path)} is intact`);
    }
    throw fileSystemError(error, directory, `${what}: syncing the directory after the rename`, `the new version is in place but may not survive a crash`);
  }
}

/**
 * Removes temporaries that writers of `path` left behind when they were killed (this module's
 * `<name>.tmp-<random>`, the older `<name>.tmp-<pid>`, and `assertWritable` probes made for
 * `path`). `lock` must be the held lock of `path`. Returns the names removed.
 */
export async function removeLeftoverTemporaries(path: string, lock: LedgerLock): Promise<string[]> {
  if (!lock.held) throw new LedgerError(`refusing to remove temporaries of ${path} without holding its lock`, { code: 'LOCKED' });
  const directory = dirname(path);
  const prefix = `${basename(path)}${TEMPORARY_INFIX}`;
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    throw fileSystemError(error, directory, 'listing the state directory');
  }
  const leftovers = names.filter((name) => name.startsWith(prefix));
  for (const name of leftovers) {
    try {
      await rm(join(directory, name), { force: true });
    } catch (error) {
      throw fileSystemError(error, directory, `removing the leftover temporary ${name}`);
    }
  }
  return leftovers;
}

/**
 * Proves that `directory` takes a create + write + fsync + rename + directory fsync, leaving
 * nothing behind; throws the LedgerError that says why not (read-only, permission, space).
 * `stem` names the probe (`<stem>.tmp-<random>`); pass the ledger's file name so that a probe
 * orphaned by a kill is one of the ledger's leftovers.
 */
export async function assertWritable(directory: string, options: { readonly stem?: string } = {}): Promise<void> {
  const probe = temporaryName(join(directory, options.stem ?? PROBE_STEM));
  const moved = `${probe}-renamed`;
  try {
    const handle = await open(probe, 'wx', 0o600);
    try {
      await handle.writeFile('ipsec-operator write probe\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(probe, moved);
    await syncDirectory(directory);
  } catch (error) {
    throw fileSystemError(error, directory, 'checking that the state directory is writable');
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
    await rm(moved, { force: true }).catch(() => undefined);
  }
}

function temporaryName(path: string): string {
  return `${path}${TEMPORARY_INFIX}${randomBytes(8).toString('hex')}`;
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
