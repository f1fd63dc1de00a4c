/**
 * Throwaway network namespaces for host-kernel tests: `ip netns add ipsecop-x-<random>`, loopback
 * up, deleted by the test file that made it. Tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and
 * fail, not skip, without it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

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
