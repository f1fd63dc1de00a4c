/**
 * The ledger's file layer on a real (unprivileged) file system: atomic replace leaves exactly the
 * new file, a failed replace leaves the old one and no temporary, leftovers are removed only
 * under the lock, and each file-system condition becomes a LedgerError that names the directory.
 * Full and read-only file systems are in test/kernel/host/ledger-filesystem.test.ts (root).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { assertWritable, ensureDirectory, removeLeftoverTemporaries, replaceFile } from '../../src/ownership/durable-file.js';
import { fileSystemError, LedgerError } from '../../src/ownership/errors.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { LedgerLock } from '../../src/ownership/lock.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ipsecop-durable-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: something, open '/x'`), { code });
}

describe('replaceFile', () => {
  it('replaces the file whole, mode 0600, and leaves no temporary', async () => {
    const path = join(directory, 'ledger.json');
    await replaceFile(path, 'one\n');
    await replaceFile(path, 'two\n');
    expect(await readFile(path, 'utf8')).toBe('two\n');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(directory)).toEqual(['ledger.json']);
  });

  it('on a failure before the rename keeps the old version and removes its temporary', async () => {
    // A directory where the file should go: the rename fails after the temporary was written.
    const path = join(directory, 'ledger.json');
    await mkdir(path);
    await writeFile(join(path, 'old'), 'old\n');
    const error = await replaceFile(path, 'new\n').then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(LedgerError);
    expect(error).toMatchObject({ code: 'EISDIR', directory });
    expect((error as Error).message).toContain(`state directory ${directory}`);
    expect((error as Error).message).toContain('the previous version of ledger.json is intact');
    expect(await readdir(directory)).toEqual(['ledger.json']);
    expect(await readFile(join(path, 'old'), 'utf8')).toBe('old\n');
  });
});

describe('removeLeftoverTemporaries', () => {
  it('removes what killed writers of this file left, only while holding its lock', async () => {
    const path = join(directory, 'ledger.json');
    const leftovers = ['ledger.json.tmp-4242', 'ledger.json.tmp-0123456789abcdef', 'ledger.json.tmp-fedcba9876543210-renamed'];
    const others = ['ledger.json', 'ledger.json.lock', 'other.json.tmp-1', 'ledger.jsonx.tmp-1'];
    for (const name of [...leftovers, ...others]) await writeFile(join(directory, name), 'x');

    const lock = await LedgerLock.acquire(`${path}.lock`, { waitMs: 0 });
    await lock.release();
    await expect(removeLeftoverTemporaries(path, lock)).rejects.toMatchObject({ code: 'LOCKED' });
    expect((await readdir(directory)).length).toBe(leftovers.length + others.length);

    const held = await LedgerLock.acquire(`${path}.lock`, { waitMs: 0 });
    expect((await removeLeftoverTemporaries(path, held)).sort()).toEqual([...leftovers].sort());
    expect((await readdir(directory)).sort()).toEqual([...others].sort());
    await held.release();
  });

  it('is what Ledger.open does after taking the lock', async () => {
    const path = join(directory, 'host', 'ledger.json');
    await mkdir(join(directory, 'host'));
    await writeFile(`${path}.tmp-31337`, '{"partial'); // the PID-named temporary of the old code
    const ledger = await Ledger.open(path);
    const names = await readdir(join(directory, 'host'));
    expect(names).toContain('ledger.json');
    expect(names.filter((name) => name.includes('.tmp-'))).toEqual([]);
    await ledger.close();
  });
});

describe('assertWritable and ensureDirectory', () => {
  it('proves a writable directory and leaves nothing behind', async () => {
    await assertWritable(directory);
    await assertWritable(directory, { stem: 'ledger.json' });
    expect(await readdir(directory)).toEqual([]);
  });

  it('names the directory when it is missing or not a directory', async () => {
    const missing = join(directory, 'missing');
    await expect(assertWritable(missing)).rejects.toMatchObject({ name: 'LedgerError', code: 'ENOENT', directory: missing });
    const file = join(directory, 'file');
    await writeFile(file, '');
    await expect(ensureDirectory(join(file, 'host'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(ensureDirectory(file)).rejects.toThrow(`state directory ${file} (or one of its parents) exists and is not a directory`);
    await expect(Ledger.open(join(file, 'host', 'ledger.json'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });
});

describe('fileSystemError', () => {
  it.each([
    ['EROFS', /state directory \/var\/lib\/x is on a read-only file system/],
    ['EACCES', /permission denied on state directory \/var\/lib\/x/],
    ['EPERM', /permission denied on state directory \/var\/lib\/x/],
    ['ENOSPC', /no space left on the file system of state directory \/var\/lib\/x/],
    ['EDQUOT', /disk quota exceeded on state directory \/var\/lib\/x/],
    ['EIO', /file-system error in state directory \/var\/lib\/x: EIO/],
  ])('%s says what is wrong and where, and keeps the code', (code, message) => {
    const error = fileSystemError(errnoError(code), '/var/lib/x', 'writing the ledger', 'the previous version is intact');
    expect(error).toBeInstanceOf(LedgerError);
    expect(error).toMatchObject({ code, directory: '/var/lib/x' });
    expect(error.message).toMatch(message);
    expect(error.message).toMatch(/\(writing the ledger\); the previous version is intact$/);
  });

  it('passes LedgerErrors and non-errno errors through', () => {
    const ledgerError = new LedgerError('already clear', { code: 'LOCKED' });
    expect(fileSystemError(ledgerError, '/d', 'x')).toBe(ledgerError);
    const plain = new TypeError('bug');
    expect(fileSystemError(plain, '/d', 'x')).toBe(plain);
  });
});
