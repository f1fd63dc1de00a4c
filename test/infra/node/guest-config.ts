// The configuration of the test node, as pure functions of its parameters: containerd's config,
// the CNI network, the kubelet's configuration and kubeconfig, and the shell scripts that
// prepare the guest and start each daemon. guest-node.ts writes them where the guest reads them
// (a host temp dir: the guest sees the host's files at the same paths) and runs the scripts.

/** The node's fixed addresses inside the VM. */
export const NODE_NET = {
  /** The second NIC (qemu user network 10.0.3.0/24, restrict=on): the kubelet's port forward. */
  nodeIp: '10.0.3.15',
  nodeNet: '10.0.3.0/24',
  /** The "kubernetes" Service's ClusterIP (first address of the test apiserver's service range). */
  serviceIp: '10.96.0.1',
  /** Pod network of the CNI bridge. */
  podSubnet: '10.244.0.0/24',
  /** Where the guest reaches the host's loopback (qemu user networking). */
  hostFromGuest: '10.0.2.2',
} as const;

export interface GuestNodeParams {
  /** Host directory with the node's binaries (build-node.sh output), visible in the guest. */
  binDir: string;
  /** Host directory of the rendered configuration, visible in the guest. */
  confDir: string;
  /** The kubelet's port: the same inside the guest and on the host's loopback (hostfwd). */
  kubeletPort: number;
  /** The apiserver's port on the host's loopback. */
  apiserverPort: number;
  /** CA that signed the apiserver's serving cert and the client certs (the kubelet trusts it for its clients). */
  caFile: string;
  pauseRef: string;
  /** Node name; the apiserver dials the kubelet by it (Hostname address type), so it is "localhost". */
  nodeName: string;
  nodeLabels: Record<string, string>;
}

/** Where things live inside the guest. Everything is on tmpfs mounts or the VM's own overlay. */
export const GUEST_PATHS = {
  bin: '/opt/ipsec-node/bin',
  containerdRoot: '/var/lib/containerd',
  containerdState: '/run/containerd',
  containerdSocket: '/run/containerd/containerd.sock',
  kubeletRoot: '/var/lib/kubelet',
  cniConfDir: '/etc/cni/net.d',
  cniBinDir: '/usr/lib/cni',
  /**
   * The cgroup of the node's own daemons (containerd and its shims, the kubelet, the Service
   * relay), as systemd's system.slice is on a real node. Left in the root cgroup, each of their
   * threads competed with the whole kubepods group as an equal (the root's tasks are scheduled
   * one by one against child groups), so on this 2-vCPU emulated node the three operator pods
   * got about a quarter of the CPU while they started, and none reached /healthz within the
   * startup probe's 600 s (run of 2026-12-02 08:00, host load 16-32). Here the daemons weigh as
   * one group, like kubepods.
   */
  daemonCgroup: '/sys/fs/cgroup/node-daemons',
} as const;

export function containerdConfig(p: Pick<GuestNodeParams, 'pauseRef'>): string {
  return `# containerd 2 of the test node (config version 3).
version = 3
root = "${GUEST_PATHS.containerdRoot}"
state = "${GUEST_PATHS.containerdState}"

[grpc]
  address = "${GUEST_PATHS.containerdSocket}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # registry.k8s.io is out of reach: the sandbox image is imported from build-node.sh's archive.
    sandbox = "${p.pauseRef}"

[plugins.'io.containerd.cri.v1.runtime']
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        # The kubelet uses the cgroupfs driver: there is no systemd in the guest.
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["${GUEST_PATHS.cniBinDir}"]
    conf_dir = "${GUEST_PATHS.cniConfDir}"
`;
}

/** One bridge with host-local addresses; pods route everything through the node (their gateway). */
export function cniConfig(): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'ipsec-node',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          ipMasq: false,
          ipam: { type: 'host-local', ranges: [[{ subnet: NODE_NET.podSubnet }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
      ],
    },
    null,
    2,
  );
}

export function kubeletConfig(p: GuestNodeParams): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
port: ${p.kubeletPort}
readOnlyPort: 0
# The apiserver connects with its kubelet client certificate (the test CA); no anonymous access.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: ${p.caFile}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://${GUEST_PATHS.containerdSocket}
cgroupDriver: cgroupfs
# The guest mounts cgroup v2 (the host has hybrid v1, where kubelet 1.35+ would refuse to start).
failCgroupV1: true
failSwapOn: true
# Everything the node stores is on tmpfs in guest memory: no disk-pressure eviction, and no
# image garbage collection (it would delete the imported images, which cannot be pulled again).
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# cadvisor finds no block device under tmpfs, and with local storage isolation on the kubelet's
# container manager refuses to start without the root file system's size.
localStorageCapacityIsolation: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
staticPodPath: ""
serializeImagePulls: false
`;
}

/** A kubeconfig with the admin credentials and the apiserver as the guest reaches it. */
export function guestKubeconfig(adminKubeconfig: string, apiserverPort: number): string {
  const replaced = adminKubeconfig.replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://${NODE_NET.hostFromGuest}:${apiserverPort}`);
  if (replaced === adminKubeconfig) throw new Error('admin kubeconfig has no server https://127.0.0.1:PORT to rewrite');
  return replaced;
}

/** Prepares the guest once: cgroup v2, tmpfs state dirs, binaries in guest memory, addresses. */
export function prepareScript(p: Pick<GuestNodeParams, 'binDir' | 'confDir'>): string {
  const b = GUEST_PATHS.bin;
  return `set -eu
mkdir -p ${b}
# Executables on the 9p share (cache=none) page in one round trip at a time: copy them.
for f in ipsec-node containerd containerd-shim-runc-v2 ctr; do cp ${p.binDir}/$f ${b}/$f; done
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
for c in cpuset cpu io memory pids; do echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control; done
mkdir -p ${GUEST_PATHS.daemonCgroup}
for d in ${GUEST_PATHS.containerdRoot} ${GUEST_PATHS.kubeletRoot} /var/log/pods /var/log/containers /var/lib/ipsec-operator; do
  mkdir -p $d; mountpoint -q $d || mount -t tmpfs -o mode=0755 node-state $d
done
mkdir -p ${GUEST_PATHS.cniConfDir} ${GUEST_PATHS.containerdState}
cp ${p.confDir}/10-ipsec-node.conflist ${GUEST_PATHS.cniConfDir}/
ip link set eth1 up
ip addr add ${NODE_NET.nodeIp}/24 dev eth1
ip addr add ${NODE_NET.serviceIp}/32 dev lo
`;
}

/** A node daemon's command, started in the daemons' cgroup (GUEST_PATHS.daemonCgroup). */
export function asNodeDaemon(argv: readonly string[]): string[] {
  const quoted = argv.map((arg) => `'${arg.replaceAll("'", `'\\''`)}'`).join(' ');
  return ['sh', '-c', `echo $$ >${GUEST_PATHS.daemonCgroup}/cgroup.procs && exec ${quoted}`];
}

export function containerdCommand(p: Pick<GuestNodeParams, 'confDir'>): string[] {
  return asNodeDaemon(['env', `PATH=${GUEST_PATHS.bin}:/usr/sbin:/usr/bin:/sbin:/bin`, `${GUEST_PATHS.bin}/containerd`, '--config', `${p.confDir}/containerd.toml`]);
}

export function kubeletCommand(p: GuestNodeParams): string[] {
  const labels = Object.entries(p.nodeLabels).map(([k, v]) => `${k}=${v}`).join(',');
  return asNodeDaemon([
    `${GUEST_PATHS.bin}/ipsec-node`, 'kubelet',
    `--config=${p.confDir}/kubelet.yaml`,
    `--kubeconfig=${p.confDir}/kubelet.kubeconfig`,
    `--hostname-override=${p.nodeName}`,
    `--node-ip=${NODE_NET.nodeIp}`,
    `--node-labels=${labels}`,
    '--v=1',
  ]);
}

/** `ctr` against the node's containerd, in the namespace the CRI uses. */
export function ctr(...args: string[]): string[] {
  return [`${GUEST_PATHS.bin}/ctr`, '--address', GUEST_PATHS.containerdSocket, '--namespace', 'k8s.io', ...args];
}
