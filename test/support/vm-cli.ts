/**
 * Running the `ipsec-operator` CLI inside the test VM (which sees this checkout at the same
 * path), and small helpers around `ip xfrm` output for kernel tests.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { VmClient, VmExecResult } from '../infra/vm/client.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** The bundled CLI: one file to read over the VM's 9p share instead of thousands. */
export const CLI = `${REPO}dist/bundle/ipsec-operator.mjs`;

/** Runs the CLI in the VM; `manifests` goes to stdin (use `-f -`). */
export function cli(vm: VmClient, args: readonly string[], manifests?: string): Promise<VmExecResult> {
  return vm.exec({ argv: ['node', CLI, ...args] }, { ...(manifests === undefined ? {} : { stdin: manifests }), timeoutMs: 120_000 });
}

/** A fresh, empty network namespace in the VM (with lo up), and its removal. */
export async function freshNamespace(vm: VmClient, label: string): Promise<{ name: string; remove: () => Promise<void> }> {
  const name = `${label}-${randomBytes(3).toString('hex')}`;
  await vm.sh(`ip netns add ${name} && ip -n ${name} link set lo up`);
  return { name, remove: async () => void (await vm.trySh(`ip netns del ${name}`)) };
}

/** A state directory for the CLI's ownership ledger, private to one test. */
export function stateDir(namespace: string): string {
  return `/var/lib/ipsecop-test/${namespace}`;
}

export function formatResult(result: VmExecResult): string {
  return `exit ${result.exitCode}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

/**
 * Loads the crypto modules the tests use before the first SA needs them. The kernel loads
 * them on demand, but under TCG a first lookup that has to load a module and run its
 * self-tests can take long enough to fail ("Requested AEAD algorithm not found").
 */
export async function warmCrypto(vm: VmClient): Promise<void> {
  const modules = ['gcm', 'ccm', 'ctr', 'chacha20poly1305', 'chacha20_generic', 'poly1305_generic', 'authenc', 'authencesn', 'seqiv', 'echainiv', 'sha256_generic', 'sha1_generic', 'hmac', 'cbc', 'deflate'];
  const result = await vm.exec({ script: `for m in ${modules.join(' ')}; do modprobe -q $m || echo "no module $m"; done; grep -c . /proc/crypto` }, { timeoutMs: 180_000 });
  if (result.exitCode !== 0) throw new Error(`could not load crypto modules in the VM: ${formatResult(result)}`);
}
