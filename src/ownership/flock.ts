/**
 * The native addon's flock(2) wrapper (native/src/file_lock.cc), loaded on first use so that
 * importing the ownership layer never needs the addon built (the planner's unit tests do not).
 *
 * The addon is the same file as the NETLINK_XFRM socket's (src/netlink/socket.ts loads it the
 * same way); Node's require cache makes the second load free.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'ipsec-operator';
const ADDON_FILE = join('native', 'build', 'Release', 'xfrm_netlink.node');
const BUILD_COMMAND = 'npx node-gyp rebuild --directory native';

interface FileLockAddon {
  /** 0 when the descriptor's open file description now holds LOCK_EX, else a positive errno. */
  tryLockExclusive(fd: number): number;
  unlock(fd: number): number;
}

/** What a non-blocking lock attempt found. */
export type TryLockResult = { readonly locked: true } | { readonly locked: false; readonly held: boolean; readonly errno: number; readonly code: string };

/**
 * Tries once, without blocking, to take an exclusive flock on `fd`. `held: true` means another
 * open file description holds it (EWOULDBLOCK); any other failure is `held: false` with its errno.
 */
export function tryLockExclusive(fd: number): TryLockResult {
  const errno = loadAddon().tryLockExclusive(fd);
  if (errno === 0) return { locked: true };
  return { locked: false, held: errno === constants.errno.EWOULDBLOCK || errno === constants.errno.EAGAIN, errno, code: errnoName(errno) };
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

let addon: FileLockAddon | undefined;

function loadAddon(): FileLockAddon {
  if (addon !== undefined) return addon;
  const root = findPackageRoot();
  const path = join(root, ADDON_FILE);
  let loaded: Partial<FileLockAddon>;
  try {
    loaded = createRequire(import.meta.url)(path) as Partial<FileLockAddon>;
  } catch (error) {
    const why = existsSync(path) ? `it failed to load: ${(error as Error).message}` : 'the file does not exist';
    throw new Error(`The native addon is not built or failed to load (${path}): ${why}. Build it from ${root} with \`${BUILD_COMMAND}\` (needs make, g++ and python3).`, { cause: error });
  }
  if (typeof loaded.tryLockExclusive !== 'function' || typeof loaded.unlock !== 'function') {
    throw new Error(`The native addon at ${path} predates file locks (no tryLockExclusive); rebuild it from ${root} with \`${BUILD_COMMAND}\`.`);
  }
  addon = loaded as FileLockAddon;
  return addon;
}

/** The directory of this package's package.json, from src/ownership/ (vitest) or dist/ownership/ (tsc). */
function findPackageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && isOurManifest(manifest)) return dir;
    if (dirname(dir) === dir) throw new Error(`Cannot find the ${PACKAGE_NAME} package.json above ${start} to locate the native addon.`);
  }
}

function isOurManifest(path: string): boolean {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    return false;
  }
}
