// Runs the real control plane (kube-apiserver over an embedded etcd, built by
// scripts/build-controlplane.sh) as a child process, and controls its life: start, halt
// (process stopped, etcd data and port kept), resume (same data dir, same port, so
// existing kubeconfigs, tokens and objects stay valid), stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { controlPlaneBinaries } from './binaries.js';

export interface StartOptions {
  /** etcd data and certificates. Default: a fresh temporary dir, removed by stop(). */
  dataDir?: string;
  /**
   * Secure port on 127.0.0.1. Default: a free one below the kernel's ephemeral range (so no
   * outgoing connection can take it while halted), chosen at first start and kept by resume().
   */
  port?: number;
  /** Where the admin kubeconfig is written. Default: <dataDir>/admin.kubeconfig. */
  kubeconfigPath?: string;
  /** Extra kube-apiserver flags (e.g. '--v=4'); they override the defaults. */
  apiserverArgs?: string[];
  /** How long to wait for the ready line. Default 180 s (a loaded 2-core machine is slow). */
  readyTimeoutMs?: number;
}

/** The "ready" line the Go program prints on stdout once /readyz answers 200. */
interface ReadyLine {
  event: 'ready';
  server: string;
  kubeconfig: string;
  caFile: string;
  etcd: string;
  dataDir: string;
  pid: number;
  startupMs: number;
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  readonly server: string;
  readonly port: number;
  /** Admin kubeconfig (client certificate in system:masters), CA and credentials embedded. */
  readonly kubeconfigPath: string;
  /** PEM of the CA that signed the serving certificate (SANs: 127.0.0.1, ::1, localhost, 10.0.2.2, kubernetes.default.svc…). */
  readonly caPem: string;
  readonly caFile: string;
  /** etcd client URL (loopback, plain HTTP, JSON gateway at /v3/...); kept across halt()/resume(). */
  readonly etcdUrl: string;
  readonly dataDir: string;
  /** apiserver + etcd log (stderr of the process), appended across restarts. */
  readonly logPath: string;
  /** Milliseconds from spawn to the ready line, of the latest start. */
  readonly startupMs: number;
  /** Whether the process is running (false between halt() and resume(), and after stop()). */
  readonly running: boolean;
  /** Stops the process cleanly (SIGTERM; SIGKILL after 30 s) and keeps the data dir and the port. */
  halt(): Promise<void>;
  /** Starts again on the same data dir and port after halt(); resolves when /readyz answers. */
  resume(): Promise<void>;
  /** halt() then resume(). */
  restart(): Promise<void>;
  /**
   * Stops for good; removes the data dir if it was a temporary one made by startControlPlane
   * (kept when IPSEC_OPERATOR_KEEP_CONTROLPLANE=1, to read its log after a failure).
   */
  stop(): Promise<void>;
}

const STOP_GRACE_MS = 30_000;
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Starts a control plane and resolves once it is ready. Throws with the log tail if it is not. */
export async function startControlPlane(options: StartOptions = {}): Promise<ControlPlane> {
  const bins = controlPlaneBinaries(); // throws "run scripts/build-controlplane.sh" when missing
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = resolve(options.dataDir ?? mkdtempSync(join(tmpdir(), 'ipsec-controlplane-')));
  await mkdir(dataDir, { recursive: true });
  const logPath = join(dataDir, 'controlplane.log');
  const readyTimeoutMs = options.readyTimeoutMs ?? 180_000;
  installExitHook();

  let child: ChildProcess | undefined;
  let ready: ReadyLine | undefined;
  let port = options.port ?? 0;
  let stopped = false;

  const launch = async (): Promise<void> => {
    const args = ['serve', '--data-dir', dataDir, '--port', String(port)];
    if (options.kubeconfigPath) args.push('--kubeconfig', resolve(options.kubeconfigPath));
    for (const a of options.apiserverArgs ?? []) args.push(`--apiserver-arg=${a}`);
    const log = createWriteStream(logPath, { flags: 'a' });
    log.write(`\n=== ${new Date().toISOString()} ${bins.controlPlane} ${args.join(' ')}\n`);
    const proc = spawn(bins.controlPlane, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    child = proc;
    ready = await waitForReady(proc, log, logPath, readyTimeoutMs);
    port = Number(new URL(ready.server).port); // resume() binds the same port again
  };

  const halt = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc) await terminate(proc);
  };

  await launch().catch(async (err: unknown) => {
    await halt();
    if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  const first = ready!;
  const caPem = readFileSync(first.caFile, 'utf8');

  const resume = async (): Promise<void> => {
    if (stopped) throw new Error('control plane was stopped for good; start a new one');
    if (child) throw new Error('control plane is running; halt() it before resume()');
    await launch().catch(async (err: unknown) => {
      await halt();
      throw err;
    });
  };

  return {
    get server() {
      return ready!.server;
    },
    get port() {
      return port;
    },
    kubeconfigPath: first.kubeconfig,
    caPem,
    caFile: first.caFile,
    get etcdUrl() {
      return ready!.etcd;
    },
    dataDir,
    logPath,
    get startupMs() {
      return ready!.startupMs;
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    halt,
    resume,
    async restart() {
      await halt();
      await resume();
    },
    async stop() {
      stopped = true;
      await halt();
      if (!ownsDataDir) return;
      // To read the apiserver log of a failed run: IPSEC_OPERATOR_KEEP_CONTROLPLANE=1.
      if (process.env.IPSEC_OPERATOR_KEEP_CONTROLPLANE === '1') console.log(`[controlplane] kept ${dataDir}`);
      else rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resolves with the ready line; rejects with the log tail when the process exits first or is too slow. */
function waitForReady(proc: ChildProcess, log: WriteStream, logPath: string, timeoutMs: number): Promise<ReadyLine> {
  const tail: string[] = [];
  proc.stderr!.on('data', (chunk: Buffer) => {
    log.write(chunk);
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      tail.push(line);
      if (tail.length > 40) tail.shift();
    }
  });
  // 'close', not 'exit': stderr may still deliver data after the process has exited.
  proc.once('close', () => log.end());
  const lines = createInterface({ input: proc.stdout! });
  return new Promise<ReadyLine>((resolvePromise, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new Error(`control plane did not become ready: ${why}. Log: ${logPath}\n--- last lines ---\n${tail.join('\n')}`));
    };
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      fail(`no ready line within ${timeoutMs / 1000} s (killed)`);
    }, timeoutMs);
    proc.once('error', (err) => fail(`could not run ${proc.spawnfile}: ${err.message}`));
    proc.once('exit', (code, signal) => fail(`process exited (code ${code}, signal ${signal}) before it was ready`));
    lines.on('line', (line) => {
      log.write(`[stdout] ${line}\n`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return; // not the ready line
      }
      if ((parsed as { event?: unknown }).event === 'ready') {
        clearTimeout(timer);
        resolvePromise(parsed as ReadyLine);
      }
    });
  });
}

async function terminate(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGTERM'); // the apiserver shuts down, then etcd is closed
  const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/**
 * A test runner that exits without calling stop() (an uncaught error, process.exit) must not
 * leave an apiserver holding its port: kill what is still running. If the runner is killed
 * outright, the Go program's parent-death signal stops it.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const proc of live) proc.kill('SIGKILL');
  });
}
