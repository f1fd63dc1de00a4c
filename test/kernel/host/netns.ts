/**
 * Throwaway network namespaces for host-kernel tests: `ip netns add ipsecop-x-<random>`, loopback
 * up, deleted by the test file that made it. Tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and
 * fail, not skip, without it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';

import { XfrmClient } from '../../../src/xfrm/client.js';

export interface TestNetns {
  readonly name: string;
  /** Runs `ip -n NAME ...args` and returns stdout; throws with stderr on failure. */
  ip(...args: string[]): string;
  /** Like ip(), but returns the failure instead of throwing. */
  tryIp(...args: string[]): { ok: boolean; stdout: string; stderr: string };
  remove(): void;
}

export function createNetns(): TestNetns {
  if (process.getuid?.() !== 0) throw new Error('host-kernel tests need root (network namespaces, NETLINK_XFRM writes)');
  const name = `ipsecop-x-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name], { stdio: 'pipe' });
  const ip = (...args: string[]): string => {
    try {
      return execFileSync('ip', ['-n', name, ...args], { encoding: 'utf8', stdio: 'pipe' });
    } catch (error) {
      const stderr = (error as { stderr?: Buffer | string }).stderr?.toString() ?? '';
      throw new Error(`ip -n ${name} ${args.join(' ')} failed: ${stderr.trim()}`, { cause: error });
    }
  };
  const tryIp = (...args: string[]): { ok: boolean; stdout: string; stderr: string } => {
    try {
      return { ok: true, stdout: execFileSync('ip', ['-n', name, ...args], { encoding: 'utf8', stdio: 'pipe' }), stderr: '' };
    } catch (error) {
      const failure = error as { stdout?: Buffer | string; stderr?: Buffer | string };
      return { ok: false, stdout: failure.stdout?.toString() ?? '', stderr: failure.stderr?.toString() ?? '' };
    }
  };
  ip('link', 'set', 'lo', 'up');
  return {
    name,
    ip,
    tryIp,
    remove: () => {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'pipe' });
    },
  };
}

/**
 * For a test file: a fresh namespace and an XfrmClient in it, made before the file's tests and
 * removed after them. Read `netns` and `client` inside tests (they exist once beforeAll ran).
 */
export function useNetnsWithClient(): { readonly netns: TestNetns; readonly client: XfrmClient } {
  let netns: TestNetns | undefined;
  let client: XfrmClient | undefined;
  beforeAll(async () => {
    netns = createNetns();
    client = await XfrmClient.open({ netns: netns.name });
  });
  afterAll(() => {
    client?.close();
    netns?.remove();
  });
  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is not set up yet (use it inside a test)`);
    return value;
  };
  return {
    get netns() {
      return ready(netns, 'netns');
    },
    get client() {
      return ready(client, 'client');
    },
  };
}
