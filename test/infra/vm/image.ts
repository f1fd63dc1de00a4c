// The VM image (kernel + initramfs) comes from scripts/build-vm.sh, which caches it outside
// the work tree; this module runs the script and checks what it produced.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BUILD_SCRIPT = join(REPO_ROOT, 'scripts/build-vm.sh');

export interface VmImage {
  /** The cache directory the files live in. */
  readonly dir: string;
  readonly kernel: string;
  readonly initramfs: string;
  readonly kernelVersion: string;
}

/** The image in a directory printed by build-vm.sh; throws naming the fix if it is incomplete. */
export function imageAt(dir: string): VmImage {
  const image = {
    dir,
    kernel: join(dir, 'vmlinuz'),
    initramfs: join(dir, 'initramfs.cpio.gz'),
    kernelVersion: '',
  };
  for (const file of [image.kernel, image.initramfs, join(dir, 'kernel-version')]) {
    if (!existsSync(file)) throw new Error(`the test VM image is incomplete (${file} is missing): run scripts/build-vm.sh`);
  }
  return { ...image, kernelVersion: readFileSync(join(dir, 'kernel-version'), 'utf8').trim() };
}

/**
 * Builds the image, or finds it in the cache (about a second when nothing changed). `kernel`
 * is a release or a version prefix (`6.1`, `6.12`); absent, the build script's default (the
 * environment's IPSEC_OPERATOR_VM_KERNEL, else 6.1).
 */
export async function buildVmImage(kernel?: string): Promise<VmImage> {
  let stdout: string;
  const env = kernel === undefined ? process.env : { ...process.env, IPSEC_OPERATOR_VM_KERNEL: kernel };
  try {
    ({ stdout } = await execFileAsync('bash', [BUILD_SCRIPT], { maxBuffer: 1 << 20, env }));
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`scripts/build-vm.sh failed, so there is no test VM:\n${e.stderr?.trim() || e.message}`);
  }
  const dir = stdout.trim().split('\n').pop() ?? '';
  return imageAt(dir);
}
