// Client of the test VM's control server (guest/control-server.mjs). It is all a test needs to
// run commands in an already-booted VM; booting is vm.ts's job.
//
// node:http rather than fetch: fetch (undici) gives up on a response after 300 s of silence,
// and an exec may legitimately run longer than that.
import { Agent, request } from 'node:http';

/** Where the control server is reached from the host: qemu's loopback-only hostfwd. */
export interface VmEndpoint {
  /** e.g. http://127.0.0.1:40123 */
  readonly url: string;
  /** Bearer token the guest accepts (it was on the kernel command line). */
  readonly token: string;
}

/** A command: an argv (no shell) or a script for `sh -c`. */
export type VmCommand = readonly string[] | { readonly argv: readonly string[] } | { readonly script: string };

export interface VmCommandOptions {
  /** Added to the guest's environment (PATH=host's sbin/bin dirs, then busybox applets; HOME=/root). */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory in the guest; default '/'. */
  readonly cwd?: string;
}

export interface VmExecOptions extends VmCommandOptions {
  /** Written to the command's stdin, which is then closed. */
  readonly stdin?: string;
  /** The command's process group is SIGKILLed after this long (default 60 s); timedOut tells. */
  readonly timeoutMs?: number;
}

export interface VmExecResult {
  /** null when killed by a signal. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

export interface VmProcessStatus {
  readonly id: string;
  readonly pid: number;
  readonly running: boolean;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last 1 MiB the process wrote to each stream. */
  readonly stdout: string;
  readonly stderr: string;
}

export interface VmHealth {
  readonly ok: boolean;
  /** The guest kernel's release, e.g. 6.1.0-56-amd64. */
  readonly kernel: string;
  readonly uptimeSeconds: number;
}

export const DEFAULT_EXEC_TIMEOUT_MS = 60_000;

/** The control server could not be reached or refused the request. */
export class VmControlError extends Error {
  override readonly name = 'VmControlError';
}

/** A command run by sh()/exec-and-check exited non-zero, was killed, or timed out. */
export class VmCommandError extends Error {
  override readonly name = 'VmCommandError';
  constructor(
    readonly command: VmCommand,
    readonly result: VmExecResult,
  ) {
    super(describeFailure(command, result));
  }
}

function describeFailure(command: VmCommand, r: VmExecResult): string {
  const what = r.timedOut
    ? 'timed out and was killed'
    : r.signal !== null
      ? `was killed by ${r.signal}`
      : `exited with status ${String(r.exitCode)}`;
  const section = (name: string, text: string) =>
    text.length === 0 ? `${name}: (empty)` : `${name}:\n${clip(text, 4000)}`;
  return [`command in the test VM ${what}: ${clip(displayCommand(command), 500)}`, section('stderr', r.stderr), section('stdout', r.stdout)].join('\n');
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max / 2)}\n[... ${text.length - max} chars ...]\n${text.slice(-max / 2)}`;
}

function displayCommand(command: VmCommand): string {
  if (isArgv(command)) return JSON.stringify(command);
  return 'script' in command ? command.script : JSON.stringify(command.argv);
}

function isArgv(command: VmCommand): command is readonly string[] {
  return Array.isArray(command);
}

function commandBody(command: VmCommand): { argv: readonly string[] } | { script: string } {
  if (isArgv(command)) return { argv: command };
  return 'script' in command ? { script: command.script } : { argv: command.argv };
}

export class VmClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 8 });
  private readonly base: URL;

  constructor(readonly endpoint: VmEndpoint) {
    this.base = new URL(endpoint.url);
    if (this.base.hostname !== '127.0.0.1') {
      throw new VmControlError(`the test VM is only reached over the host's loopback, not ${endpoint.url}`);
    }
  }

  health(): Promise<VmHealth> {
    return this.call<VmHealth>('GET', '/health', undefined, 10_000);
  }

  /** Runs a command to completion and returns its result, whatever its exit status. */
  exec(command: VmCommand, options: VmExecOptions = {}): Promise<VmExecResult> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    return this.call<VmExecResult>(
      'POST',
      '/exec',
      { ...commandBody(command), env: options.env, cwd: options.cwd, stdin: options.stdin, timeoutMs },
      timeoutMs + 30_000,
    );
  }

  /** Runs a command; throws VmCommandError (with stdout and stderr) unless it exits 0. */
  async run(command: VmCommand, options: VmExecOptions = {}): Promise<VmExecResult> {
    const result = await this.exec(command, options);
    if (result.exitCode !== 0) throw new VmCommandError(command, result);
    return result;
  }

  /** `sh -c script`; throws VmCommandError (with stdout and stderr) unless it exits 0. */
  sh(script: string, options: VmExecOptions = {}): Promise<VmExecResult> {
    return this.run({ script }, options);
  }

  /** `sh -c script`, returning the result whatever the exit status. */
  trySh(script: string, options: VmExecOptions = {}): Promise<VmExecResult> {
    return this.exec({ script }, options);
  }

  /** Starts a long-running command in its own process group; its output is kept in the guest. */
  spawn(command: VmCommand, options: VmCommandOptions = {}): Promise<{ id: string; pid: number }> {
    return this.call('POST', '/spawn', { ...commandBody(command), env: options.env, cwd: options.cwd }, 30_000);
  }

  /** Sends a signal (default SIGTERM) to a spawned process's group; returns its status. */
  kill(id: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<VmProcessStatus> {
    return this.call('POST', `/procs/${encodeURIComponent(id)}/kill`, { signal }, 30_000);
  }

  /** Status and captured output of a spawned process. */
  logs(id: string): Promise<VmProcessStatus> {
    return this.call('GET', `/procs/${encodeURIComponent(id)}`, undefined, 30_000);
  }

  /** Waits up to timeoutMs for a spawned process to exit; `running` is still true on timeout. */
  wait(id: string, timeoutMs: number): Promise<VmProcessStatus> {
    return this.call('POST', `/procs/${encodeURIComponent(id)}/wait`, { timeoutMs }, timeoutMs + 30_000);
  }

  /** Asks the guest to power off; qemu exits soon after. */
  async poweroff(): Promise<void> {
    await this.call('POST', '/poweroff', {}, 10_000);
  }

  /** Closes idle keep-alive connections (the process would otherwise wait for them). */
  close(): void {
    this.agent.destroy();
  }

  private call<T>(method: 'GET' | 'POST', path: string, body: unknown, timeoutMs: number): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = request(
        new URL(path, this.base),
        {
          method,
          agent: this.agent,
          timeout: timeoutMs,
          headers: {
            authorization: `Bearer ${this.endpoint.token}`,
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = JSON.parse(text);
            } catch {
              reject(new VmControlError(`${method} ${path}: the VM's control server answered ${res.statusCode} with non-JSON: ${clip(text, 500)}`));
              return;
            }
            if (res.statusCode !== 200) {
              const error = (parsed as { error?: unknown }).error;
              reject(new VmControlError(`${method} ${path}: the VM's control server answered ${res.statusCode}: ${String(error)}`));
              return;
            }
            resolve(parsed as T);
          });
        },
      );
      req.on('timeout', () => req.destroy(new VmControlError(`${method} ${path}: no answer from the test VM within ${timeoutMs} ms`)));
      req.on('error', (err) =>
        reject(
          err instanceof VmControlError
            ? err
            : new VmControlError(`${method} ${path}: cannot reach the test VM's control server at ${this.endpoint.url}: ${err.message}. Has the VM stopped? Its console log says why.`),
        ),
      );
      req.end(payload);
    });
  }
}
