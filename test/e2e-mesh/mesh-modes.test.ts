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
//    datagrams decrypted by the tunnel SAs, one rotation round with 0 lost.
// Every traffic step: 0 lost, XfrmInNoStates/XfrmInStateSeqError unchanged, no (key, SPI)
// counter restarted over every dump (MeshRun.underTraffic).
//
// In `npm test` (layer e2e-mesh, 6.1; e2e-mesh-6.12 on the second kernel). Short by design: three
// nodes, one round per mesh, agents resyncing every 5 s and a 3 s grace period as in churn.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { parseStateDump } from '../support/traffic-proof.js';
import { waitFor } from '../e2e/support.js';
import { meshManifest, MeshRun, sleep, startMeshRun, type MeshShape } from './support.js';

const vm = vmFromInject();
const NODES = ['a', 'b', 'c'];
const RESYNC_SECONDS = 5;
const TRANSPORT: MeshShape = { families: ['IPv4', 'IPv6'], mode: 'transport' };
const TUNNEL: MeshShape = { families: ['IPv4', 'IPv6'], mode: 'tunnel' };
/** Directions of three nodes in two families. */
const DIRECTIONS = 2 * 6;

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
      const started = Date.now();
      await run.cluster.kubectl(['delete', 'ipsecmesh', run.mesh, '--wait=false']);
      await waitFor(
        'no SA and no policy left on any node',
        async () => {
          for (const name of NODES) {
            const left = await run.node(name).sh('ip xfrm state; ip xfrm policy');
            if (left.stdout.trim() !== '') return false;
          }
          return true;
        },
        120_000,
        1000,
      );
      run.timings.push(`transport mesh deleted, nothing left in the kernels after ${((Date.now() - started) / 1000).toFixed(1)} s`);
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
  });
});
