// NAT traversal through a real NAT, in the test VM's kernel: node a (192.168.10.2) sits behind
// a router namespace that masquerades it to 203.0.113.1 (nftables) and forwards UDP 4500 to it
// statically; node b (203.0.113.2) is on the router's public side. Both are configured by
// ipsec-operator only: `apply` (the engine the agent runs, which adds the inbound exemptions for
// the carrier datagrams the way the agent does) and `hold-encap` (the agent's socket manager,
// holding the UDP_ENCAP sockets). No other process holds port 4500, no policy written by hand
// exempts the UDP datagrams.
//
// Shown: ping both ways; the receivers' SA counters move; on the wire between router and b
// only ESP in UDP 4500, never the ICMP; the socket comes back after a restart and traffic
// resumes; a port another process holds is reported and left to it, and traffic still flows
// through that holder's socket.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../../infra/vm/inject.js';
import type { VmExecResult } from '../../infra/vm/client.js';
import { CLI, REPO, cli, formatResult, stateDir, warmCrypto } from '../../support/vm-cli.js';

const vm = vmFromInject();
const prefix = `nt${randomBytes(3).toString('hex')}`;
const NS = { a: `${prefix}-a`, r: `${prefix}-r`, b: `${prefix}-b` } as const;
const A_PRIVATE = '192.168.10.2';
const NAT_PUBLIC = '203.0.113.1';
const B = '203.0.113.2';
const DIR = `/run/${prefix}`;
const hex = (seed: number) => Array.from({ length: 20 }, (_, i) => ((seed * 53 + i * 7) & 0xff).toString(16).padStart(2, '0')).join('');

const doc = (kind: string, name: string, spec: string) => `apiVersion: ipsec.xfrm.io/v1alpha1\nkind: ${kind}\nmetadata: {name: ${name}}\nspec:\n${spec.trim().replace(/^/gm, '  ')}\n`;
const SECRET = `apiVersion: v1\nkind: Secret\nmetadata: {name: natt-keys}\nstringData:\n  a-to-b: "${hex(1)}"\n  b-to-a: "${hex(2)}"\n`;
const sa = (name: string, source: string, destination: string, spi: number, reqid: number, key: string) =>
  doc(
    'SecurityAssociation',
    name,
    `source: ${source}\ndestination: ${destination}\nprotocol: esp\nspi: ${spi}\nmode: transport\nreqid: ${reqid}\nreplayWindow: 32\n` +
      `encapsulation: {type: espinudp, sourcePort: 4500, destinationPort: 4500}\n` +
      `aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: natt-keys, key: ${key}, encoding: hex}}`,
  );
const policy = (name: string, direction: 'in' | 'out', source: string, destination: string, reqid: number) =>
  doc('IpsecPolicy', name, `direction: ${direction}\npriority: 100\nselector: {source: ${source}/32, destination: ${destination}/32}\ntemplates: [{protocol: esp, mode: transport, reqid: ${reqid}}]`);

// Each node sees its peer under the address the peer really has from there (examples/nat-t).
const MANIFESTS = {
  a: [SECRET, sa('a-to-b', A_PRIVATE, B, 0x4000, 40, 'a-to-b'), sa('b-to-a', B, A_PRIVATE, 0x4001, 41, 'b-to-a'), policy('a-out', 'out', A_PRIVATE, B, 40), policy('a-in', 'in', B, A_PRIVATE, 41)].join('---\n'),
  b: [SECRET, sa('a-to-b', NAT_PUBLIC, B, 0x4000, 40, 'a-to-b'), sa('b-to-a', B, NAT_PUBLIC, 0x4001, 41, 'b-to-a'), policy('b-out', 'out', B, NAT_PUBLIC, 41), policy('b-in', 'in', NAT_PUBLIC, B, 40)].join('---\n'),
};

const inNs = (ns: string, script: string) => vm.exec({ argv: ['ip', 'netns', 'exec', ns, 'sh', '-c', script] }, { timeoutMs: 90_000 });
const mustInNs = async (ns: string, script: string) => {
  const result = await inNs(ns, script);
  if (result.exitCode !== 0) throw new Error(`in ${ns}: ${script}\n${formatResult(result)}`);
  return result;
};

/** Packets an SA counted (`ip -s xfrm state get`). */
async function saPackets(ns: string, source: string, destination: string, spi: number): Promise<number> {
  const { stdout } = await mustInNs(ns, `ip -s xfrm state get src ${source} dst ${destination} proto esp spi 0x${spi.toString(16)}`);
  const match = /(\d+)\(bytes\), (\d+)\(packets\)/.exec(stdout);
  if (!match) throw new Error(`no counters in:\n${stdout}`);
  return Number(match[2]);
}

/** The UDP sockets on port 4500 of a namespace, with their processes (`ss -Hulpn`). */
async function port4500(ns: string): Promise<string[]> {
  const { stdout } = await mustInNs(ns, 'ss -Hulpn');
  return stdout.split('\n').filter((line) => /:4500\s/.test(line));
}

const ping = (ns: string, to: string, count = 3) => inNs(ns, `ping -c ${count} -W 5 ${to}`);
const received = (result: VmExecResult) => Number(/(\d+) (packets )?received/.exec(result.stdout)?.[1] ?? '0');

interface Holder {
  id: string;
  pid: number;
}

/** `ipsec-operator hold-encap` for a node, waited for until its first report is out. */
async function startHolder(node: 'a' | 'b'): Promise<Holder & { firstReport: string }> {
  const holder = await vm.spawn({ argv: ['node', CLI, 'hold-encap', '-f', `${DIR}/${node}.yaml`, '--netns', NS[node], '--retry-seconds', '2'] });
  for (let attempt = 0; attempt < 240; attempt++) {
    const status = await vm.logs(holder.id);
    if (status.stdout.includes('holding;')) return { ...holder, firstReport: status.stdout };
    if (!status.running) throw new Error(`hold-encap for ${node} ended: exit ${status.exitCode}\n${status.stdout}\n${status.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`hold-encap for ${node} did not report within 120 s: ${JSON.stringify(await vm.logs(holder.id))}`);
}

describe('NAT traversal through a masquerading router', () => {
  const holders: Partial<Record<'a' | 'b', Holder>> = {};
  let applyOutput: Record<'a' | 'b', VmExecResult>;

  beforeAll(async () => {
    await warmCrypto(vm);
    await vm.sh(
      [
        'modprobe -a nf_tables nft_chain_nat nft_nat nft_masq nf_conntrack nf_nat',
        `ip netns add ${NS.a}`,
        `ip netns add ${NS.r}`,
        `ip netns add ${NS.b}`,
        `ip link add ${prefix}a type veth peer name ${prefix}ra`,
        `ip link add ${prefix}b type veth peer name ${prefix}rb`,
        `ip link set ${prefix}a netns ${NS.a} name eth0`,
        `ip link set ${prefix}b netns ${NS.b} name eth0`,
        `ip link set ${prefix}ra netns ${NS.r} name inside`,
        `ip link set ${prefix}rb netns ${NS.r} name outside`,
        `mkdir -p ${DIR}`,
      ].join(' && '),
    );
    await mustInNs(NS.a, `ip link set lo up && ip link set eth0 up && ip addr add ${A_PRIVATE}/24 dev eth0 && ip route add default via 192.168.10.1`);
    await mustInNs(NS.b, `ip link set lo up && ip link set eth0 up && ip addr add ${B}/24 dev eth0`);
    await mustInNs(
      NS.r,
      `ip link set lo up && ip link set inside up && ip link set outside up && ip addr add 192.168.10.1/24 dev inside && ip addr add ${NAT_PUBLIC}/24 dev outside && sysctl -qw net.ipv4.ip_forward=1`,
    );
    // Masquerade a behind the public address; forward UDP 4500 to it statically (without IKE
    // nobody sends NAT keepalives, so only a static mapping survives a pause).
    const nat = await vm.exec(
      { argv: ['ip', 'netns', 'exec', NS.r, 'nft', '-f', '-'] },
      {
        stdin: `table ip nat {
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; iifname "outside" udp dport 4500 dnat to ${A_PRIVATE}:4500; }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "outside" ip saddr 192.168.10.0/24 masquerade; }
}
`,
      },
    );
    expect(nat.exitCode, formatResult(nat)).toBe(0);
    // Without IPsec the NAT already works: a reaches b, and b sees a's public address.
    const plain = await ping(NS.a, B, 1);
    expect(received(plain), formatResult(plain)).toBe(1);

    // The first ESP-in-UDP GCM SA of a run instantiates the templates and seeds the DRBG, which
    // under TCG can outlast the client's wait for the kernel's answer: pay for it here.
    await mustInNs(NS.r, `ip xfrm state add src 10.9.9.1 dst 10.9.9.2 proto esp spi 9 mode transport aead 'rfc4106(gcm(aes))' 0x${hex(3)} 128 encap espinudp 4500 4500 0.0.0.0 && ip xfrm state flush`);

    applyOutput = {} as Record<'a' | 'b', VmExecResult>;
    for (const node of ['a', 'b'] as const) {
      await vm.run({ script: `cat > ${DIR}/${node}.yaml` }, { stdin: MANIFESTS[node] });
      applyOutput[node] = await cli(vm, ['apply', '-f', `${DIR}/${node}.yaml`, '--netns', NS[node], '--state-dir', stateDir(NS[node])]);
      expect(applyOutput[node].exitCode, formatResult(applyOutput[node])).toBe(0);
    }
  });

  afterAll(async () => {
    for (const holder of Object.values(holders)) if (holder) await vm.kill(holder.id, 'SIGKILL').catch(() => undefined);
    await vm.trySh(`pkill -f 'nat-holder-${prefix}' ; ip netns del ${NS.a}; ip netns del ${NS.r}; ip netns del ${NS.b}; rm -rf ${DIR}`);
  });

  it('apply adds the carrier exemptions and says that receive needs a socket nobody holds yet', async () => {
    for (const [node, receiving, from, to] of [['a', 'b-to-a', B, A_PRIVATE], ['b', 'a-to-b', NAT_PUBLIC, B]] as const) {
      expect(applyOutput[node].stderr, formatResult(applyOutput[node])).toContain(`SecurityAssociation/${receiving} receives ESP in UDP on ${to}:4500, and no socket holds that port`);
      const { stdout } = await mustInNs(NS[node], `ip xfrm policy get src ${from}/32 dst ${to}/32 proto udp dport 4500 dir in`);
      expect(stdout).toContain('priority 1');
      expect(stdout).not.toContain('tmpl');
    }
    // Without a socket, ESP in UDP reaches b and is dropped there: nothing answers.
    const before = await saPackets(NS.b, NAT_PUBLIC, B, 0x4000);
    expect(received(await ping(NS.a, B, 2))).toBe(0);
    expect(await saPackets(NS.b, NAT_PUBLIC, B, 0x4000)).toBe(before);
  });

  it('with hold-encap on both nodes: ping both ways through the NAT, receivers count, only ipsec-operator holds the ports', async () => {
    for (const node of ['a', 'b'] as const) {
      const holder = await startHolder(node);
      holders[node] = holder;
      const local = node === 'a' ? A_PRIVATE : B;
      expect(holder.firstReport).toContain(`${local}:4500 espinudp Held`);
      // The other SA's destination is the peer's: this node only sends with it.
      expect(holder.firstReport).toMatch(/ NotLocal /);
      const sockets = await port4500(NS[node]);
      expect(sockets, sockets.join('\n')).toHaveLength(1);
      expect(sockets[0]).toContain(`${local}:4500`);
      expect(sockets[0]).toContain(`pid=${holder.pid},`);
    }

    const bBefore = await saPackets(NS.b, NAT_PUBLIC, B, 0x4000);
    const aBefore = await saPackets(NS.a, B, A_PRIVATE, 0x4001);
    const fromA = await ping(NS.a, B);
    expect(received(fromA), formatResult(fromA)).toBe(3);
    const fromB = await ping(NS.b, NAT_PUBLIC);
    expect(received(fromB), formatResult(fromB)).toBe(3);
    expect(await saPackets(NS.b, NAT_PUBLIC, B, 0x4000)).toBeGreaterThanOrEqual(bBefore + 6); // requests from a, replies to b's pings
    expect(await saPackets(NS.a, B, A_PRIVATE, 0x4001)).toBeGreaterThanOrEqual(aBefore + 6);
  });

  it('puts ESP in UDP 4500 on the wire between the router and b, never the ICMP', async () => {
    const capture = await inNs(
      NS.r,
      `tcpdump -l -n -i outside -c 4 'udp or icmp' > ${DIR}/capture.txt 2>/dev/null & sleep 3; ` +
        `ip netns exec ${NS.a} ping -c 2 -W 5 ${B} >/dev/null; wait; cat ${DIR}/capture.txt`,
    );
    expect(capture.stdout, formatResult(capture)).toMatch(new RegExp(`IP ${NAT_PUBLIC.replaceAll('.', '\\.')}\\.4500 > ${B.replaceAll('.', '\\.')}\\.4500: UDP-encap: ESP\\(spi=0x00004000`));
    expect(capture.stdout).toMatch(new RegExp(`IP ${B.replaceAll('.', '\\.')}\\.4500 > ${NAT_PUBLIC.replaceAll('.', '\\.')}\\.4500: UDP-encap: ESP\\(spi=0x00004001`));
    expect(capture.stdout).not.toMatch(/ICMP/);
  });

  it('stopped, receive stops; restarted, the socket comes back and traffic resumes', async () => {
    await vm.kill(holders.a!.id, 'SIGTERM');
    await vm.wait(holders.a!.id, 30_000);
    expect(await port4500(NS.a)).toEqual([]);
    // b's replies reach a's port and are dropped: a gets nothing back.
    expect(received(await ping(NS.a, B, 2))).toBe(0);

    const again = await startHolder('a');
    holders.a = again;
    expect((await port4500(NS.a))[0]).toContain(`pid=${again.pid},`);
    const resumed = await ping(NS.a, B);
    expect(received(resumed), formatResult(resumed)).toBe(3);
  });

  it('a port another process holds is reported and left to it; traffic flows through that holder', async () => {
    await vm.kill(holders.b!.id, 'SIGTERM');
    await vm.wait(holders.b!.id, 30_000);
    // Another process (as an IKE daemon would) holds b's port 4500 with UDP_ENCAP set.
    const other = await vm.spawn({
      argv: [
        'ip', 'netns', 'exec', NS.b, 'python3', '-c',
        `import socket, signal, sys\nsys.argv[0] = 'nat-holder-${prefix}'\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_UDP, 100, 2)\ns.bind(('0.0.0.0', 4500))\nprint('bound', flush=True)\nsignal.pause()`,
      ],
    });
    try {
      for (let attempt = 0; attempt < 60 && !(await vm.logs(other.id)).stdout.includes('bound'); attempt++) await new Promise((resolve) => setTimeout(resolve, 500));
      const holder = await startHolder('b');
      holders.b = holder;
      expect(holder.firstReport).toContain(`${B}:4500 espinudp HeldElsewhere (a-to-b): another process holds ${B}:4500`);
      const sockets = await port4500(NS.b);
      expect(sockets, sockets.join('\n')).toHaveLength(1);
      expect(sockets[0]).toContain('0.0.0.0:4500');
      expect(sockets[0]).not.toContain(`pid=${holder.pid},`);
      const through = await ping(NS.a, B);
      expect(received(through), formatResult(through)).toBe(3);
    } finally {
      await vm.kill(other.id, 'SIGKILL');
    }
    // The other process is gone: the next retry (2 s) takes the port.
    let taken = false;
    for (let attempt = 0; attempt < 60 && !taken; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      taken = (await vm.logs(holders.b!.id)).stdout.includes(`${B}:4500 espinudp Held (a-to-b)`);
    }
    expect(taken, (await vm.logs(holders.b!.id)).stdout).toBe(true);
    expect(received(await ping(NS.a, B))).toBe(3);
  });
});

describe('UDP encapsulation sockets in the VM kernel', () => {
  it('decapsulation sockets for IPv6, and what the kernel says to espinudp-nonike', async () => {
    const ns = `${prefix}-s`;
    await vm.sh(`ip netns add ${ns} && ip -n ${ns} link set lo up && ip -n ${ns} addr add 2001:db8:4500::1/128 dev lo nodad`);
    try {
      const probe = `const { UdpEncapSocket } = require(${JSON.stringify(`${REPO}native/build/Release/xfrm_netlink.node`)});
for (const [address, encapsulation] of [['2001:db8:4500::1', 'espinudp'], ['127.0.0.1', 'espinudp-nonike']]) {
  try {
    const s = new UdpEncapSocket({ netnsPath: '/run/netns/${ns}', address, port: 4500, encapsulation });
    console.log(address, encapsulation, 'held', s.encapsulation);
    s.close();
  } catch (e) { console.log(address, encapsulation, 'errno', e.errno); }
}`;
      const result = await vm.exec({ argv: ['node', '-e', probe] }, { timeoutMs: 120_000 });
      const kernel = (await vm.health()).kernel;
      console.log(`[nat-traversal] kernel ${kernel}:\n${result.stdout}`);
      expect(result.stdout, formatResult(result)).toContain('2001:db8:4500::1 espinudp held espinudp');
      // Either the kernel still has the type, or it refuses it with ENOPROTOOPT (92); nothing else.
      expect(result.stdout).toMatch(/127\.0\.0\.1 espinudp-nonike (held espinudp-nonike|errno 92)/);
    } finally {
      await vm.trySh(`ip netns del ${ns}`);
    }
  });
});
