/**
 * The CLI of this checkout in one file, for host-kernel tests (and bench:xfrm) that run it as a real process
 * (as scripts/bundle.mjs builds it, but into a private path per test file so that other builds
 * are left alone). It lives inside the package, so that the native addon is found from it;
 * transpiling the sources per process instead would take many seconds a run.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Bundles src/cli/entry.ts to `outfile` (default: node_modules/.cache/<name>/cli-<pid>.mjs) and returns its path. */
export async function bundleCli(name: string, outfile = join(PACKAGE_ROOT, 'node_modules', '.cache', name, `cli-${process.pid}.mjs`)): Promise<string> {
  return bundleForNode(join(PACKAGE_ROOT, 'src/cli/entry.ts'), outfile);
}

/**
 * Bundles one TypeScript entry point and its dependencies into one ES module for node (the
 * CLI here, bench/xfrm-run.ts for bench:xfrm). CommonJS dependencies call require(); the
 * banner gives the ES module one. Returns `outfile`.
 */
export async function bundleForNode(entryPoint: string, outfile: string): Promise<string> {
  mkdirSync(join(outfile, '..'), { recursive: true });
  await build({
    entryPoints: [entryPoint],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'warning',
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  });
  return outfile;
}
