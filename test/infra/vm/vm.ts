// Boots the test VM: Debian's stock kernel under qemu (TCG: /dev/kvm does not work on these
// machines), the host's root shared read-only over 9p, and a control server in the guest
// reached through a loopback-only port forward. See guest/init for the guest side.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmClient, type VmEndpoint } from './client.js';
import { buildVmImage, type VmImage } from './image.js';

/** The guest control server's port on 10.0.2.15 (fixed in guest/init). */
const GUEST_CONTROL_PORT = 7070;
const QEMU = 'qemu-system-x86_64';
/** qboot (package qemu-system-data) starts the kernel seconds sooner than SeaBIOS under TCG. */
const QBOOT = '/usr/share/qemu/qboot.rom';

export interface BootVmOptions {
  /** Guest memory; default 2048. */
  readonly memoryMiB?: number;
  /** Guest vCPUs; default 2. */
  readonly cpus?: number;
  /** Appended to qemu's command line. */
  readonly extraQemuArgs?: readonly string[];
  /** Default 180 s: TCG on a busy 2-core machine is slow. */
  readonly bootTimeoutMs?: number;
  /** Kernel + initramfs; default: built (or found in the cache) by scripts/build-vm.sh. */
  readonly image?: VmImage;
  /** Where the guest console goes; default a fresh temp dir, removed by a clean shutdown. */
  readonly consoleLogPath?: string;
}

/** A booted VM: a control client plus ownership of the qemu process. */
export interface Vm extends VmClient {
  readonly consoleLogPath: string;
  readonly image: VmImage;
  /** Powers the guest off (SIGKILL to qemu if it does not stop in time). Idempotent. */
  shutdown(): Promise<void>;
}

export class VmBootError extends Error {
  override readonly name = 'VmBootError';
}

export async function bootVm(options: BootVmOptions = {}): Promise<Vm> {
  requireExecutable(QEMU, "qemu is not installed: apt-get install qemu-system-x86");
  requireExecutable('setpriv', 'setpriv is missing: apt-get install util-linux');
  const image = options.image ?? (await buildVmImage());
  for (const file of [image.kernel, image.initramfs]) {
    if (!existsSync(file)) throw new VmBootError(`${file} is missing: run scripts/build-vm.sh`);
  }
  // The forward's host port is chosen before qemu binds it; another process may take it in
  // between, so a failed bind is retried with a new port.
  for (let attempt = 1; ; attempt++) {
    try {
      return await bootOnce(image, options);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= 3) throw err;
    }
  }
}

class PortTakenError extends Error {}

async function bootOnce(image: VmImage, options: BootVmOptions): Promise<Vm> {
  const ownLogDir = options.consoleLogPath === undefined ? mkdtempSync(join(tmpdir(), 'ipsec-operator-vm-')) : undefined;
  const consoleLogPath = options.consoleLogPath ?? join(ownLogDir!, 'console.log');
  const hostPort = await freeLoopbackPort();
  const endpoint: VmEndpoint = { url: `http://127.0.0.1:${hostPort}`, token: randomBytes(24).toString('hex') };
  const args = qemuArgs(image, options, consoleLogPath, hostPort, endpoint.token);

  // setpriv --pdeathsig: the kernel kills qemu if this process dies without running its exit
  // handlers (SIGKILL, OOM), so no VM outlives its test run.
  const qemu = spawn('setpriv', ['--pdeathsig', 'KILL', '--', QEMU, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let qemuOutput = '';
  qemu.stdout.on('data', (c: Buffer) => (qemuOutput += c.toString()));
  qemu.stderr.on('data', (c: Buffer) => (qemuOutput += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    qemu.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let hasExited = false;
  void exited.then(() => (hasExited = true));
  const killOnExit = () => qemu.kill('SIGKILL');
  process.once('exit', killOnExit);

  const client = new VmClient(endpoint);
  const fail = async (why: string): Promise<never> => {
    qemu.kill('SIGKILL');
    await exited;
    process.removeListener('exit', killOnExit);
    client.close();
    if (/Could not set up host forwarding rule/.test(qemuOutput)) throw new PortTakenError(qemuOutput);
    throw new VmBootError(
      `${why}\nqemu: setpriv --pdeathsig KILL -- ${QEMU} ${args.join(' ')}\n` +
        (qemuOutput.trim() ? `qemu said:\n${qemuOutput.trim()}\n` : '') +
        `last console lines (${consoleLogPath}):\n${consoleTail(consoleLogPath, 40)}`,
    );
  };

  const timeoutMs = options.bootTimeoutMs ?? 180_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (hasExited) {
      const { code, signal } = await exited;
      return fail(`the test VM stopped while booting (qemu exit code ${code}, signal ${signal})`);
    }
    if (Date.now() > deadline) return fail(`the test VM did not become ready within ${timeoutMs} ms`);
    try {
      // Until the guest listens, qemu accepts on the host and drops the connection at once.
      const health = await client.health();
      if (health.ok) break;
    } catch {
      await sleep(250);
    }
  }

  let shutdownPromise: Promise<void> | undefined;
  const shutdown = (poweroff: () => Promise<void>): Promise<void> =>
    (shutdownPromise ??= (async () => {
      if (!hasExited) {
        await poweroff().catch(() => undefined);
        // An unref'ed timer: a pending one would keep vitest's process alive after the run.
        let timer: NodeJS.Timeout | undefined;
        const stopped = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 15_000).unref())),
        ]);
        clearTimeout(timer);
        if (!stopped) {
          qemu.kill('SIGKILL');
          await exited;
        }
      }
      process.removeListener('exit', killOnExit);
      if (ownLogDir !== undefined && !process.env.IPSEC_OPERATOR_VM_KEEP_LOGS) rmSync(ownLogDir, { recursive: true, force: true });
    })());

  client.close();
  return new RunningVm(endpoint, consoleLogPath, image, shutdown);
}

class RunningVm extends VmClient implements Vm {
  constructor(
    endpoint: VmEndpoint,
    readonly consoleLogPath: string,
    readonly image: VmImage,
    private readonly stop: (poweroff: () => Promise<void>) => Promise<void>,
  ) {
    super(endpoint);
  }

  shutdown(): Promise<void> {
    return this.stop(() => this.poweroff()).finally(() => this.close());
  }
}

function qemuArgs(image: VmImage, options: BootVmOptions, consoleLogPath: string, hostPort: number, token: string): string[] {
  const share = (path: string, tag: string) => [
    '-virtfs',
    `local,path=${path},mount_tag=${tag},security_model=none,readonly=on,multidevs=remap`,
  ];
  return [
    '-name', 'ipsec-operator-test-vm',
    ...(existsSync(QBOOT) ? ['-bios', QBOOT] : []),
    '-accel', 'tcg,thread=multi',
    '-cpu', 'max',
    '-smp', String(options.cpus ?? 2),
    '-m', String(options.memoryMiB ?? 2048),
    '-nographic', '-no-reboot', '-monitor', 'none',
    '-serial', `file:${consoleLogPath}`,
    '-kernel', image.kernel,
    '-initrd', image.initramfs,
    // panic=-1 with -no-reboot: a guest panic ends qemu instead of hanging until the timeout.
    // no_timer_check: under TCG on a loaded host the kernel's check that the IO-APIC timer
    // ticks can time out and panic ("IO-APIC + timer doesn't work", seen once at load ~30);
    // the emulated timer works, only the check's timing is wrong, as in most VMs.
    '-append', `console=ttyS0 panic=-1 no_timer_check ipsecop.token=${token}`,
    // The host's root, and its /usr a second time with caching (see guest/init).
    ...share('/', 'hostroot'),
    ...share('/usr', 'hostusr'),
    // User networking: the guest reaches the host's 127.0.0.1 at 10.0.2.2; the host reaches
    // the control server only through this forward, bound to its loopback. ipv6=off: qemu's
    // router advertisements would give the guest an IPv6 default route out of the host.
    '-netdev', `user,id=n0,ipv6=off,hostfwd=tcp:127.0.0.1:${hostPort}-:${GUEST_CONTROL_PORT}`,
    // romfile=: no iPXE option ROM to load and run at every boot.
    '-device', 'virtio-net-pci,netdev=n0,romfile=',
    ...(options.extraQemuArgs ?? []),
  ];
}

function requireExecutable(name: string, fix: string): void {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  if (!dirs.some((d) => existsSync(join(d, name)))) throw new VmBootError(`${name} not found on PATH: ${fix}`);
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** The last lines of the guest console, for error messages. */
export function consoleTail(path: string, lines: number): string {
  try {
    const text = readFileSync(path, 'utf8').replace(/\r/g, '');
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no console output)';
  }
}
