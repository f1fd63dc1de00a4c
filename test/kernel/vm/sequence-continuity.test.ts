// Sequence continuity against the real kernel (both kernels of the matrix: the vm and vm-6.12
// projects run this file): two nodes configured by `ipsec-operator apply` with AES-GCM SAs, a
// legacy 32-bit counter (XFRMA_REPLAY_VAL) on one pair and ESN (XFRMA_REPLAY_ESN_VAL, 64-bit)
// on the other. After a hand flush of node a's SAs, `apply` installs the same keys again: the
// kernel's counter read back (`ip -s xfrm state`) and the first ESP sequence number on the wire
// (tcpdump) are above every number used before the flush, and the first ping is answered. A key
// whose hard lifetime ran out is not installed again: apply refuses with Expired.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../../infra/vm/inject.js';
import { createNodes, type Topology, type TopologyNode } from '../../infra/vm/topology.js';
import { cli, formatResult, warmCrypto, stateDir } from '../../support/vm-cli.js';

const vm = vmFromInject();
const hex = (bytes: number, seed: number) => Array.from({ length: bytes }, (_, i) => ((seed * 53 + i * 7) & 0xff).toString(16).padStart(2, '0')).join('');
const A = '198.51.100.1';
const B = '198.51.100.2';

const SECRET = `apiVersion: v1
kind: Secret
metadata: {name: seq-keys}
stringData:
  legacy: "${hex(20, 1)}"
  esn: "${hex(20, 2)}"
  short: "${hex(20, 3)}"
`;
const doc = (kind: string, name: string, spec: string) => `apiVersion: ipsec.xfrm.io/v1alpha1\nkind: ${kind}\nmetadata: {name: ${name}}\nspec:\n${spec.trim().replace(/^/gm, '  ')}\n`;
const gcm = (key: string) => `aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: seq-keys, key: ${key}, encoding: hex}}`;
const LEGACY_SPI = 0x5100;
const ESN_SPI = 0x5200;

/** One pair's SAs (both directions) and policies, for the node at `local`. Each pair has its own port so its policies select only its traffic. */
function pairDocuments(name: string, local: string, peer: string, spi: number, reqid: number, port: number, extra: string, key: string): string[] {
  const sa = (from: string, to: string, s: number) => doc('SecurityAssociation', `${name}-${s.toString(16)}`, `source: ${from}\ndestination: ${to}\nprotocol: esp\nspi: ${s}\nreqid: ${reqid}\n${gcm(key)}\n${extra}`);
  const out = local === A ? spi : spi + 1;
  const back = local === A ? spi + 1 : spi;
  const selector = (source: string, destination: string, ports: string) => `selector: {source: '${source}/32', destination: '${destination}/32', protocol: udp, ${ports}}`;
  return [
    sa(local, peer, out),
    sa(peer, local, back),
    doc('IpsecPolicy', `${name}-out`, `direction: out\n${selector(local, peer, `destinationPort: ${port}`)}\ntemplates: [{protocol: esp, reqid: ${reqid}}]`),
    doc('IpsecPolicy', `${name}-in`, `direction: in\n${selector(peer, local, `destinationPort: ${port}`)}\ntemplates: [{protocol: esp, reqid: ${reqid}}]`),
    doc('IpsecPolicy', `${name}-out-reply`, `direction: out\n${selector(local, peer, `sourcePort: ${port}`)}\ntemplates: [{protocol: esp, reqid: ${reqid}}]`),
    doc('IpsecPolicy', `${name}-in-reply`, `direction: in\n${selector(peer, local, `sourcePort: ${port}`)}\ntemplates: [{protocol: esp, reqid: ${reqid}}]`),
  ];
}

function manifests(local: string, peer: string, options: { short?: boolean } = {}): string {
  const documents = [
    SECRET,
    ...pairDocuments('legacy', local, peer, LEGACY_SPI, 51, 7001, 'replayWindow: 32', 'legacy'),
    ...pairDocuments('esn', local, peer, ESN_SPI, 52, 7002, 'esn: true\nreplayWindow: 128', 'esn'),
  ];
  if (options.short) documents.push(...pairDocuments('short', local, peer, 0x5300, 53, 7003, 'lifetime: {hard: {addExpiresSeconds: 4}}', 'short'));
  return documents.join('---\n');
}

async function apply(node: TopologyNode, text: string) {
  return cli(vm, ['apply', '-f', '-', '--netns', node.netns, '--state-dir', stateDir(node.netns)], text);
}

/** The outbound counter of an SA as the kernel reports it (legacy `oseq`, or ESN `oseq-hi`/`oseq`). */
async function outboundSequence(node: TopologyNode, from: string, to: string, spi: number): Promise<bigint> {
  const { stdout } = await node.sh(`ip -s xfrm state get src ${from} dst ${to} proto esp spi 0x${spi.toString(16)}`);
  const esn = /oseq-hi (0x[0-9a-f]+), oseq (0x[0-9a-f]+)/.exec(stdout);
  if (esn) return (BigInt(esn[1]!) << 32n) | BigInt(esn[2]!);
  const legacy = /oseq (0x[0-9a-f]+)/.exec(stdout);
  if (!legacy) throw new Error(`no oseq in:\n${stdout}`);
  return BigInt(legacy[1]!);
}

/** Sends `count` numbered UDP datagrams from a to b's echo server on `port`; returns how many answers came back. */
async function exchange(a: TopologyNode, port: number, count: number): Promise<number> {
  const script = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('${A}',${port}))\ns.settimeout(5)\nn=0\nfor i in range(${count}):\n  s.sendto(b'n%d'%i,('${B}',${port}))\n  try:\n    s.recvfrom(100); n+=1\n  except Exception: pass\nprint(n)`;
  const result = await a.trySh(`python3 -c "${script.replace(/"/g, '\\"')}"`, { timeoutMs: 120_000 });
  return Number(result.stdout.trim());
}

/** The ESP sequence numbers tcpdump saw on b's wire for an SPI, in order, while `during` ran. */
async function captureSequences(b: TopologyNode, spi: number, during: () => Promise<unknown>): Promise<bigint[]> {
  const file = `/tmp/seq-capture-${spi.toString(16)}`;
  await b.sh(`rm -f ${file}.*; tcpdump -l -n -i eth0 'esp' > ${file}.txt 2> ${file}.err < /dev/null & echo $! > ${file}.pid; for i in $(seq 200); do grep -q 'listening on' ${file}.err 2>/dev/null && break; sleep 0.2; done`);
  await during();
  await b.sh(`sleep 1; kill -INT $(cat ${file}.pid); sleep 0.5`);
  const { stdout } = await b.sh(`cat ${file}.txt`);
  const pattern = new RegExp(`ESP\\(spi=0x${spi.toString(16).padStart(8, '0')},seq=(0x[0-9a-f]+)\\)`, 'g');
  return [...stdout.matchAll(pattern)].map((match) => BigInt(match[1]!));
}

describe('sequence continuity of a re-installed key (the CLI after a hand flush)', () => {
  let topology: Topology;
  let a: TopologyNode;
  let b: TopologyNode;

  beforeAll(async () => {
    await warmCrypto(vm);
    topology = await createNodes(vm, ['a', 'b'], { ipv4: true });
    a = topology.node('a');
    b = topology.node('b');
    // The first rfc4106(gcm(aes)) SA instantiates the AEAD (self-tests under TCG take long enough
    // to time a netlink request out on a loaded machine): do it once by hand, outside the test.
    await a.sh(`ip xfrm state add src 10.9.9.1 dst 10.9.9.2 proto esp spi 9 mode transport aead 'rfc4106(gcm(aes))' 0x${hex(20, 9)} 128 && ip xfrm state flush`, { timeoutMs: 180_000 });
    for (const [node, local, peer] of [[a, A, B], [b, B, A]] as const) {
      const applied = await apply(node, manifests(local, peer));
      expect(applied.exitCode, formatResult(applied)).toBe(0);
    }
    // b answers every datagram on the pairs' ports (the echo server runs in b's namespace).
    await b.sh(
      `python3 -c "import socket,threading\ndef serve(p):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('${B}',p))\n  while True:\n    d,a=s.recvfrom(100); s.sendto(d,a)\nfor p in (7001,7002,7003): threading.Thread(target=serve,args=(p,),daemon=True).start()\nimport time\nwhile True: time.sleep(60)" > /dev/null 2>&1 < /dev/null & echo $! > /tmp/seq-echo.pid`,
    );
    // Python starts slowly under TCG: go on once all three ports are bound, not after a fixed pause.
    const bound = await b.trySh(`for i in $(seq 300); do [ "$(ss -Hlun | grep -c ':700[123] ')" = 3 ] && { echo bound; exit 0; }; sleep 0.2; done; echo not-bound`, { timeoutMs: 120_000 });
    expect(bound.stdout.trim()).toBe('bound');
  }, 300_000);
  afterAll(async () => {
    await b?.trySh('kill $(cat /tmp/seq-echo.pid)');
    await topology?.cleanup();
  });

  it.each([
    ['legacy 32-bit counter (XFRMA_REPLAY_VAL)', LEGACY_SPI, 7001],
    ['ESN 64-bit counter (XFRMA_REPLAY_ESN_VAL)', ESN_SPI, 7002],
  ])('%s: resumes above every number used before the flush, and the first datagram is answered', async (_name, spi, port) => {
    expect(await exchange(a, port, 5)).toBe(5);
    // A second apply changes nothing in the kernel but takes a mark (and measures the rate).
    const marked = await apply(a, manifests(A, B));
    expect(marked.exitCode, formatResult(marked)).toBe(0);
    expect(await exchange(a, port, 3)).toBe(3); // sent after the mark: the margin must cover them
    const before = await outboundSequence(a, A, B, spi);
    expect(before).toBeGreaterThanOrEqual(8n);

    await a.sh('ip xfrm state flush'); // the hand flush (both directions of both pairs)
    const restored = await apply(a, manifests(A, B));
    expect(restored.exitCode, formatResult(restored)).toBe(0);
    const resumed = await outboundSequence(a, A, B, spi);
    expect(resumed, 'the kernel took the resume value').toBeGreaterThan(before);

    const seen = await captureSequences(b, spi, async () => expect(await exchange(a, port, 1)).toBe(1)); // the first datagram after the repair is answered
    expect(seen.length, 'tcpdump saw the restored SA on the wire').toBeGreaterThanOrEqual(1);
    expect(seen[0]!, 'the first ESP sequence number after the repair').toBeGreaterThan(before);
    // And the peer did not count a replay or a sequence error for it.
    const { stdout } = await b.sh('cat /proc/net/xfrm_stat');
    expect(Number(/XfrmInStateSeqError\s+(\d+)/.exec(stdout)?.[1] ?? 'NaN')).toBe(0);
  }, 300_000);

  it('a key whose hard lifetime ran out is not installed again: apply refuses with Expired and says how to rekey', async () => {
    for (const [node, local, peer] of [[a, A, B], [b, B, A]] as const) {
      const applied = await apply(node, manifests(local, peer, { short: true }));
      expect(applied.exitCode, formatResult(applied)).toBe(0);
    }
    // The kernel removes the SA at its hard lifetime (4 s): wait until it has, not a fixed time.
    const gone = await a.trySh(`for i in $(seq 120); do ip xfrm state get src ${A} dst ${B} proto esp spi 0x5300 >/dev/null 2>&1 || { echo gone; exit 0; }; sleep 0.5; done; echo still-there`, { timeoutMs: 90_000 });
    expect(gone.stdout.trim()).toBe('gone');
    const again = await apply(a, manifests(A, B, { short: true }));
    expect(again.exitCode, formatResult(again)).toBe(1);
    expect(again.stderr).toMatch(/SecurityAssociation\/short-5300: .*hard lifetime.*new SPI and a new key.*\(Expired\)/);
    const { stdout } = await a.sh(`ip xfrm state list spi 0x5300`);
    expect(stdout.trim(), 'the expired key is not in the kernel').toBe('');
  }, 300_000);
});
