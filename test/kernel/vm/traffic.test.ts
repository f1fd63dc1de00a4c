// Real encrypted traffic between two nodes (network namespaces joined by veth in the VM's
// kernel), each configured only by `ipsec-operator apply` of manifests: ping goes through ESP
// (transport, tunnel, IPv6), IPComp+ESP and AH; the SA counters move; a capture on the wire
// shows ESP, not ICMP. Foreign entries on both nodes stay untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../../infra/vm/inject.js';
import { createNodes, type Topology, type TopologyNode } from '../../infra/vm/topology.js';
import { cli, formatResult, warmCrypto, stateDir } from '../../support/vm-cli.js';

const vm = vmFromInject();
const hex = (bytes: number, seed: number) => Array.from({ length: bytes }, (_, i) => ((seed * 37 + i * 11) & 0xff).toString(16).padStart(2, '0')).join('');

const SECRET = `apiVersion: v1
kind: Secret
metadata: {name: traffic-keys}
stringData:
  gcm: "${hex(20, 1)}"
  chacha: "${hex(36, 2)}"
  aes: "${hex(16, 3)}"
  sha256: "${hex(32, 4)}"
`;
const key = (name: string) => `{name: traffic-keys, key: ${name}, encoding: hex}`;
const doc = (kind: string, name: string, spec: string) => `apiVersion: ipsec.xfrm.io/v1alpha1\nkind: ${kind}\nmetadata: {name: ${name}}\nspec:\n${spec.trim().replace(/^/gm, '  ')}\n`;

interface Pair {
  readonly name: string;
  readonly a: string;
  readonly b: string;
  /** SA algorithms/mode lines for protocol `esp` or `ah`. */
  readonly build: (from: string, to: string, spi: number) => string[];
  readonly templates: (from: string, to: string, direction: 'in' | 'out') => string;
  readonly ping: string;
}

const gcm = `aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: ${key('gcm')}}`;
const PAIRS: Pair[] = [
  {
    name: 'esp-transport',
    a: '198.51.100.1',
    b: '198.51.100.2',
    build: (from, to, spi) => [doc('SecurityAssociation', `esp-transport-${spi.toString(16)}`, `source: ${from}\ndestination: ${to}\nprotocol: esp\nspi: ${spi}\nreqid: 10\n${gcm}`)],
    templates: () => '[{protocol: esp, reqid: 10}]',
    ping: 'ping -c 3 -W 5',
  },
  {
    name: 'esp-tunnel',
    a: '198.51.100.11',
    b: '198.51.100.12',
    build: (from, to, spi) => [
      doc(
        'SecurityAssociation',
        `esp-tunnel-${spi.toString(16)}`,
        `source: ${from}\ndestination: ${to}\nprotocol: esp\nspi: ${spi}\nmode: tunnel\nreqid: 11\nencryption: {algorithm: cbc(aes), keyRef: ${key('aes')}}\nauthentication: {algorithm: hmac(sha256), truncationLength: 128, keyRef: ${key('sha256')}}`,
      ),
    ],
    templates: (from, to) => `[{protocol: esp, mode: tunnel, source: ${from}, destination: ${to}, reqid: 11}]`,
    ping: 'ping -c 3 -W 5',
  },
  {
    name: 'ipcomp-esp',
    a: '198.51.100.21',
    b: '198.51.100.22',
    build: (from, to, spi) => [
      doc('SecurityAssociation', `ipcomp-${spi.toString(16)}`, `source: ${from}\ndestination: ${to}\nprotocol: ipcomp\nspi: ${spi & 0xffff}\nmode: tunnel\nreqid: 12\ncompression: {algorithm: deflate}`),
      doc('SecurityAssociation', `ipcomp-esp-${spi.toString(16)}`, `source: ${from}\ndestination: ${to}\nprotocol: esp\nspi: ${spi}\nreqid: 12\n${gcm}`),
    ],
    // Outbound: compress (IPComp tunnel), then ESP. Inbound, IPComp is optional: the sender
    // leaves packets that do not shrink uncompressed.
    templates: (from, to, direction) =>
      `[{protocol: ipcomp, mode: tunnel, source: ${from}, destination: ${to}, reqid: 12${direction === 'in' ? ', level: use' : ''}}, {protocol: esp, reqid: 12}]`,
    // A large payload of zeros compresses, so IPComp really runs.
    ping: 'ping -c 3 -W 5 -s 1200 -p 00',
  },
  {
    name: 'ah',
    a: '198.51.100.31',
    b: '198.51.100.32',
    build: (from, to, spi) => [
      doc('SecurityAssociation', `ah-${spi.toString(16)}`, `source: ${from}\ndestination: ${to}\nprotocol: ah\nspi: ${spi}\nreqid: 13\nauthentication: {algorithm: hmac(sha256), truncationLength: 128, keyRef: ${key('sha256')}}`),
    ],
    templates: () => '[{protocol: ah, reqid: 13}]',
    ping: 'ping -c 3 -W 5',
  },
  {
    name: 'esp-ipv6',
    a: '2001:db8:100::1',
    b: '2001:db8:100::2',
    build: (from, to, spi) => [
      doc('SecurityAssociation', `esp-v6-${spi.toString(16)}`, `source: '${from}'\ndestination: '${to}'\nprotocol: esp\nspi: ${spi}\nreqid: 14\naead: {algorithm: 'rfc7539esp(chacha20,poly1305)', icvLength: 128, keyRef: ${key('chacha')}}`),
    ],
    templates: () => '[{protocol: esp, reqid: 14}]',
    ping: 'ping -c 3 -W 5',
  },
];

/** Manifests for one side: the SAs of both directions, an outbound and an inbound policy. */
function manifestsFor(side: 'a' | 'b'): string {
  const documents = [SECRET];
  PAIRS.forEach((pair, index) => {
    const spiAtoB = 0x7000 + index * 2;
    const spiBtoA = spiAtoB + 1;
    documents.push(...pair.build(pair.a, pair.b, spiAtoB), ...pair.build(pair.b, pair.a, spiBtoA));
    const local = side === 'a' ? pair.a : pair.b;
    const peer = side === 'a' ? pair.b : pair.a;
    const host = (address: string) => `'${address}/${address.includes(':') ? 128 : 32}'`;
    documents.push(
      doc('IpsecPolicy', `${pair.name}-out`, `direction: out\nselector: {source: ${host(local)}, destination: ${host(peer)}}\ntemplates: ${pair.templates(local, peer, 'out')}`),
      doc('IpsecPolicy', `${pair.name}-in`, `direction: in\nselector: {source: ${host(peer)}, destination: ${host(local)}}\ntemplates: ${pair.templates(peer, local, 'in')}`),
    );
  });
  return documents.join('---\n');
}

/** Packets counted by an SA, from `ip -s xfrm state get`. */
async function saPackets(node: TopologyNode, from: string, to: string, protocol: string, spi: number): Promise<number> {
  const { stdout } = await node.sh(`ip -s xfrm state get src ${from} dst ${to} proto ${protocol} spi 0x${spi.toString(16)}`);
  const match = /(\d+)\(bytes\), (\d+)\(packets\)/.exec(stdout);
  if (!match) throw new Error(`no counters in:\n${stdout}`);
  return Number(match[2]);
}

describe('encrypted traffic between two nodes configured by apply', () => {
  let topology: Topology;
  let a: TopologyNode;
  let b: TopologyNode;
  const foreign = 'ip xfrm policy add src 172.16.0.0/12 dst 172.16.0.0/12 dir out priority 3 action block';
  const foreignView = (node: TopologyNode) => node.sh('ip xfrm policy get src 172.16.0.0/12 dst 172.16.0.0/12 dir out').then((result) => result.stdout);
  let foreignBefore: string;

  beforeAll(async () => {
    await warmCrypto(vm);
    topology = await createNodes(vm, ['a', 'b'], { ipv4: true, ipv6: true });
    a = topology.node('a');
    b = topology.node('b');
    for (const [node, side] of [[a, 'a'], [b, 'b']] as const) {
      const extra = PAIRS.slice(1, 4).map((pair) => `ip addr add ${side === 'a' ? pair.a : pair.b}/24 dev eth0`).join('; ');
      await node.sh(`${extra}; ${foreign}`);
    }
    foreignBefore = await foreignView(a);
    for (const [node, side] of [[a, 'a'], [b, 'b']] as const) {
      const applied = await cli(vm, ['apply', '-f', '-', '--netns', node.netns, '--state-dir', stateDir(node.netns)], manifestsFor(side));
      expect(applied.exitCode, formatResult(applied)).toBe(0);
    }
  });
  afterAll(async () => {
    await topology?.cleanup();
  });

  it.each(PAIRS.map((pair, index) => [pair.name, pair, index] as const))('%s: ping passes and the SA counters move', async (_name, pair, index) => {
    const spiAtoB = 0x7000 + index * 2;
    const protocol = pair.name === 'ah' ? 'ah' : 'esp';
    const before = await saPackets(a, pair.a, pair.b, protocol, spiAtoB);
    // -I: the extra addresses are not the interface's primary one, and only traffic between
    // the pair's own addresses matches its policies.
    const ping = await a.trySh(`${pair.ping} -I ${pair.a} ${pair.b}`, { timeoutMs: 60_000 });
    expect(ping.stdout, formatResult(ping)).toMatch(/3 packets transmitted, 3 (packets )?received/);
    expect(await saPackets(a, pair.a, pair.b, protocol, spiAtoB)).toBeGreaterThanOrEqual(before + 3);
    expect(await saPackets(b, pair.b, pair.a, protocol, spiAtoB + 1)).toBeGreaterThanOrEqual(3);
    if (pair.name === 'ipcomp-esp') {
      // The IPComp SA itself carried the (compressible) echo requests.
      expect(await saPackets(a, pair.a, pair.b, 'comp', spiAtoB & 0xffff)).toBeGreaterThanOrEqual(3);
    }
  });

  it('puts ESP on the wire, never the plaintext ICMP', async () => {
    const capture = await b.trySh(
      // Ping only once tcpdump says it is listening: under TCG on a loaded machine it can take
      // longer than any fixed pause to start, and would then wait for packets already gone.
      `tcpdump -l -n -i eth0 -c 4 'host 198.51.100.1 and (esp or icmp)' > /tmp/esp-capture.txt 2>/tmp/esp-capture.err & ` +
        `for i in $(seq 200); do grep -q 'listening on' /tmp/esp-capture.err 2>/dev/null && break; sleep 0.2; done; ` +
        `ip netns exec ${a.netns} ping -c 2 -W 5 198.51.100.2 >/dev/null; wait; cat /tmp/esp-capture.txt`,
      { timeoutMs: 60_000 },
    );
    expect(capture.stdout, formatResult(capture)).toMatch(/ESP\(spi=0x00007000/);
    expect(capture.stdout).not.toMatch(/ICMP echo request/);
  });

  it('leaves the foreign policy on each node untouched', async () => {
    expect(await foreignView(a)).toBe(foreignBefore);
    expect(await foreignView(b)).toContain('action block priority 3');
  });
});
