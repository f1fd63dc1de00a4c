// A real one-node Kubernetes cluster for the `node` test layer:
//
//   host loopback:  kube-apiserver + etcd (test/infra/controlplane), kube-controller-manager,
//                   kube-scheduler
//   test VM:        containerd 2 + runc + CNI bridge, the kubelet (node "localhost"), cgroup v2,
//                   the operator's image and the pause image imported from OCI archives
//
// Why the VM: the host has hybrid cgroup v1 (kubelet 1.35+ refuses it by default) and no ESP,
// while the VM's kernel mounts cgroup v2 and carries ESP; and everything the node writes (cgroups,
// mounts, network, XFRM state, the agent's ledger) stays in the VM's memory, never on this
// machine's own network or file system.
//
// How the pieces reach each other: the guest reaches the host's loopback as 10.0.2.2 (qemu user
// network), so the kubelet and the in-guest Service relay talk to the apiserver there. The
// apiserver reaches the kubelet (logs, exec) through a second, restricted qemu NIC whose host
// forward listens on 127.0.0.1:<kubelet port>; the Node is named "localhost" and the apiserver
// prefers the Hostname address, so it dials exactly that forward.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControlPlane, type ControlPlane } from '../controlplane/controlplane.js';
import { check, helm, kubectl } from '../controlplane/tools.js';
import { freePort } from '../free-port.js';
import type { VmExecResult } from '../vm/client.js';
import { buildVmImage } from '../vm/image.js';
import { bootVm, type Vm } from '../vm/vm.js';
import { buildNodeBinaries, buildOperatorImage, type NodeBinaries, type OperatorImage } from './builds.js';
import { controllerManagerArgs, schedulerArgs, startHostComponent, type HostComponent } from './components.js';
import {
  NODE_NET,
  containerdCommand,
  containerdConfig,
  cniConfig,
  ctr,
  asNodeDaemon,
  guestKubeconfig,
  kubeletCommand,
  kubeletConfig,
  prepareScript,
  type GuestNodeParams,
} from './guest-config.js';

export const NODE_NAME = 'localhost';
const RELAY = fileURLToPath(new URL('./guest/service-relay.mjs', import.meta.url));

export interface NodeCluster {
  readonly controlPlane: ControlPlane;
  readonly vm: Vm;
  readonly image: OperatorImage;
  readonly binaries: NodeBinaries;
  readonly nodeName: string;
  /** Host dir with the logs of every component (kept when IPSEC_OPERATOR_KEEP_NODE_LOGS=1). */
  readonly logDir: string;
  kubectl(args: string[], input?: string): Promise<string>;
  helm(args: string[]): Promise<string>;
  /** A shell script in the guest's root network namespace (the node's host network). */
  nodeSh(script: string, timeoutMs?: number): Promise<VmExecResult>;
  /** Tags the imported operator image under another tag in the node's containerd (no registry). */
  tagImage(tag: string): Promise<string>;
  /** The last lines of a node daemon's output (containerd, kubelet, relay). */
  daemonLog(name: 'containerd' | 'kubelet' | 'relay', lines?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface StartNodeClusterOptions {
  nodeLabels?: Record<string, string>;
  /** Guest memory; default 4096 MiB (containerd keeps images on tmpfs). */
  memoryMiB?: number;
}

/** Runs one phase of the start and prints how long it took (the layer's time budget is read from these). */
async function phase<T>(label: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await work();
  } finally {
    console.log(`[node]   ${label}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
}

export async function startNodeCluster(options: StartNodeClusterOptions = {}): Promise<NodeCluster> {
  const [binaries, image, vmImage] = await phase('builds (node binaries, image, VM image; cached by input hash)', async () => [
    await buildNodeBinaries(),
    await buildOperatorImage(),
    await buildVmImage(),
  ] as const);
  const logDir = mkdtempSync(join(tmpdir(), 'ipsec-node-'));
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    cleanups.length = 0;
    if (process.env.IPSEC_OPERATOR_KEEP_NODE_LOGS === '1') console.log(`[node] kept logs in ${logDir}`);
    else rmSync(logDir, { recursive: true, force: true });
  };
  try {
    const kubeletPort = await freePort();
    const dataDir = join(logDir, 'controlplane');
    const pki = join(dataDir, 'pki');
    const confDir = join(logDir, 'conf');
    rmSync(confDir, { recursive: true, force: true });
    mkdirSync(confDir, { recursive: true });
    writeFileSync(join(confDir, 'containerd.toml'), containerdConfig({ pauseRef: binaries.pauseRef }));
    writeFileSync(join(confDir, '10-ipsec-node.conflist'), cniConfig());
    // Two chains that need nothing of each other until the kubelet starts: the control plane on
    // the host, and the VM with containerd and the imported images. They overlap (the VM's boot
    // and the image import are the longest steps of the start under emulation). allSettled, so
    // that a failure in one chain still lets the other register its cleanup before stop() runs.
    const [hostSide, guestSide] = await Promise.allSettled([
      phase('control plane, controller manager, scheduler', async () => {
        const controlPlane = await startControlPlane({
          dataDir,
          apiserverArgs: [
            // How the apiserver reaches the kubelet: by the Node's Hostname address ("localhost"),
            // i.e. the VM's loopback port forward, with the admin client certificate.
            '--kubelet-preferred-address-types=Hostname',
            `--kubelet-client-certificate=${join(pki, 'admin.crt')}`,
            `--kubelet-client-key=${join(pki, 'admin.key')}`,
          ],
        });
        cleanups.push(() => controlPlane.stop());
        const files = { kubeconfig: controlPlane.kubeconfigPath, caFile: controlPlane.caFile, serviceAccountKey: join(pki, 'sa.key') };
        const kcm = startHostComponent(binaries.kube, 'kube-controller-manager', controllerManagerArgs(files), logDir);
        const scheduler = startHostComponent(binaries.kube, 'kube-scheduler', schedulerArgs(files), logDir);
        cleanups.push(() => stopAll([kcm, scheduler]));
        return controlPlane;
      }),
      (async () => {
        const vm = await phase('VM boot', () =>
          bootVm({
            image: vmImage,
            memoryMiB: options.memoryMiB ?? 4096,
            consoleLogPath: join(logDir, 'console.log'),
            extraQemuArgs: [
              // The kubelet's NIC: restrict=on, the guest can open nothing through it; the host forward
              // is bound to loopback.
              '-netdev', `user,id=n1,ipv6=off,restrict=on,net=${NODE_NET.nodeNet},hostfwd=tcp:127.0.0.1:${kubeletPort}-${NODE_NET.nodeIp}:${kubeletPort}`,
              '-device', 'virtio-net-pci,netdev=n1,romfile=',
            ],
          }),
        );
        cleanups.push(() => vm.shutdown());
        await phase('guest prepared (cgroup v2, tmpfs, binaries copied)', () => vm.sh(prepareScript({ binDir: binaries.dir, confDir }), { timeoutMs: 180_000 }));
        const containerd = await vm.spawn(containerdCommand({ confDir }));
        await phase('containerd answers', () => waitGuest(vm, 'containerd to answer', ctr('version').join(' '), 120_000));
        // Both archives are imported into the namespace the CRI reads; --no-unpack is not used, so
        // the overlayfs snapshots exist before the first Pod asks for them.
        await phase('images imported (pause, operator)', async () => {
          await vm.run([...ctr('images', 'import', '--all-platforms', binaries.pauseArchive)], { timeoutMs: 300_000 });
          await vm.run([...ctr('images', 'import', '--all-platforms', image.archive)], { timeoutMs: 600_000 });
        });
        return { vm, containerd };
      })(),
    ]);
    if (hostSide.status === 'rejected') throw hostSide.reason;
    if (guestSide.status === 'rejected') throw guestSide.reason;
    const controlPlane = hostSide.value;
    const { vm, containerd } = guestSide.value;

    const params: GuestNodeParams = {
      binDir: binaries.dir,
      confDir,
      kubeletPort,
      apiserverPort: controlPlane.port,
      caFile: controlPlane.caFile,
      pauseRef: binaries.pauseRef,
      nodeName: NODE_NAME,
      nodeLabels: options.nodeLabels ?? {},
    };
    writeKubeletFiles(params, readFileSync(controlPlane.kubeconfigPath, 'utf8'));
    const relay = await vm.spawn(asNodeDaemon(['node', RELAY, '--listen', `${NODE_NET.serviceIp}:443`, '--to', `${NODE_NET.hostFromGuest}:${controlPlane.port}`]));
    const daemons = { relay, containerd } as Record<string, { id: string }>;
    const kubelet = await vm.spawn(kubeletCommand(params));
    daemons.kubelet = kubelet;
    cleanups.push(async () => {
      // The kubelet first, so it does not restart what containerd is stopping; then containerd's
      // shims and containers die with the VM.
      await vm.kill(kubelet.id, 'SIGTERM').catch(() => undefined);
    });

    const kc = (args: string[], input?: string) =>
      check(kubectl(args, { kubeconfig: controlPlane.kubeconfigPath, ...(input === undefined ? {} : { input }) }), `kubectl ${args.join(' ')}`);
    const helmEnv = {
      HELM_CACHE_HOME: join(logDir, 'helm', 'cache'),
      HELM_CONFIG_HOME: join(logDir, 'helm', 'config'),
      HELM_DATA_HOME: join(logDir, 'helm', 'data'),
    };
    const daemonLog = async (name: 'containerd' | 'kubelet' | 'relay', lines = 60) => {
      const status = await vm.logs(daemons[name]!.id);
      return (status.stdout + status.stderr).split('\n').slice(-lines).join('\n');
    };

    await phase('kubelet started → node Ready', () => waitNodeReady(kc, daemonLog));
    return {
      controlPlane,
      vm,
      image,
      binaries,
      nodeName: NODE_NAME,
      logDir,
      kubectl: kc,
      helm: (args) => check(helm(args, { kubeconfig: controlPlane.kubeconfigPath, env: helmEnv }), `helm ${args.join(' ')}`),
      nodeSh: (script, timeoutMs) => vm.trySh(script, { timeoutMs: timeoutMs ?? 60_000 }),
      async tagImage(tag) {
        const target = `${image.repository}:${tag}`;
        await vm.run(ctr('images', 'tag', '--force', image.reference, target));
        return target;
      },
      daemonLog,
      stop,
    };
  } catch (error) {
    const tail = (file: string) => {
      try {
        return readFileSync(join(logDir, file), 'utf8').split('\n').slice(-30).join('\n');
      } catch {
        return '(none)';
      }
    };
    const context = `\n--- kube-controller-manager ---\n${tail('kube-controller-manager.log')}\n--- kube-scheduler ---\n${tail('kube-scheduler.log')}`;
    await stop();
    throw new Error(`${(error as Error).message}${context}`, { cause: error });
  }
}

/** The kubelet's configuration and kubeconfig (they need the control plane's CA and port). */
function writeKubeletFiles(params: GuestNodeParams, adminKubeconfig: string): void {
  writeFileSync(join(params.confDir, 'kubelet.yaml'), kubeletConfig(params));
  writeFileSync(join(params.confDir, 'kubelet.kubeconfig'), guestKubeconfig(adminKubeconfig, params.apiserverPort), { mode: 0o600 });
}

async function stopAll(components: HostComponent[]): Promise<void> {
  await Promise.all(components.map((c) => c.stop()));
}

async function waitGuest(vm: Vm, what: string, script: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: VmExecResult | undefined;
  while (Date.now() < deadline) {
    last = await vm.trySh(script, { timeoutMs: 30_000 });
    if (last.exitCode === 0) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out waiting for ${what}: ${last?.stderr ?? ''}${last?.stdout ?? ''}`);
}

async function waitNodeReady(kc: (args: string[]) => Promise<string>, daemonLog: (name: 'kubelet' | 'containerd') => Promise<string>): Promise<void> {
  const deadline = Date.now() + 300_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      last = await kc(['get', 'node', NODE_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].message}']);
      if (last.startsWith('True')) return;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  throw new Error(`node ${NODE_NAME} did not become Ready: ${last}\n--- kubelet ---\n${await daemonLog('kubelet')}\n--- containerd ---\n${await daemonLog('containerd')}`);
}
