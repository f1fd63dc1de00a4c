/**
 * Starts test/support/ledger-lock-child.ts as another process (optionally behind a wrapper such as
 * `unshare --pid --fork`) and follows its JSON reports.
 *
 * The child is bundled once with esbuild (into the package's .cache/, so that the addon is found
 * from the package root as from dist/): transpiling TypeScript in each of twenty children costs
 * seconds of CPU apiece on a loaded two-core machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./ledger-lock-child.ts', import.meta.url));

let bundled: Promise<string> | undefined;

/** Bundles the child (once per test process) and returns the path of the bundle. */
export function lockChildBundle(): Promise<string> {
  bundled ??= (async () => {
    const outfile = join(ROOT, '.cache', 'test-children', `ledger-lock-child-${process.pid}.mjs`);
    await build({ entryPoints: [CHILD], outfile, bundle: true, platform: 'node', target: 'node20', format: 'esm', logLevel: 'warning' });
    return outfile;
  })();
  return bundled;
}

export interface ChildReport {
  readonly event: 'locked' | 'done' | 'error';
  readonly pid: number;
  readonly hostPid: number;
  readonly code?: string;
  readonly message?: string;
}

export interface LockChild {
  readonly process: ChildProcess;
  /** The first report (locked, done or error); rejects if the process exits without one. */
  readonly report: Promise<ChildReport>;
  /** Resolves with the exit code or signal once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the child; `bundle` comes from `lockChildBundle()`. */
export function startLockChild(bundle: string, args: readonly string[], wrapper: readonly string[] = []): LockChild {
  const command = [...wrapper, process.execPath, '--expose-gc', '--no-deprecation', bundle, ...args];
  const child = spawn(command[0] as string, command.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const report = new Promise<ChildReport>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line !== undefined) resolve(JSON.parse(line) as ChildReport);
    });
    void exited.then(({ code, signal }) => reject(new Error(`lock child ${args.join(' ')} exited (${code ?? signal}) without a report; stderr: ${stderr.trim()}`)));
  });
  report.catch(() => undefined);
  return { process: child, report, exited };
}
