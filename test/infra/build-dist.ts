// vitest globalSetup of the layers that run the product as a process (inside the test VM, or
// as agents and controllers): compiles src/ to dist/ and bundles it first, so they never run a
// stale build.
// tsc is incremental in effect here (a few seconds when nothing changed).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  try {
    execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
    // The one-file bundle the VM runs (see scripts/bundle.mjs for why).
    execFileSync(process.execPath, ['scripts/bundle.mjs'], { cwd: root, stdio: 'pipe' });
  } catch (error) {
    const output = (error as { stdout?: Buffer }).stdout?.toString() ?? '';
    throw new Error(`npm run build failed; these tests run the compiled product:\n${output}`);
  }
}
