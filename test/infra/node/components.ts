// The two control-plane components the test apiserver does not include, run on the host next to
// it (they talk only to its loopback address): kube-controller-manager (Deployments and DaemonSets
// get their Pods, ServiceAccounts and the kube-root-ca.crt ConfigMap appear in namespaces) and
// kube-scheduler (Pods get a node). Both from build-node.sh's multi-call binary, same release.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';

export interface HostComponent {
  readonly name: string;
  readonly logPath: string;
  /** SIGTERM, then SIGKILL after 10 s. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;

/** Starts one component; its output goes to logDir/<name>.log. It dies with this process. */
export function startHostComponent(binary: string, name: string, args: string[], logDir: string): HostComponent {
  if (!hooked) {
    hooked = true;
    process.once('exit', () => live.forEach((child) => child.kill('SIGKILL')));
  }
  const logPath = join(logDir, `${name}.log`);
  const log = createWriteStream(logPath, { flags: 'a' });
  // setpriv --pdeathsig: a test runner killed outright takes the component with it.
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', binary, name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      resolve();
    }),
  );
  return {
    name,
    logPath,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      log.end();
    },
  };
}

export interface ControlPlaneFiles {
  kubeconfig: string;
  caFile: string;
  /** The ServiceAccount signing key (the token controller signs legacy tokens with it). */
  serviceAccountKey: string;
}

export function controllerManagerArgs(files: ControlPlaneFiles): string[] {
  return [
    `--kubeconfig=${files.kubeconfig}`,
    // kube-root-ca.crt in every namespace: projected ServiceAccount volumes wait for it.
    `--root-ca-file=${files.caFile}`,
    `--service-account-private-key-file=${files.serviceAccountKey}`,
    '--use-service-account-credentials=false',
    '--leader-elect=false',
    // No serving endpoint: nothing scrapes it, and no port to collide with.
    '--secure-port=0',
    // Faster reaction than the defaults (node monitor 5 s / grace 50 s are for real fleets).
    '--node-monitor-grace-period=40s',
    '--v=1',
  ];
}

export function schedulerArgs(files: ControlPlaneFiles): string[] {
  return [`--kubeconfig=${files.kubeconfig}`, '--leader-elect=false', '--secure-port=0', '--v=1'];
}
