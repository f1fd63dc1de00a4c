// Runs the kubectl and helm binaries of the control plane build against a kubeconfig.
import { spawn } from 'node:child_process';
import { helmPath, kubectlPath } from './binaries.js';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ToolOptions {
  kubeconfig: string;
  /** Written to stdin (e.g. a manifest for `kubectl apply -f -`). */
  input?: string;
  /** Extra environment (helm reads HELM_* variables). */
  env?: NodeJS.ProcessEnv;
}

/** Runs kubectl with --kubeconfig; resolves with its exit code and output (never rejects on a non-zero code). */
export function kubectl(args: string[], opts: ToolOptions): Promise<ToolResult> {
  return run(kubectlPath(), ['--kubeconfig', opts.kubeconfig, ...args], opts);
}

/** Runs helm with --kubeconfig; its config, cache and data dirs stay under the caller's env (HELM_*_HOME). */
export function helm(args: string[], opts: ToolOptions): Promise<ToolResult> {
  return run(helmPath(), ['--kubeconfig', opts.kubeconfig, ...args], opts);
}

/** Like kubectl()/helm() but throws, with the command and its stderr, unless the exit code is 0. */
export async function check(result: Promise<ToolResult>, what: string): Promise<string> {
  const r = await result;
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

function run(bin: string, args: string[], opts: ToolOptions): Promise<ToolResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.once('error', (err) => reject(new Error(`could not run ${bin}: ${err.message}`)));
    child.once('close', (code, signal) => resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    // A tool that exits without reading its stdin closes the pipe (EPIPE): its exit status and
    // stderr say what happened; unhandled, the error would fail the whole test run.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
