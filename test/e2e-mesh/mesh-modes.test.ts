// IpsecMesh's other shapes on real kernels (issue 12): IPv6 node addresses and tunnel mode for
// pod CIDRs, each under the same numbered UDP traffic and instruments as mesh-churn.test.ts.
// One cluster of three agents (test/infra/cluster), each node with an IPv4 and an IPv6 InternalIP
// (the IPv6 one in non-canonical text, which the API server keeps as written) and a pod namespace behind it (a veth; the node forwards; its pod CIDRs, one /24 and one /64,
// in the Node's spec.podCIDRs and routed to every other node's address, as a CNI would), and
// two dual-stack meshes one after the other:
// 1. transport between the node addresses, IPv4 and IPv6: Ready with an SA at both ends of all
//    twelve directions (six per family), every datagram of a steady window decrypted by the
//    receiver's SA, one rotation round (every node at once) with 0 lost; deleting the mesh removes
//    every SA and policy from every node;
// 2. tunnel between the node addresses for the pods' traffic: SAs in tunnel mode, out/in/fwd
//    policies for each pair of pod CIDRs with templates between the node addresses; pod-to-pod
//    datagrams decrypted by the tunnel SAs, one rotation round with 0 lost; deleting it removes
//    everything from every node;
// 3. an IPv4 transport mesh with failClosed and UDP 7001 exempt, first of a and b only: one
//    encrypting policy per direction (no guard beside it: the kernel would take it for the same
//    policy), the exemption's allow policies ahead; then, with a's and b's agents stopped, c
//    joins: its peers cannot key it, so its out policies to them are blocks (every datagram it
//    sends them refused, XfrmOutPolBlock, none on the wire) and their clear text to c (they do
//    not know c yet) is refused by c's inbound policies; the agents back, every direction is
//    encrypted; then UDP 7001 flows among all three in clear, past no SA (tcpdump).
// Every traffic step: 0 lost, XfrmInNoStates/XfrmInStateSeqError unchanged, no (key, SPI)
// counter restarted over every dump (MeshRun.underTraffic).
//
// In `npm test` (layer e2e-mesh, 6.1; e2e-mesh-6.12 on the second kernel). Short by design: three
// nodes, one round per mesh, agents resyncing every 5 s and a 3 s grace period as in churn.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { parseStateDump, xfrmStatIncrease, type DirectionCount } from '../support/traffic-proof.js';
import { waitFor } from '../e2e/support.js';
import { ENCRYPTING_PRIORITY, EXEMPTION_PRIORITY, GUARD_PRIORITY } from '../../src/mesh/entries.js';
import { meshManifest, MeshRun, PORT, RATE, sleep, startMeshRun, type MeshGuards, type MeshShape } from './support.js';

const vm = vmFromInject();
const NODES = ['a', 'b', 'c'];
const RESYNC_SECONDS = 5;
const TRANSPORT: MeshShape = { families: ['IPv4', 'IPv6'], mode: 'transport' };
const TUNNEL: MeshShape = { families: ['IPv4', 'IPv6'], mode: 'tunnel' };
/** Directions of three nodes in two families. */
const DIRECTIONS = 2 * 6;
const GUARDED: MeshShape = { families: ['IPv4'], mode: 'transport' };
const EXEMPT_PORT = 7001;
const GUARDS: MeshGuards = { failClosed: true, exemptions: [{ protocol: 'udp', port: EXEMPT_PORT }] };

let run: MeshRun;

/** One policy of an `ip xfrm policy` dump: selector, direction and the template's ends and mode. */
interface DumpedPolicy {
  readonly source: string;
  readonly destination: string;
  readonly direction: string;
  readonly template?: { readonly source: string; readonly destination: string; readonly mode: string };
}

function parsePolicyDump(text: string): DumpedPolicy[] {
  return text
    .split(/^(?=src )/m)
    .filter((block) => block.startsWith('src '))
    .map((block) => {
      const head = /^src (\S+) dst (\S+)/.exec(block)!;
      const tmpl = /tmpl src (\S+) dst (\S+)[\s\S]*? mode (\S+)/.exec(block);
      return {
        source: head[1]!,
        destination: head[2]!,
        direction: /dir (\S+)/.exec(block)?.[1] ?? '',
        ...(tmpl ? { template: { source: tmpl[1]!, destination: tmpl[2]!, mode: tmpl[3]! } } : {}),
      };
    });
}

/** One policy of an `ip xfrm policy` dump as the guard steps read it: its first line (the selector), direction, action, priority, templates. */
interface GuardPolicy {
  readonly head: string;
  readonly direction: string;
  readonly action: string;
  readonly priority: number;
  readonly templates: number;
  /** The templates' level: iproute2 prints `level use` for an optional one, nothing for required. */
  readonly level: string;
}

function parseGuardPolicies(text: string): GuardPolicy[] {
  return text
    .split(/^(?=src )/m)
    .filter((block) => block.startsWith('src '))
    .map((block) => ({
      head: block.split('\n')[0]!.trim(),
      direction: /dir (\S+)/.exec(block)?.[1] ?? '',
      action: /action (\S+)/.exec(block)?.[1] ?? 'allow', // iproute2 names the action only when it is not allow
      priority: Number(/priority (\d+)/.exec(block)?.[1] ?? NaN),
      templates: (block.match(/\btmpl /g) ?? []).length,
      level: /level (\S+)/.exec(block)?.[1] ?? 'required',
    }));
}

async function policiesOf(node: string): Promise<GuardPolicy[]> {
  return parseGuardPolicies((await run.node(node).sh('ip xfrm policy')).stdout);
}

/**
 * Tcpdump lines (`-n`) of clear-text datagrams from `from`:`port` to `to`:`port` in a capture
 * filtered to UDP (and ESP, whose lines name no port). Not matched on "UDP": tcpdump decodes
 * 7000-7009 as AFS's RX (`[|rx]`), whatever -n says.
 */
function clearDatagrams(lines: readonly string[], from: string, to: string, port: number): number {
  return lines.filter((line) => line.includes(` IP ${from}.${port} > ${to}.${port}: `)).length;
}

/** Ready with three members, then one SA per direction and family at both ends; every ESP SA of the run's mode. */
async function becomesReady(shape: MeshShape): Promise<Map<string, string>> {
  const started = Date.now();
  await run.cluster.kubectl(['apply', '-f', '-'], meshManifest(run.mesh, 3, shape));
  const status = await run.readyWith(3, `the ${shape.mode} mesh Ready with 3 members`);
  expect(status.members).toMatchObject({ selected: 3, ready: 3 });
  await run.waitSettled(NODES, `one SA per direction and family among a, b, c (${shape.mode})`);
  run.timings.push(`${shape.mode}: Ready and ${DIRECTIONS} directions keyed ${((Date.now() - started) / 1000).toFixed(1)} s after apply`);
  const dumps = await run.sample();
  const spis = run.pairedSpis(dumps, NODES);
  expect(spis.size).toBe(DIRECTIONS);
  for (const [direction, held] of spis) expect(held, direction).toHaveLength(1);
  for (const [name, dump] of dumps) {
    const modes = parseStateDump(dump).filter((sa) => sa.protocol === 'esp').map((sa) => sa.mode);
    expect(modes, `${name}'s ESP SAs`).toEqual(new Array<string>(8).fill(shape.mode)); // 2 families x 2 peers x in/out
  }
  return dumps;
}

/** Numbered traffic for a few seconds with no rotation: no SA goes, so the receivers' SAs count every datagram. */
async function everyDatagramDecrypted(label: string): Promise<Map<string, bigint>> {
  const counts = await run.underTraffic(label, NODES, NODES, async () => {
    await sleep(2000);
  });
  expect(counts).toHaveLength(DIRECTIONS);
  const carried = new Map<string, bigint>();
  for (const count of counts) {
    const decrypted = run.carried(count);
    carried.set(run.directionName(count), decrypted);
    expect(decrypted, `${run.directionName(count)}: packets the receiver's ${run.shape.mode} SA decrypted, against ${count.received} datagrams received`).toBeGreaterThanOrEqual(BigInt(count.received));
  }
  console.log(`[e2e-mesh] ${label}: decrypted/received ${counts.map((count) => `${run.directionName(count)} ${carried.get(run.directionName(count))}/${count.received}`).join(', ')}`);
  return carried;
}

/** One rotation round (every node at once) under traffic, 0 lost; the new SAs carry on (each direction's decrypted count grew). */
async function rotatesOnce(before: Map<string, bigint>): Promise<void> {
  const counts = await run.underTraffic(`${run.shape.mode}: one rotation round`, NODES, NODES, async (): Promise<void> => {
    const generations = await run.generations();
    const started = Date.now();
    await run.cluster.kubectl(['annotate', 'ipsecmesh', run.mesh, 'ipsec.xfrm.io/rotate=now', '--overwrite']);
    await run.roundCompleted(NODES, generations);
    await run.waitSettled(NODES, `${run.shape.mode}: the old SAs removed after the round`);
    run.timings.push(`${run.shape.mode}: round complete, old SAs gone, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
  expect(counts).toHaveLength(DIRECTIONS);
  for (const count of counts) expect(run.carried(count), run.directionName(count)).toBeGreaterThan(before.get(run.directionName(count))!);
  const dumps = await run.sample();
  for (const [name, dump] of dumps) expect(parseStateDump(dump).filter((sa) => sa.protocol === 'esp').every((sa) => sa.mode === run.shape.mode), name).toBe(true);
}

describe('IpsecMesh on real kernels: a dual-stack transport mesh, then a tunnel mesh for pod CIDRs', () => {
  beforeAll(async () => {
    run = await startMeshRun(vm, { kubeconfigPath: injectedKubeconfigPath(), mesh: 'e2e-dual-transport', nodes: NODES, resyncSeconds: RESYNC_SECONDS, shape: TRANSPORT, families: ['IPv4', 'IPv6'], pods: true });
  });
  afterAll(async () => {
    await run?.finish(); // undefined when beforeAll failed
  });

  describe('transport, IPv4 and IPv6 node addresses', () => {
    let carried: Map<string, bigint>;

    it('becomes Ready with a transport SA at both ends of all twelve directions', async () => {
      // The Node holds its IPv6 address in the topology's non-canonical text, the SAs the canonical one.
      const written = JSON.parse(await run.cluster.kubectl(['get', 'node', 'a', '-o', 'jsonpath={.status.addresses}'])) as { type: string; address: string }[];
      expect(written).toContainEqual({ type: 'InternalIP', address: run.node('a').ipv6 });
      expect(run.node('a').ipv6).not.toBe(run.address('a', 'IPv6'));
      await becomesReady(TRANSPORT);
    });

    it("carries numbered traffic in both families over ESP: the receivers' SAs decrypted every datagram", async () => {
      carried = await everyDatagramDecrypted('transport: steady');
    });

    it('rotates once, every node at once, with 0 lost in both families', async () => {
      await rotatesOnce(carried);
    });

    it('removes every SA and policy of the mesh from every node when it is deleted', async () => {
      await run.deletedEverywhere();
    });
  });

  describe("tunnel between the node addresses for the pods' traffic", () => {
    let carried: Map<string, bigint>;

    it('becomes Ready with tunnel SAs between the node addresses and out/in/fwd policies for each pair of pod CIDRs', async () => {
      run.use('e2e-dual-tunnel', TUNNEL);
      for (const name of NODES) await run.label(name, true);
      await becomesReady(TUNNEL);
      const node = 'a';
      const policies = parsePolicyDump((await run.node(node).sh('ip xfrm policy')).stdout);
      console.log(`[e2e-mesh] tunnel: ${node}'s policies: ${JSON.stringify(policies)}`);
      const expected: DumpedPolicy[] = [];
      for (const peer of NODES.filter((name) => name !== node)) {
        for (const family of TUNNEL.families) {
          const [own, theirs] = [run.podCIDR(node, family), run.podCIDR(peer, family)];
          const [here, there] = [run.address(node, family), run.address(peer, family)];
          expected.push({ source: own, destination: theirs, direction: 'out', template: { source: here, destination: there, mode: 'tunnel' } });
          for (const direction of ['in', 'fwd']) expected.push({ source: theirs, destination: own, direction, template: { source: there, destination: here, mode: 'tunnel' } });
        }
      }
      expect(policies).toHaveLength(expected.length);
      expect(policies).toEqual(expect.arrayContaining(expected));
    });

    it("carries the pods' numbered traffic through the tunnels: the receivers' tunnel SAs decrypted every datagram", async () => {
      carried = await everyDatagramDecrypted('tunnel: steady');
    });

    it('rotates once, every node at once, with 0 lost between the pods in both families', async () => {
      await rotatesOnce(carried);
    });

    it('removes every SA and policy of the tunnel mesh from every node when it is deleted', async () => {
      await run.deletedEverywhere();
    });
  });

  describe('fail-closed guards and a clear-text exemption (IPv4 transport)', () => {
    const A = () => run.address('a');
    const B = () => run.address('b');
    const C = () => run.address('c');
    /** What the receiver's SAs of each direction had decrypted when markCarried last ran (SequenceTracker.carried over the run's dumps). */
    const carriedMarks = new Map<string, bigint>();
    const markCarried = async (): Promise<void> => {
      await run.sample();
      carriedMarks.clear();
      for (const from of NODES) for (const to of NODES) if (from !== to) carriedMarks.set(`${from}->${to}`, run.tracker.carried(to, 'transport', run.address(from), run.address(to)));
    };
    const carriedSinceMark = (count: DirectionCount): bigint => run.carried(count) - carriedMarks.get(run.directionName(count))!;

    it('becomes Ready among a and b with one encrypting policy per direction, no guard beside it, the exemption ahead of it', async () => {
      run.use('e2e-guard', GUARDED);
      await run.label('a', true);
      await run.label('b', true);
      await run.label('c', false);
      const started = Date.now();
      await run.cluster.kubectl(['apply', '-f', '-'], meshManifest(run.mesh, 3, GUARDED, GUARDS));
      await run.readyWith(2, 'the fail-closed mesh Ready with a and b');
      await run.waitSettled(['a', 'b'], 'one SA per direction between a and b, none on c');
      run.timings.push(`guarded: Ready with a and b and keyed ${((Date.now() - started) / 1000).toFixed(1)} s after apply`);
      const policies = await policiesOf('a');
      console.log(`[e2e-mesh] guarded: a's policies: ${JSON.stringify(policies)}`);
      // The kernel names a policy by direction and selector, not priority: one entry per slot.
      expect(policies.filter((p) => p.head === `src ${A()}/32 dst ${B()}/32`)).toMatchObject([{ direction: 'out', action: 'allow', priority: ENCRYPTING_PRIORITY, templates: 1 }]);
      expect(policies.filter((p) => p.head === `src ${B()}/32 dst ${A()}/32`)).toMatchObject([{ direction: 'in', action: 'allow', priority: ENCRYPTING_PRIORITY, templates: 1 }]);
      expect(policies.filter((p) => p.action === 'block')).toEqual([]);
      const exempt = policies.filter((p) => p.priority === EXEMPTION_PRIORITY);
      expect(exempt.every((p) => p.action === 'allow' && p.templates === 0 && p.head.startsWith('src 0.0.0.0/0 dst 0.0.0.0/0 proto udp '))).toBe(true);
      expect(exempt.map((p) => `${p.direction} ${/[sd]port \d+/.exec(p.head)?.[0]}`).sort()).toEqual([`in dport ${EXEMPT_PORT}`, `in sport ${EXEMPT_PORT}`, `out dport ${EXEMPT_PORT}`, `out sport ${EXEMPT_PORT}`]);
      expect(policies).toHaveLength(2 + exempt.length);
    });

    it("fail-closed: c joining while its peers' agents are stopped sends them nothing in clear (blocked) and refuses their clear text; with the agents back every direction is encrypted", async () => {
      await run.cluster.stopAgent('a');
      await run.cluster.stopAgent('b');
      let back = false;
      const restart = async () => {
        if (back) return;
        back = true;
        await run.cluster.startAgent('a');
        await run.cluster.startAgent('b');
      };
      try {
        const started = Date.now();
        await run.label('c', true);
        // c knows a and b from their reports, but neither can ack an SA from c: no outbound SA.
        const outTo = (policies: GuardPolicy[], peer: string) => policies.filter((p) => p.direction === 'out' && p.head === `src ${C()}/32 dst ${peer}/32`);
        const inFrom = (policies: GuardPolicy[], peer: string) => policies.filter((p) => p.direction === 'in' && p.head === `src ${peer}/32 dst ${C()}/32`);
        const guarded = await waitFor(
          "c's policies with a and b in place (out and in per peer)",
          async () => {
            const policies = await policiesOf('c');
            return [A(), B()].every((peer) => outTo(policies, peer).length === 1 && inFrom(policies, peer).length === 1) ? policies : undefined;
          },
          120_000,
          1000,
        );
        run.timings.push(`guarded: c's policies with its unkeyed peers in place ${((Date.now() - started) / 1000).toFixed(1)} s after labelling`);
        console.log(`[e2e-mesh] guarded: c's policies while a and b are stopped: ${JSON.stringify(guarded)}`);
        for (const peer of [A(), B()]) {
          expect(outTo(guarded, peer), `c's out policy to ${peer}`).toMatchObject([{ action: 'block', priority: GUARD_PRIORITY, templates: 0 }]);
          // ESP required before the peer encrypts (without failClosed: `level use`, clear text let in).
          expect(inFrom(guarded, peer), `c's in policy from ${peer}`).toMatchObject([{ action: 'allow', priority: ENCRYPTING_PRIORITY, templates: 1, level: 'required' }]);
        }
        const before = await run.xfrmStats();
        const { lines, result: counts } = await run.captureOnWire('c', `udp port ${PORT}`, async () => {
          const stop = await run.startTraffic(NODES);
          await sleep(4000);
          return stop();
        });
        const increase = xfrmStatIncrease(before.get('c')!, (await run.xfrmStats()).get('c')!);
        const count = (from: string, to: string): DirectionCount => counts.find((c) => c.from === from && c.to === to)!;
        const fromC = count(C(), A()).sent + count(C(), B()).sent;
        const clearFromPeers = clearDatagrams(lines, A(), C(), PORT) + clearDatagrams(lines, B(), C(), PORT);
        const line = `guarded, c unkeyed: traffic ${counts.map((c) => `${c.from}->${c.to} ${c.received}/${c.sent}`).join(', ')}; c's xfrm_stat changes ${JSON.stringify(Object.fromEntries(increase))}; on c's wire: ${clearDatagrams(lines, C(), A(), PORT) + clearDatagrams(lines, C(), B(), PORT)} clear datagrams from c, ${clearFromPeers} to it`;
        console.log(`[e2e-mesh] ${line}`);
        run.timings.push(line);
        for (const [from, to] of [[C(), A()], [C(), B()], [A(), C()], [B(), C()]] as const) {
          expect(count(from, to).sent, `${from}->${to} sent`).toBeGreaterThanOrEqual(RATE * 2);
          expect(count(from, to).received, `${from}->${to}: nothing gets through while c is not keyed`).toBe(0);
        }
        // Blocked, not sent in clear: every datagram c sent hit the guard, none reached the wire.
        expect(increase.get('XfrmOutPolBlock') ?? 0, "c's XfrmOutPolBlock").toBeGreaterThanOrEqual(fromC);
        expect(clearDatagrams(lines, C(), A(), PORT) + clearDatagrams(lines, C(), B(), PORT), 'clear datagrams from c on its wire').toBe(0);
        // a and b, not knowing c yet, send in clear: c's inbound policies (ESP required from the start) refuse it.
        expect(clearFromPeers, "a's and b's clear datagrams seen arriving at c").toBeGreaterThan(0);
        expect(increase.get('XfrmInTmplMismatch') ?? 0, "c's XfrmInTmplMismatch").toBeGreaterThanOrEqual(clearFromPeers);
        // Between a and b (their SAs untouched while their agents are stopped): nothing lost.
        for (const [from, to] of [[A(), B()], [B(), A()]] as const) expect({ lost: count(from, to).lost, missing: count(from, to).missing }, `${from}->${to}`).toEqual({ lost: 0, missing: [] });
      } finally {
        await restart();
      }
      const started = Date.now();
      await run.readyWith(3, 'the fail-closed mesh Ready with a, b and c once their agents are back');
      await run.waitSettled(NODES, 'one SA per direction among a, b, c');
      run.timings.push(`guarded: agents back, Ready with 3 and keyed ${((Date.now() - started) / 1000).toFixed(1)} s after the restart`);
      const keyed = await policiesOf('c');
      expect(keyed.filter((p) => p.action === 'block'), "c's guards, turned into encrypting policies").toEqual([]);
      for (const peer of [A(), B()]) expect(keyed.filter((p) => p.direction === 'out' && p.head === `src ${C()}/32 dst ${peer}/32`)).toMatchObject([{ action: 'allow', priority: ENCRYPTING_PRIORITY, templates: 1 }]);
      await markCarried();
      const counts = await run.underTraffic('guarded: keyed, steady', NODES, NODES, async () => {
        await sleep(2000);
      });
      expect(counts).toHaveLength(6);
      for (const count of counts) {
        expect(carriedSinceMark(count), `${run.directionName(count)}: packets the receiver's SA decrypted, against ${count.received} datagrams received`).toBeGreaterThanOrEqual(BigInt(count.received));
      }
    });


    it('exempts UDP 7001: its datagrams flow among the members in clear text, past no SA, in every direction', async () => {
      await markCarried();
      const { lines, result: counts } = await run.captureOnWire('a', `udp port ${EXEMPT_PORT} or esp`, () =>
        run.underTraffic(`guarded: UDP ${EXEMPT_PORT} exempt`, NODES, NODES, async () => {
          await sleep(2000);
        }, EXEMPT_PORT),
      );
      expect(counts).toHaveLength(6);
      for (const count of counts) expect(carriedSinceMark(count), `${run.directionName(count)}: the receiver's SAs decrypted none of its ${count.received} datagrams`).toBe(0n);
      const esp = lines.filter((line) => line.includes(': ESP(')).length;
      const seen = (from: string, to: string) => clearDatagrams(lines, run.address(from), run.address(to), EXEMPT_PORT);
      const line = `guarded, exempt: on a's wire ${['b', 'c'].map((peer) => `${peer}->a ${seen(peer, 'a')}, a->${peer} ${seen('a', peer)}`).join(', ')} clear datagrams, ${esp} ESP packets`;
      console.log(`[e2e-mesh] ${line}`);
      run.timings.push(line);
      expect(esp, 'ESP packets on a\'s wire while only exempt traffic runs').toBe(0);
      for (const peer of ['b', 'c']) {
        const received = counts.find((c) => c.from === run.address(peer) && c.to === run.address('a'))!.received;
        expect(seen(peer, 'a'), `${peer}->a: clear datagrams on a's wire against ${received} received`).toBeGreaterThanOrEqual(received);
        expect(seen('a', peer), `a->${peer} clear datagrams on a's wire`).toBeGreaterThan(0);
      }
    });
  });
});
