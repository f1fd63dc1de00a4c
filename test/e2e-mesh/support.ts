// What the IpsecMesh tests on real kernels share: the mesh's status and the agents' reports as
// the API server holds them, SA dumps into one SequenceTracker (and their keys into one list for
// the key scan), the kernels' XFRM counters, numbered traffic among a set of nodes, and the key
// scan over everything the cluster shows; and the run's setup and teardown (startMeshRun,
// MeshRun.finish) and the waits every mesh test makes (a round completed, Ready with N members).
// The instruments are test/support/traffic-proof.ts.
//
// A run may hold several meshes one after the other (MeshRun.use): the node addresses of both
// families and, with `pods`, a pod namespace behind each node (its pod CIDRs in the Node's
// spec.podCIDRs) are set up once, and each mesh says which families it protects and whether its
// traffic runs between the nodes or between their pods.
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { VmClient } from '../infra/vm/client.js';
import { startCluster, type Cluster } from '../infra/cluster/cluster.js';
import type { TopologyNode } from '../infra/vm/topology.js';
import { timed, waitFor } from '../e2e/support.js';
import { warmCrypto } from '../support/vm-cli.js';
import { canonicalAddress } from '../../src/xfrm/address.js';
import { directionCounts, dumpedKeys, parseStateDump, parseTrafficSummary, parseXfrmStat, scanKeys, SequenceTracker, xfrmStatIncrease, type DirectionCount, type KeyFinding } from '../support/traffic-proof.js';

const TRAFFIC_NODE = fileURLToPath(new URL('../infra/vm/guest/traffic-node.mjs', import.meta.url));
export const RATE = 25; // datagrams per second per direction (the issue's floor is 20)
/** The UDP port of the numbered traffic (both ends), unless a test asks for another. */
export const PORT = 7000;
export const MESH_LABEL = 'ipsec.xfrm.io/mesh';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface MeshStatus {
  keyGeneration?: number;
  lastRotationTime?: string;
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
  members?: { selected?: number; ready?: number; rotating?: number };
  nodes?: { name: string; generation?: number; lastRotationTime?: string; rotating?: boolean; peers?: number; expectedPeers?: number }[];
  rotationRequests?: { node: string; requestId: string }[];
}

export interface MeshReport {
  advertisement: { bootId: string; generations: { generation: number }[]; peers: { node: string; bootId: string }[] };
  readyPeers?: number;
  expectedPeers?: number;
  rotation?: { requestId: string; state: string; generation: number };
}


export const condition = (status: MeshStatus, type: string) => status.conditions?.find((c) => c.type === type);

export type MeshFamily = 'IPv4' | 'IPv6';
export type MeshMode = 'transport' | 'tunnel';

/** What a mesh protects: its address families, its mode and so where its test traffic runs (tunnel: between the pods). */
export interface MeshShape {
  readonly families: readonly MeshFamily[];
  readonly mode: MeshMode;
}

const IPV4_TRANSPORT: MeshShape = { families: ['IPv4'], mode: 'transport' };

/** Spec fields a mesh test may add: the fail-closed guards, clear-text exemptions and ESP in UDP. */
export interface MeshGuards {
  readonly failClosed?: boolean;
  readonly exemptions?: readonly { readonly protocol: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'ipv6-icmp'; readonly port?: number }[];
  readonly natTraversal?: { readonly sourcePort?: number; readonly destinationPort?: number };
}

export function meshManifest(name: string, maxConcurrent: number, shape: MeshShape = IPV4_TRANSPORT, guards: MeshGuards = {}): string {
  const extra = [
    ...(guards.failClosed !== undefined ? [`  failClosed: ${guards.failClosed}`] : []),
    ...(guards.exemptions !== undefined ? [`  exemptions: ${JSON.stringify(guards.exemptions)}`] : []),
    ...(guards.natTraversal !== undefined ? [`  natTraversal: ${JSON.stringify(guards.natTraversal)}`] : []),
  ];
  return `apiVersion: ipsec.xfrm.io/v1alpha1
kind: IpsecMesh
metadata:
  name: ${name}
spec:
  nodeSelector: {matchLabels: {${MESH_LABEL}: ${name}}}
  addressFamilies: [${shape.families.join(', ')}]
  mode: ${shape.mode}
  aead: rfc4106-gcm-aes256
${extra.map((line) => `${line}\n`).join('')}  rotation:
    interval: 24h
    gracePeriod: 3s
    backstop: 10m
    maxConcurrent: ${maxConcurrent}
`;
}

export interface MeshRunOptions {
  readonly kubeconfigPath: string;
  readonly mesh: string;
  /** Every node the run creates (Node objects, namespaces, agents). */
  readonly nodes: readonly string[];
  /** The nodes labelled into the mesh at the start; default all. */
  readonly members?: readonly string[];
  /** The agents' full resync (the harness's default is 10 s). */
  readonly resyncSeconds?: number;
  /** The first mesh's shape (default IPv4 transport); MeshRun.use switches to another. */
  readonly shape?: MeshShape;
  /** Every node's InternalIPs, one per family (default IPv4 only, as a single-stack cluster). */
  readonly families?: readonly MeshFamily[];
  /**
   * A pod namespace behind each node: a veth into the node's namespace, which forwards; a pod
   * CIDR per family of `families` in the Node's spec.podCIDRs (as a kubelet's node IPAM would
   * set it), routed to each other node's address. For tunnel-mode meshes.
   */
  readonly pods?: boolean;
}

/** One end of the test traffic: an address in a namespace, of a node or of the pod behind it. */
export interface TrafficEndpoint {
  readonly node: string;
  readonly family: MeshFamily;
  readonly netns: string;
  readonly address: string;
}

/**
 * The pod behind node number `index`: RFC 2544's benchmarking range (never routed) for IPv4,
 * RFC 3849's documentation range for IPv6, one /24 and one /64 per node; the node's side of the
 * veth is .1 / ::1 (the pod's gateway), the pod .2 / ::2. Canonical text: it is compared with
 * what the kernel and node:dgram print.
 */
function podLayout(index: number): Record<MeshFamily, { cidr: string; gateway: string; pod: string }> {
  const v6 = `2001:db8:200:${(index + 1).toString(16)}`;
  return {
    IPv4: { cidr: `198.18.${index + 1}.0/24`, gateway: `198.18.${index + 1}.1`, pod: `198.18.${index + 1}.2` },
    IPv6: { cidr: `${v6}::/64`, gateway: `${v6}::1`, pod: `${v6}::2` },
  };
}

/**
 * The cluster of a mesh test: crypto warmed in the guest, the controller and one agent per node,
 * the IpsecMesh CRD established, the Node objects' InternalIP written (no kubelet writes it),
 * the members labelled. The mesh itself is the test's to apply.
 */
export async function startMeshRun(vm: VmClient, options: MeshRunOptions): Promise<MeshRun> {
  await warmCrypto(vm);
  const cluster = await timed('cluster started', () =>
    startCluster({ vm, kubeconfigPath: options.kubeconfigPath, nodes: options.nodes, ...(options.resyncSeconds !== undefined ? { resyncSeconds: options.resyncSeconds } : {}), log: (line) => console.log(`[e2e-mesh] ${line}`) }),
  );
  const run = new MeshRun(vm, cluster, options.mesh, options.nodes, options.shape ?? IPV4_TRANSPORT, options.families ?? ['IPv4']);
  try {
    await cluster.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/ipsecmeshes.ipsec.xfrm.io']);
    await run.writeNodeAddresses();
    if (options.pods === true) await run.createPods();
    for (const name of options.members ?? options.nodes) await run.label(name, true);
  } catch (error) {
    await run.finish();
    throw error;
  }
  return run;
}

export class MeshRun {
  readonly tracker = new SequenceTracker();
  /** Every SA key the dumps showed, for the key scan. Never print these. */
  readonly keys: Buffer[] = [];
  readonly timings: string[] = [];
  /** Logs of agent processes that were stopped (a restarted agent's log starts empty). */
  readonly retiredLogs: string[] = [];
  /** Each agent's /metrics as the last key scan read it. */
  readonly agentMetrics = new Map<string, string>();

  /** Every mesh the run used, for finish. */
  readonly #meshes: string[] = [];
  /** The pod namespaces behind the nodes (createPods), by node. */
  readonly #pods = new Map<string, { readonly netns: string; readonly addresses: Record<MeshFamily, string> }>();

  constructor(
    readonly vm: VmClient,
    readonly cluster: Cluster,
    public mesh: string,
    readonly nodes: readonly string[],
    public shape: MeshShape,
    /** The families of the nodes' InternalIPs. */
    readonly nodeFamilies: readonly MeshFamily[],
  ) {
    this.#meshes.push(mesh);
  }

  /** From now on the run's mesh (status, labels, traffic, SA counts) is `mesh`, of `shape`. */
  use(mesh: string, shape: MeshShape): void {
    this.mesh = mesh;
    this.shape = shape;
    this.#meshes.push(mesh);
  }

  /** The run's end: log tails and timings printed, the meshes and pods deleted, the cluster stopped. */
  async finish(tailCharacters = 4000): Promise<void> {
    for (const name of this.nodes) console.log(`[e2e-mesh] agent ${name} log tail:\n${(await this.cluster.agentLogs(name).catch(() => '')).slice(-tailCharacters)}`);
    console.log(`[e2e-mesh] controller log tail:\n${this.cluster.controllerLogs().slice(-tailCharacters)}`);
    console.log(`[e2e-mesh] timings:\n${this.timings.join('\n')}`);
    await this.cluster.kubectl(['delete', 'ipsecmesh', ...this.#meshes, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    const pods = [...this.#pods.values()].map((pod) => pod.netns);
    // A process left in a namespace would keep it alive after `netns del`.
    if (pods.length > 0) await this.vm.trySh(`for ns in ${pods.join(' ')}; do [ -e /run/netns/$ns ] || continue; pids=$(ip netns pids $ns); [ -z "$pids" ] || kill -9 $pids; ip netns del $ns; done`);
    await this.cluster.stop();
  }

  /**
   * Deletes the run's mesh; waits until no node holds an SA or a policy and `alsoGone(node)`
   * (what else the mesh made a node hold) is true on every node.
   */
  async deletedEverywhere(what = 'no SA and no policy left on any node', alsoGone: (node: string) => Promise<boolean> = async () => true): Promise<void> {
    const started = Date.now();
    await this.cluster.kubectl(['delete', 'ipsecmesh', this.mesh, '--wait=false']);
    await waitFor(
      what,
      async () => {
        for (const name of this.nodes) {
          const left = await this.node(name).sh('ip xfrm state; ip xfrm policy');
          if (left.stdout.trim() !== '' || !(await alsoGone(name))) return false;
        }
        return true;
      },
      120_000,
      1000,
    );
    this.timings.push(`${this.mesh} deleted, ${what} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  /** Each node's key generation as the mesh's status shows it. */
  async generations(): Promise<Map<string, number>> {
    return new Map(((await this.status()).nodes ?? []).map((entry) => [entry.name, entry.generation ?? 0]));
  }

  /**
   * Waits for a completed round: every one of `members` on a newer generation than in `before`,
   * Rotating False, Ready, no request left. `seen` is shown every status the wait read.
   */
  async roundCompleted(members: readonly string[], before: ReadonlyMap<string, number>, timeoutMs = 600_000, seen?: (status: MeshStatus) => void): Promise<void> {
    await waitFor(
      'the rotation round completed (every member on a new generation, Rotating False, Ready, no request left)',
      async () => {
        const status = await this.status();
        seen?.(status);
        const nodes = status.nodes ?? [];
        const rotated = members.every((name) => (nodes.find((entry) => entry.name === name)?.generation ?? 0) > (before.get(name) ?? 0));
        return rotated && condition(status, 'Rotating')?.status === 'False' && condition(status, 'Ready')?.status === 'True' && (status.rotationRequests ?? []).length === 0;
      },
      timeoutMs,
      1000,
    ).catch((error: Error) => this.explain(error));
  }

  /** Waits until the mesh is Ready with `count` members selected and ready; returns that status. */
  async readyWith(count: number, what: string, timeoutMs = 600_000): Promise<MeshStatus> {
    return waitFor(
      what,
      async () => {
        const status = await this.status();
        return condition(status, 'Ready')?.status === 'True' && status.members?.selected === count && status.members?.ready === count ? status : undefined;
      },
      timeoutMs,
      1000,
    ).catch((error: Error) => this.explain(error));
  }

  node(name: string): TopologyNode {
    return this.cluster.topology.node(name);
  }

  /** The node's address in `family` (its InternalIP), in canonical text as the kernel prints it. */
  address(name: string, family: MeshFamily = 'IPv4'): string {
    const node = this.node(name);
    const address = family === 'IPv4' ? node.ipv4 : node.ipv6;
    if (address === undefined) throw new Error(`node ${name} has no ${family} address`);
    return canonicalAddress(address);
  }

  /** Every node address the run's mesh protects (its families), for matching SAs. */
  addresses(name: string): string[] {
    return this.shape.families.map((family) => this.address(name, family));
  }

  /** The traffic ends of `among` for the run's mesh: per family, the nodes' addresses, or in tunnel mode their pods'. */
  endpoints(among: readonly string[]): TrafficEndpoint[] {
    return among.flatMap((node) =>
      this.shape.families.map((family) => {
        if (this.shape.mode === 'transport') return { node, family, netns: this.node(node).netns, address: this.address(node, family) };
        const pod = this.#pods.get(node);
        if (pod === undefined) throw new Error(`a tunnel-mode mesh's traffic runs between pods: start the run with pods (node ${node} has none)`);
        return { node, family, netns: pod.netns, address: pod.addresses[family] };
      }),
    );
  }

  /**
   * Packets the receiver's SAs of the run's mode from the sender's node address to its own
   * decrypted (SequenceTracker.carried), for a direction of the test traffic.
   */
  carried(count: DirectionCount): bigint {
    const [from, to] = [this.#endpointOf(count.from), this.#endpointOf(count.to)];
    return this.tracker.carried(to.node, this.shape.mode, this.address(from.node, from.family), this.address(to.node, to.family));
  }

  /** `a->b` (single family) or `a->b IPv6`, for a direction of the test traffic. */
  directionName(count: DirectionCount): string {
    const [from, to] = [this.#endpointOf(count.from), this.#endpointOf(count.to)];
    return `${from.node}->${to.node}${this.shape.families.length > 1 ? ` ${from.family}` : ''}`;
  }

  #endpointOf(address: string): TrafficEndpoint {
    const found = this.endpoints(this.nodes).find((endpoint) => endpoint.address === address);
    if (found === undefined) throw new Error(`no traffic endpoint has the address ${address}`);
    return found;
  }

  /** The pod CIDR of `name` in `family` (createPods), as the kernel prints a selector. */
  podCIDR(name: string, family: MeshFamily): string {
    if (!this.#pods.has(name)) throw new Error(`node ${name} has no pod (start the run with pods)`);
    return podLayout(this.nodes.indexOf(name))[family].cidr;
  }

  /** Creates the pod namespaces behind the nodes and writes their pod CIDRs into the Node objects (see MeshRunOptions.pods). */
  async createPods(): Promise<void> {
    const script = ['set -e'];
    this.nodes.forEach((name, index) => {
      const node = this.node(name);
      const layout = podLayout(index);
      const netns = `${node.netns}-pod`;
      const families = this.nodeFamilies;
      // Created from the pod's side: the node's namespace already has an eth0.
      script.push(
        `ip netns add ${netns}`,
        `ip -n ${netns} link add eth0 type veth peer name pod0 netns ${node.netns}`,
        `ip -n ${netns} link set lo up`,
        ...families.map((family) => `ip -n ${netns} addr add ${layout[family].pod}/${layout[family].cidr.split('/')[1]} dev eth0${family === 'IPv6' ? ' nodad' : ''}`),
        `ip -n ${netns} link set eth0 up`,
        ...families.map((family) => `ip -n ${netns} ${family === 'IPv6' ? '-6 ' : ''}route add default via ${layout[family].gateway}`),
        ...families.map((family) => `ip -n ${node.netns} addr add ${layout[family].gateway}/${layout[family].cidr.split('/')[1]} dev pod0${family === 'IPv6' ? ' nodad' : ''}`),
        `ip -n ${node.netns} link set pod0 up`,
        // The node routes between its pod and the other nodes (/proc/sys/net is the namespace's own).
        `ip netns exec ${node.netns} sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'`,
        // Every other node's pods through that node, as a CNI's routes would send them.
        ...this.nodes.flatMap((peer, peerIndex) => (peer === name ? [] : families.map((family) => `ip -n ${node.netns} route add ${podLayout(peerIndex)[family].cidr} via ${this.address(peer, family)}`))),
      );
      this.#pods.set(name, { netns, addresses: { IPv4: layout.IPv4.pod, IPv6: layout.IPv6.pod } });
    });
    await this.vm.sh(script.join('\n'));
    for (const [index, name] of this.nodes.entries()) {
      const cidrs = this.nodeFamilies.map((family) => podLayout(index)[family].cidr);
      await this.cluster.kubectl(['patch', 'node', name, '--type=merge', '-p', JSON.stringify({ spec: { podCIDR: cidrs[0], podCIDRs: cidrs } })]);
    }
  }

  /** Stops the node's agent with `signal` (its log kept for the key scan) and starts it again. */
  async restartAgent(name: string, signal: NodeJS.Signals, extraArgs?: readonly string[]): Promise<void> {
    await this.cluster.stopAgent(name, signal);
    this.retiredLogs.push(await this.cluster.agentLogs(name));
    await this.cluster.startAgent(name, extraArgs);
  }

  /**
   * The Node objects have no kubelet: their InternalIPs (the mesh's node addresses, one per
   * family) are written here, in the topology's text. Its IPv6 text is not canonical
   * (`2001:db8:100:0::1`, the kernel prints `2001:db8:100::1`); the API server keeps it as written,
   * so the agents must not compare it as it stands.
   */
  async writeNodeAddresses(): Promise<void> {
    for (const name of this.nodes) {
      const internal = this.nodeFamilies.map((family) => ({ type: 'InternalIP', address: family === 'IPv4' ? this.node(name).ipv4! : this.node(name).ipv6! }));
      await this.cluster.kubectl(['patch', 'node', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { addresses: [...internal, { type: 'Hostname', address: name }] } })]);
    }
  }

  async label(name: string, member: boolean): Promise<void> {
    await this.cluster.kubectl(['label', 'node', name, member ? `${MESH_LABEL}=${this.mesh}` : `${MESH_LABEL}-`, ...(member ? ['--overwrite'] : [])]);
  }

  async status(): Promise<MeshStatus> {
    return (JSON.parse(await this.cluster.kubectl(['get', 'ipsecmesh', this.mesh, '-o', 'json'])) as { status?: MeshStatus }).status ?? {};
  }

  async report(name: string): Promise<MeshReport | undefined> {
    const state = JSON.parse(await this.cluster.kubectl(['get', 'ipsecnodestate', name, '-o', 'json'])) as { status?: { meshes?: (MeshReport & { mesh: string })[] } };
    return state.status?.meshes?.find((entry) => entry.mesh === this.mesh);
  }

  /** waitFor's failure with the mesh's status appended. */
  async explain(error: Error): Promise<never> {
    throw new Error(`${error.message}\nstatus: ${JSON.stringify(await this.status().catch(() => ({})))}`);
  }

  #sampling: Promise<unknown> = Promise.resolve();

  /**
   * Every node's SA dump into the tracker (and its keys into the scan list); returns the dumps.
   * One at a time: two overlapping samples could hand the tracker a node's older dump after its
   * newer one, which would look like a counter going back.
   */
  sample(): Promise<Map<string, string>> {
    const next = this.#sampling.then(() => this.#sampleNow());
    this.#sampling = next.catch(() => undefined);
    return next;
  }

  async #sampleNow(): Promise<Map<string, string>> {
    const dumps = new Map<string, string>();
    for (const name of this.nodes) {
      const dump = (await this.node(name).sh('ip -s xfrm state')).stdout;
      this.tracker.observe(name, dump);
      for (const key of dumpedKeys(dump)) if (!this.keys.some((known) => known.equals(key))) this.keys.push(key);
      dumps.set(name, dump);
    }
    return dumps;
  }

  /**
   * The packets tcpdump printed (`-n`, one line each) for `filter` on the node's eth0 while
   * `during` ran, with what `during` returned. The capture is listening before `during` starts
   * and stopped a second after it ends; a capture that was not running all along throws (an
   * empty capture must never pass for "nothing on the wire"). What crosses eth0 is what left or
   * reached the node on the wire: a packet a policy blocked never gets there. tcpdump runs as a
   * process of the VM's agent (spawn), not in the background of a shell.
   */
  async captureOnWire<T>(name: string, filter: string, during: () => Promise<T>): Promise<{ lines: string[]; result: T; droppedByKernel: number }> {
    // An 8 MiB capture buffer and short snapshots: under TCG at high load tcpdump falls behind
    // and the kernel drops what its buffer cannot hold (reported below, for the checks that count).
    const { id } = await this.vm.spawn({ argv: ['ip', 'netns', 'exec', this.node(name).netns, 'tcpdump', '-l', '-n', '-B', '8192', '-s', '128', '-i', 'eth0', ...filter.split(' ')] });
    for (;;) {
      const status = await this.vm.logs(id);
      if (!status.running) throw new Error(`tcpdump on ${name} exited before listening: ${status.stderr}`);
      if (status.stderr.includes('listening on')) break;
      await sleep(200);
    }
    let result: T;
    try {
      result = await during();
    } finally {
      await sleep(1000);
      const status = await this.vm.logs(id);
      if (!status.running) throw new Error(`tcpdump on ${name} stopped during the capture: ${status.stderr}`);
      await this.vm.kill(id, 'SIGINT');
    }
    const status = await this.vm.wait(id, 30_000);
    expect(status.running, `tcpdump on ${name} still running after SIGINT`).toBe(false);
    const lines = status.stdout.split('\n').filter((line) => line.trim() !== '');
    console.log(`[e2e-mesh] capture on ${name} (${filter}): ${lines.length} packets, the first: ${JSON.stringify(lines.slice(0, 2))}; tcpdump: ${status.stderr.trim().split('\n').slice(-3).join(' / ')}`);
    const dropped = /(\d+) packets? dropped by kernel/.exec(status.stderr);
    if (dropped === null) throw new Error(`tcpdump on ${name} did not say what the kernel dropped: ${status.stderr}`);
    return { lines, result, droppedByKernel: Number(dropped[1]) };
  }

  async xfrmStats(): Promise<Map<string, Map<string, number>>> {
    return new Map(await Promise.all(this.nodes.map(async (name) => [name, parseXfrmStat((await this.node(name).sh('cat /proc/net/xfrm_stat')).stdout)] as const)));
  }

  /**
   * For every ordered pair of `members` and family of the mesh (`a->b IPv4`): the SPIs of the
   * ESP SAs the sender holds to the receiver that the receiver holds too.
   */
  pairedSpis(dumps: Map<string, string>, members: readonly string[]): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const family of this.shape.families) {
      for (const from of members) {
        for (const to of members) {
          if (from === to) continue;
          const held = (name: string) =>
            parseStateDump(dumps.get(name)!)
              .filter((sa) => sa.protocol === 'esp' && sa.source === this.address(from, family) && sa.destination === this.address(to, family))
              .map((sa) => sa.spi);
          const atReceiver = new Set(held(to));
          out.set(`${from}->${to} ${family}`, held(from).filter((spi) => atReceiver.has(spi)));
        }
      }
    }
    return out;
  }

  /** ESP SAs a node holds with one of `peer`'s addresses (of the mesh's families) as source or destination. */
  espWith(dump: string, peer: string): number {
    const addresses = new Set(this.addresses(peer));
    return parseStateDump(dump).filter((sa) => sa.protocol === 'esp' && (addresses.has(sa.source) || addresses.has(sa.destination))).length;
  }

  /** Waits until every member holds exactly one SA per direction and family with every other member and nothing with a non-member (old generations and left nodes removed). */
  async waitSettled(members: readonly string[], what: string, timeoutMs = 300_000): Promise<void> {
    await waitFor(
      what,
      async () => {
        const dumps = await this.sample();
        for (const name of this.nodes) {
          const esp = parseStateDump(dumps.get(name)!).filter((sa) => sa.protocol === 'esp').length;
          if (esp !== (members.includes(name) ? this.shape.families.length * 2 * (members.length - 1) : 0)) return false;
        }
        const spis = this.pairedSpis(dumps, members);
        return [...spis.values()].every((held) => held.length === 1);
      },
      timeoutMs,
      1000,
    );
  }

  /** Starts a traffic node at each endpoint of `among` (per family, see endpoints) on UDP `port`; returns a stop that collects the directions' counts. */
  async startTraffic(among: readonly string[], port = PORT): Promise<() => Promise<DirectionCount[]>> {
    const ids: string[] = [];
    const endpoints = this.endpoints(among);
    for (const self of endpoints) {
      const peers = endpoints.filter((peer) => peer.family === self.family && peer.node !== self.node).map((peer) => peer.address).join(',');
      const { id } = await this.vm.spawn({ argv: ['ip', 'netns', 'exec', self.netns, 'node', TRAFFIC_NODE, '--self', self.address, '--peers', peers, '--port', String(port), '--rate', String(RATE), '--drain-ms', '3000'] });
      ids.push(id);
    }
    for (const id of ids) {
      while (!(await this.vm.logs(id)).stdout.includes('ready')) {
        const status = await this.vm.logs(id);
        if (!status.running) throw new Error(`a traffic node exited: ${status.stderr}`);
        await sleep(250);
      }
    }
    for (const id of ids) await this.vm.kill(id, 'SIGUSR1'); // all listen: start sending
    return async () => {
      const summaries = [];
      for (const id of ids) await this.vm.kill(id, 'SIGTERM');
      for (const id of ids) {
        const status = await this.vm.wait(id, 60_000);
        expect(status.running, 'traffic node still running after SIGTERM').toBe(false);
        summaries.push(parseTrafficSummary(status.stdout));
      }
      return directionCounts(summaries);
    };
  }

  /**
   * Numbered traffic among `among` while `work` runs, SA dumps every second meanwhile. Asserts
   * for every direction between two of `proven`: sent at least 5 s worth, 0 lost; and that the
   * XfrmInNoStates/XfrmInStateSeqError of the `proven` nodes did not move. The traffic runs on
   * UDP `port`.
   */
  async underTraffic(label: string, among: readonly string[], proven: readonly string[], work: () => Promise<void>, port = PORT): Promise<DirectionCount[]> {
    const before = await this.xfrmStats();
    const stop = await this.startTraffic(among, port);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await this.sample().catch(() => undefined);
        await sleep(1000);
      }
    })();
    const started = Date.now();
    let counts: DirectionCount[];
    try {
      await sleep(3000);
      await work();
      await sleep(3000);
    } finally {
      sampling = false;
      await sampler;
      counts = await stop();
    }
    await this.sample();
    const increase = new Map([...(await this.xfrmStats())].map(([name, after]) => [name, xfrmStatIncrease(before.get(name)!, after)]));
    const summary = counts.map((count) => `${this.directionName(count)} ${count.received}/${count.sent}`).join(', ');
    const moved = JSON.stringify(Object.fromEntries([...increase].map(([node, changes]) => [node, Object.fromEntries(changes)])));
    const line = `${label}: ${((Date.now() - started) / 1000).toFixed(1)} s; traffic ${summary}; xfrm_stat changes ${moved}; ${this.tracker.samples} dumps, ${this.tracker.pairs.size} (key, SPI) pairs so far`;
    console.log(`[e2e-mesh] ${line}`);
    this.timings.push(line);
    const provenAddresses = new Set(this.endpoints(proven).map((endpoint) => endpoint.address));
    const provenCounts = counts.filter((count) => provenAddresses.has(count.from) && provenAddresses.has(count.to));
    expect(provenCounts).toHaveLength(this.shape.families.length * proven.length * (proven.length - 1));
    for (const count of provenCounts) {
      expect(count.sent, this.directionName(count)).toBeGreaterThanOrEqual(RATE * 5);
      expect({ lost: count.lost, missing: count.missing }, `${label}: ${this.directionName(count)}`).toEqual({ lost: 0, missing: [] });
    }
    expect(this.tracker.restarts).toEqual([]);
    for (const node of proven) {
      const changes = increase.get(node)!;
      expect({ node, XfrmInNoStates: changes.get('XfrmInNoStates') ?? 0, XfrmInStateSeqError: changes.get('XfrmInStateSeqError') ?? 0 }, label).toEqual({ node, XfrmInNoStates: 0, XfrmInStateSeqError: 0 });
    }
    return counts;
  }

  /** The node's agent's /metrics now (also kept in agentMetrics). */
  async scrapeAgentMetrics(name: string): Promise<string> {
    // The agent serves on the VM's user-network address, reachable from inside the guest.
    const metrics = await this.vm.sh(`wget -q -T 10 -O - http://10.0.2.15:${this.cluster.agents.get(name)!.metricsPort}/metrics`);
    expect(metrics.stdout).toContain('ipsec_operator_');
    this.agentMetrics.set(name, metrics.stdout);
    return metrics.stdout;
  }

  /**
   * The most nodes the mesh's status showed rotating at once (members.rotating, or the nodes
   * flagged rotating), polled every second from now until the returned stop is called.
   */
  watchRotating(): () => Promise<number> {
    let most = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const status = await this.status().catch(() => undefined);
        if (status !== undefined) most = Math.max(most, status.members?.rotating ?? 0, (status.nodes ?? []).filter((entry) => entry.rotating === true).length);
        await sleep(1000);
      }
    })();
    return async () => {
      watching = false;
      await watcher;
      return most;
    };
  }

  /**
   * scanKeys with every SA key the dumps showed, over every listable API object (Secrets and
   * Events included), the controller's and every agent's log and metrics.
   */
  async scanEverything(): Promise<{ findings: KeyFinding[]; sources: number; characters: number }> {
    await this.sample();
    const sources = new Map<string, string>();
    const kinds = (await this.cluster.kubectl(['api-resources', '--verbs=list', '-o', 'name'])).split('\n').filter((kind) => kind.trim() !== '');
    expect(kinds).toContain('secrets');
    expect(kinds).toContain('events');
    const everything = await this.cluster.kubectl(['get', kinds.join(','), '--all-namespaces', '-o', 'json']);
    expect(everything).toContain(this.mesh);
    sources.set('API objects', everything);
    sources.set('controller log', this.cluster.controllerLogs());
    this.retiredLogs.forEach((log, index) => sources.set(`stopped agent log ${index}`, log));
    const controllerMetrics = await (await fetch(`http://127.0.0.1:${this.cluster.controllerMetricsPort}/metrics`)).text();
    expect(controllerMetrics).toContain('ipsec_operator_mesh');
    sources.set('controller metrics', controllerMetrics);
    for (const name of this.nodes) {
      sources.set(`agent ${name} log`, await this.cluster.agentLogs(name));
      const metrics = await this.scrapeAgentMetrics(name);
      sources.set(`agent ${name} metrics`, metrics);
    }
    const findings = scanKeys(this.keys, sources);
    const characters = [...sources.values()].reduce((total, text) => total + text.length, 0);
    console.log(`[e2e-mesh] key scan: ${this.keys.length} keys over ${sources.size} sources (${characters} characters): ${findings.length} findings`);
    return { findings, sources: sources.size, characters };
  }
}
