// Network topologies for tests inside the test VM: each "node" is a network namespace with
// one interface, eth0. Two nodes are joined by a veth pair; three or more (or `bridge: true`)
// by veths into a bridge that lives in a namespace of its own, so nothing touches the VM's
// root namespace and tests sharing the VM cannot see each other.
//
// Addresses come from documentation ranges (RFC 5737 198.51.100.0/24, RFC 3849 2001:db8::/32)
// that can never be real hosts; the namespaces have no route out of the VM anyway.
import { randomBytes } from 'node:crypto';
import type { VmClient, VmExecOptions, VmExecResult } from './client.js';

export interface CreateNodesOptions {
  /** Give each node an IPv4 address (default true). */
  readonly ipv4?: boolean;
  /** Give each node an IPv6 address (default true). */
  readonly ipv6?: boolean;
  /** Join the nodes through a bridge even when there are only two. */
  readonly bridge?: boolean;
  /** The first three octets of the /24, default '198.51.100'; node i gets .(i+1). */
  readonly ipv4Prefix?: string;
  /** The /64, written as its first four groups, default '2001:db8:100:0'; node i gets ::(i+1). */
  readonly ipv6Prefix?: string;
  /** Prefix of the namespace names; default a random one, so concurrent topologies never clash. */
  readonly namePrefix?: string;
}

export interface TopologyNode {
  readonly name: string;
  /** The network namespace (`ip netns exec <netns> ...`). */
  readonly netns: string;
  /** Always 'eth0'. */
  readonly ifname: string;
  /** Without the prefix length (/24), or undefined when ipv4 is off. */
  readonly ipv4: string | undefined;
  /** Without the prefix length (/64), or undefined when ipv6 is off. */
  readonly ipv6: string | undefined;
  /** Runs `sh -c script` in the node's namespace; throws unless it exits 0. */
  sh(script: string, options?: VmExecOptions): Promise<VmExecResult>;
  /** Runs `sh -c script` in the node's namespace, whatever its exit status. */
  trySh(script: string, options?: VmExecOptions): Promise<VmExecResult>;
}

export interface Topology {
  readonly nodes: readonly TopologyNode[];
  /** The namespace holding the bridge, when there is one. */
  readonly switchNetns: string | undefined;
  node(name: string): TopologyNode;
  /** Kills what runs in the namespaces and deletes them (their interfaces go with them). */
  cleanup(): Promise<void>;
}

const NODE_NAME = /^[a-z0-9]{1,8}$/;

export async function createNodes(vm: VmClient, names: readonly string[], options: CreateNodesOptions = {}): Promise<Topology> {
  if (names.length < 2) throw new Error(`createNodes needs at least two nodes, got ${names.length}`);
  if (names.length > 250) throw new Error('createNodes: at most 250 nodes fit the /24');
  for (const name of names) {
    if (!NODE_NAME.test(name)) throw new Error(`createNodes: node name ${JSON.stringify(name)} must match ${NODE_NAME}`);
  }
  if (new Set(names).size !== names.length) throw new Error(`createNodes: duplicate node names in ${names.join(', ')}`);
  const ipv4 = options.ipv4 ?? true;
  const ipv6 = options.ipv6 ?? true;
  const prefix = options.namePrefix ?? `t${randomBytes(3).toString('hex')}`;
  const v4 = options.ipv4Prefix ?? '198.51.100';
  const v6 = options.ipv6Prefix ?? '2001:db8:100:0';
  const bridged = options.bridge === true || names.length > 2;
  const switchNetns = bridged ? `${prefix}-sw` : undefined;

  const nodes: TopologyNode[] = names.map((name, i) => {
    const netns = `${prefix}-${name}`;
    const inNs = (script: string) => ({ argv: ['ip', 'netns', 'exec', netns, 'sh', '-c', script] });
    return {
      name,
      netns,
      ifname: 'eth0',
      ipv4: ipv4 ? `${v4}.${i + 1}` : undefined,
      ipv6: ipv6 ? `${v6}::${(i + 1).toString(16)}` : undefined,
      sh: (script, opts) => vm.run(inNs(script), opts),
      trySh: (script, opts) => vm.exec(inNs(script), opts),
    };
  });
  const allNetns = [...nodes.map((n) => n.netns), ...(switchNetns ? [switchNetns] : [])];

  // One script, one round trip, and few `ip` processes (each exec costs a few hundred ms
  // under TCG): one `ip -batch` per namespace.
  const batch = (netns: string | undefined, commands: readonly string[]) =>
    `ip ${netns ? `-n ${netns} ` : ''}-batch - <<'EOF'\n${commands.join('\n')}\nEOF`;
  const script = ['set -e', batch(undefined, allNetns.map((ns) => `netns add ${ns}`))];
  if (switchNetns) script.push(batch(switchNetns, ['link set lo up', 'link add br0 type bridge', 'link set br0 up']));
  nodes.forEach((node, i) => {
    // The link is created from inside the node's namespace: the kernel looks the new name up in
    // the requester's namespace, and the VM's own root namespace already has an eth0.
    const peer = switchNetns ? `port${i} netns ${switchNetns}` : i === 0 ? `eth0 netns ${nodes[1]!.netns}` : undefined;
    script.push(
      batch(node.netns, [
        'link set lo up',
        ...(peer ? [`link add eth0 type veth peer name ${peer}`] : []),
        ...(node.ipv4 ? [`addr add ${node.ipv4}/24 dev eth0`] : []),
        // nodad: usable at once, instead of after a second of duplicate address detection.
        ...(node.ipv6 ? [`addr add ${node.ipv6}/64 dev eth0 nodad`] : []),
        'link set eth0 up',
      ]),
    );
  });
  if (switchNetns) script.push(batch(switchNetns, nodes.map((_, i) => `link set port${i} master br0 up`)));

  const cleanup = async (): Promise<void> => {
    await vm.sh(deleteNamespacesScript(allNetns));
  };
  try {
    await vm.sh(script.join('\n'));
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
  return {
    nodes,
    switchNetns,
    node(name) {
      const found = nodes.find((n) => n.name === name);
      if (!found) throw new Error(`no node ${JSON.stringify(name)} in this topology (${names.join(', ')})`);
      return found;
    },
    cleanup,
  };
}

function deleteNamespacesScript(netns: readonly string[]): string {
  const existing = `for ns in ${netns.join(' ')}; do [ -e /run/netns/$ns ] && echo $ns; done`;
  return [
    `namespaces=$(${existing})`,
    '[ -n "$namespaces" ] || exit 0',
    // A process left in a namespace would keep it alive after `netns del`.
    'pids=$(for ns in $namespaces; do ip netns pids $ns; done)',
    '[ -z "$pids" ] || kill -9 $pids',
    'for ns in $namespaces; do echo "netns del $ns"; done | ip -batch -',
  ].join('\n');
}
