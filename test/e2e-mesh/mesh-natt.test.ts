// IpsecMesh with `natTraversal` on real kernels (issue 12): ESP carried in UDP (RFC 3948) across a
// network that drops IP protocol 50. One cluster of three agents (test/infra/cluster), their
// nodes joined by a bridge in a switch namespace whose nftables bridge filter drops every ESP
// packet it would forward (IPv4 and IPv6, counted): the network of a provider that passes only
// TCP and UDP. Shown, in order:
// 1. the wire drops ESP: a raw protocol-50 datagram leaves a (a's capture) and never reaches b
//    (b's capture), and the switch's drop counter rose: so no traffic below can pass as plain ESP;
// 2. an IPv4 transport mesh with `natTraversal: {}` (ports 4500/4500 by default) becomes Ready,
//    one SA per direction at both ends, every SA `encap espinudp 4500 4500`, every agent holding
//    its node's UDP 4500 encapsulation socket (IpsecNodeState);
// 3. numbered traffic among the three, 0 lost, every datagram decrypted by the receivers' SAs;
//    on b's wire only ESP in UDP 4500 (no plain ESP, none of the datagrams in clear text); the
//    switch dropped nothing more;
// 4. one rotation round, every node at once, under traffic with 0 lost, the new SAs encapsulated;
// 5. deleting the mesh removes every SA and policy (the carrier datagrams' exemptions included)
//    and every agent lets its UDP 4500 socket go.
// Every traffic step: 0 lost, XfrmInNoStates/XfrmInStateSeqError unchanged, no (key, SPI)
// counter restarted over every dump (MeshRun.underTraffic).
//
// Not covered, because a mesh does not do it: a NAT that rewrites node addresses. Each mesh SA
// names both node addresses, and its key is bound to them; nodes that see each other under
// other addresses need hand-written SAs (examples/nat-t, test/kernel/vm/nat-traversal.test.ts).
//
// In `npm test` (layer e2e-mesh, 6.1; e2e-mesh-6.12 on the second kernel).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { parseStateDump } from '../support/traffic-proof.js';
import { waitFor } from '../e2e/support.js';
import { meshManifest, MeshRun, PORT, sleep, startMeshRun, type MeshShape } from './support.js';

const vm = vmFromInject();
const NODES = ['a', 'b', 'c'];
const SHAPE: MeshShape = { families: ['IPv4'], mode: 'transport' };
const DIRECTIONS = 6;
const NAT_T_PORT = 4500;
/** `ip xfrm state`'s line of an ESP-in-UDP SA (followed by the original address, `addr 0.0.0.0`). */
const ENCAP = `encap type espinudp sport ${NAT_T_PORT} dport ${NAT_T_PORT} `;
const encapLines = (dump: string) => dump.split('\n').filter((line) => line.trim().startsWith(ENCAP));

let run: MeshRun;

/** The switch's namespace: the bridge every node's eth0 is a port of. */
const switchNetns = () => {
  const netns = run.cluster.topology.switchNetns;
  if (netns === undefined) throw new Error('the topology of three nodes has no switch');
  return netns;
};

/** Packets the switch's ESP drop rules counted (IPv4 and IPv6 together). */
async function espDropped(): Promise<number> {
  const listing = (await vm.sh(`ip netns exec ${switchNetns()} nft list table bridge wire`)).stdout;
  const counted = [...listing.matchAll(/counter packets (\d+) bytes \d+ drop/g)].map((match) => Number(match[1]));
  if (counted.length !== 2) throw new Error(`expected two drop counters in the switch's table, found ${counted.length}:\n${listing}`);
  return counted.reduce((a, b) => a + b, 0);
}

/** Tcpdump lines (`-n`) of plain ESP (protocol 50): `ESP(` not preceded by `UDP-encap:`. */
const plainEsp = (lines: readonly string[]) => lines.filter((line) => line.includes(': ESP(') && !line.includes('UDP-encap: ESP(')).length;
/** Tcpdump lines of ESP in UDP from `from` to `to`, both on the NAT-T port. */
const encapsulated = (lines: readonly string[], from: string, to: string) =>
  lines.filter((line) => line.includes(` IP ${from}.${NAT_T_PORT} > ${to}.${NAT_T_PORT}: UDP-encap: ESP(`)).length;
/** Tcpdump lines of the numbered datagrams in clear text (see mesh-modes.test.ts: not matched on "UDP"). */
const clearDatagrams = (lines: readonly string[]) => lines.filter((line) => line.includes(`.${PORT} > `) && !line.includes('UDP-encap')).length;

/** Each node's agent's encapsulation sockets, as its IpsecNodeState shows them. */
async function encapSockets(name: string): Promise<{ address: string; port: number; encapsulation: string; state: string }[]> {
  const state = JSON.parse(await run.cluster.kubectl(['get', 'ipsecnodestate', name, '-o', 'json'])) as { status?: { encapsulationSockets?: { address: string; port: number; encapsulation: string; state: string }[] } };
  return state.status?.encapsulationSockets ?? [];
}

/** UDP sockets bound to the NAT-T port in the node's namespace (`ss`), whoever holds them. */
async function boundToNatT(name: string): Promise<number> {
  const listing = (await run.node(name).sh(`ss -H -u -a -n 'sport = :${NAT_T_PORT}'`)).stdout;
  return listing.split('\n').filter((line) => line.trim() !== '').length;
}

describe('IpsecMesh on real kernels: ESP in UDP across a network that drops IP protocol 50', () => {
  let carriedBefore: Map<string, bigint>;
  let droppedAfterControl = 0;

  beforeAll(async () => {
    run = await startMeshRun(vm, { kubeconfigPath: injectedKubeconfigPath(), mesh: 'e2e-natt', nodes: NODES, resyncSeconds: 5, shape: SHAPE });
    // The bridge filter of the switch: forwarded ESP is dropped and counted (nf_tables carries the bridge family).
    await vm.sh(
      `modprobe -a nf_tables bridge 2>/dev/null; ip netns exec ${switchNetns()} nft -f - <<'EOF'
table bridge wire {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ether type ip ip protocol esp counter drop
    ether type ip6 ip6 nexthdr esp counter drop
  }
}
EOF`,
    );
  });
  afterAll(async () => {
    await run?.finish(); // undefined when beforeAll failed
  });

  it('drops ESP on the wire: a raw protocol-50 datagram leaves a and never reaches b; the switch counted it', async () => {
    const before = await espDropped();
    const send = `ip netns exec ${run.node('a').netns} python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50); [s.sendto(bytes(24), ('${run.address('b')}', 0)) for _ in range(3)]"`;
    const atB = await run.captureOnWire('b', 'ip proto 50', async () => {
      const atA = await run.captureOnWire('a', 'ip proto 50', async () => {
        await vm.sh(send);
      });
      return atA.lines;
    });
    expect(atB.result.filter((line) => line.includes(`${run.address('a')} > ${run.address('b')}: ESP(`)), "the datagrams on a's wire").toHaveLength(3);
    expect(atB.lines, "ESP on b's wire").toEqual([]);
    droppedAfterControl = await espDropped();
    expect(droppedAfterControl - before, 'ESP packets the switch dropped').toBe(3);
  });

  it('becomes Ready with natTraversal: one SA per direction at both ends, every one ESP in UDP 4500, each agent holding its socket', async () => {
    const started = Date.now();
    await run.cluster.kubectl(['apply', '-f', '-'], meshManifest(run.mesh, 3, SHAPE, { natTraversal: {} }));
    const status = await run.readyWith(3, 'the NAT-T mesh Ready with 3 members');
    expect(status.members).toMatchObject({ selected: 3, ready: 3 });
    await run.waitSettled(NODES, 'one SA per direction among a, b, c');
    run.timings.push(`natTraversal: Ready and ${DIRECTIONS} directions keyed ${((Date.now() - started) / 1000).toFixed(1)} s after apply`);
    const dumps = await run.sample();
    expect([...run.pairedSpis(dumps, NODES).values()].map((held) => held.length)).toEqual(new Array<number>(DIRECTIONS).fill(1));
    for (const [name, dump] of dumps) {
      const esp = parseStateDump(dump).filter((sa) => sa.protocol === 'esp');
      expect(esp, `${name}'s ESP SAs`).toHaveLength(4); // 2 peers x in/out
      expect(encapLines(dump), `${name}'s SAs carried in UDP ${NAT_T_PORT}`).toHaveLength(4);
    }
    for (const name of NODES) {
      await waitFor(
        `${name}'s agent reports its UDP ${NAT_T_PORT} socket held`,
        async () => (await encapSockets(name)).some((socket) => socket.port === NAT_T_PORT && socket.encapsulation === 'espinudp' && socket.state === 'Held'),
        60_000,
        1000,
      );
      expect(await boundToNatT(name), `UDP sockets on port ${NAT_T_PORT} in ${name}'s namespace`).toBe(1);
    }
  });

  it("carries numbered traffic as ESP in UDP only: 0 lost, every datagram decrypted, nothing in clear text or as plain ESP on b's wire", async () => {
    const { lines, result: counts, droppedByKernel } = await run.captureOnWire('b', `udp or ip proto 50`, () =>
      run.underTraffic('natTraversal: steady', NODES, NODES, async () => {
        await sleep(2000);
      }),
    );
    expect(counts).toHaveLength(DIRECTIONS);
    carriedBefore = new Map();
    for (const count of counts) {
      const decrypted = run.carried(count);
      carriedBefore.set(run.directionName(count), decrypted);
      expect(decrypted, `${run.directionName(count)}: packets the receiver's SA decrypted, against ${count.received} datagrams received`).toBeGreaterThanOrEqual(BigInt(count.received));
    }
    const line = `natTraversal, steady: on b's wire ${['a', 'c'].map((peer) => `${peer}->b ${encapsulated(lines, run.address(peer), run.address('b'))}, b->${peer} ${encapsulated(lines, run.address('b'), run.address(peer))}`).join(', ')} ESP-in-UDP packets, ${plainEsp(lines)} plain ESP, ${clearDatagrams(lines)} clear datagrams`;
    console.log(`[e2e-mesh] ${line}`);
    run.timings.push(line);
    for (const peer of ['a', 'c']) {
      const received = counts.find((c) => c.from === run.address(peer) && c.to === run.address('b'))!.received;
      // Every datagram b received crossed its wire in UDP, but for those the capture itself lost (said by tcpdump).
      expect(encapsulated(lines, run.address(peer), run.address('b')), `${peer}->b ESP in UDP on b's wire against ${received} datagrams received (${droppedByKernel} not captured)`).toBeGreaterThanOrEqual(received - droppedByKernel);
      expect(encapsulated(lines, run.address('b'), run.address(peer)), `b->${peer} ESP in UDP on b's wire`).toBeGreaterThan(0);
    }
    expect(plainEsp(lines), "plain ESP on b's wire").toBe(0);
    expect(clearDatagrams(lines), "numbered datagrams in clear text on b's wire").toBe(0);
    expect(await espDropped(), 'ESP packets the switch dropped since the control').toBe(droppedAfterControl);
  });

  it('rotates once, every node at once, with 0 lost; the new SAs are carried in UDP too', async () => {
    const counts = await run.underTraffic('natTraversal: one rotation round', NODES, NODES, async () => {
      const generations = await run.generations();
      const started = Date.now();
      await run.cluster.kubectl(['annotate', 'ipsecmesh', run.mesh, 'ipsec.xfrm.io/rotate=now', '--overwrite']);
      await run.roundCompleted(NODES, generations);
      await run.waitSettled(NODES, 'natTraversal: the old SAs removed after the round');
      run.timings.push(`natTraversal: round complete, old SAs gone, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    });
    expect(counts).toHaveLength(DIRECTIONS);
    for (const count of counts) expect(run.carried(count), run.directionName(count)).toBeGreaterThan(carriedBefore.get(run.directionName(count))!);
    for (const [name, dump] of await run.sample()) expect(encapLines(dump), `${name}'s new SAs carried in UDP`).toHaveLength(4);
    expect(await espDropped(), 'ESP packets the switch dropped since the control').toBe(droppedAfterControl);
  });

  it('removes every SA and policy when the mesh is deleted, and every agent lets its UDP 4500 socket go', async () => {
    await run.deletedEverywhere('no SA, no policy and no UDP 4500 socket left on any node', async (name) => (await boundToNatT(name)) === 0);
  });
});
