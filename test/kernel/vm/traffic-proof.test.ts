// The zero-loss proof's instruments, proven on the real kernel before anything relies on them:
// numbered UDP traffic in every direction between three nodes (test/infra/vm/guest/traffic-node.mjs),
// outbound counters followed through `ip -s xfrm state` dumps, the kernel's XFRM error counters
// and a key scan (test/support/traffic-proof.ts). With SAs written by hand:
// - a make-before-break rekey of one pair (new inbound SA, then one UPDPOLICY that pins the new
//   SPI, then the old SA removed after a grace period) loses nothing, restarts no counter and
//   moves no XfrmIn error counter;
// - the same instruments see it when an SA is flushed and put back with its key and SPI: the
//   datagrams sent meanwhile are counted lost and the counter's restart is reported.
// So a later proof that finds nothing (the mesh's rotations) could have found something.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../../infra/vm/inject.js';
import { createNodes, type Topology, type TopologyNode } from '../../infra/vm/topology.js';
import { warmCrypto } from '../../support/vm-cli.js';
import { directionCounts, dumpedKeys, parseTrafficSummary, parseXfrmStat, scanKeys, SequenceTracker, xfrmStatIncrease } from '../../support/traffic-proof.js';

const vm = vmFromInject();
const TRAFFIC_NODE = fileURLToPath(new URL('../../infra/vm/guest/traffic-node.mjs', import.meta.url));
const RATE = 25; // datagrams per second per direction (the mesh proof's floor is 20)
const PORT = 7000;

/** A distinct 36-byte rfc4106 key (AES-256 + salt) per SA and generation. */
const keyHex = (from: number, to: number, generation: number) => Array.from({ length: 36 }, (_, i) => ((from * 71 + to * 13 + generation * 29 + i * 7 + 1) & 0xff).toString(16).padStart(2, '0')).join('');
const spiOf = (from: number, to: number, generation: number) => 0x10000 + generation * 0x100 + from * 0x10 + to;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('zero-loss instruments on the real kernel', () => {
  let topology: Topology;
  let nodes: TopologyNode[];
  const tracker = new SequenceTracker();
  const keys: Buffer[] = [];

  const addr = (node: TopologyNode) => node.ipv4!;
  const sa = (from: number, to: number, generation: number) =>
    `ip xfrm state add src ${addr(nodes[from]!)} dst ${addr(nodes[to]!)} proto esp spi 0x${spiOf(from, to, generation).toString(16)} reqid ${100 + from * 10 + to} mode transport replay-window 32 aead 'rfc4106(gcm(aes))' 0x${keyHex(from, to, generation)} 128`;
  const outPolicy = (from: number, to: number, generation: number, verb: 'add' | 'update') =>
    `ip xfrm policy ${verb} src ${addr(nodes[from]!)}/32 dst ${addr(nodes[to]!)}/32 proto udp dir out priority 100 tmpl src ${addr(nodes[from]!)} dst ${addr(nodes[to]!)} proto esp spi 0x${spiOf(from, to, generation).toString(16)} reqid ${100 + from * 10 + to} mode transport`;
  const inPolicy = (from: number, to: number) =>
    `ip xfrm policy add src ${addr(nodes[from]!)}/32 dst ${addr(nodes[to]!)}/32 proto udp dir in priority 100 tmpl src ${addr(nodes[from]!)} dst ${addr(nodes[to]!)} proto esp reqid ${100 + from * 10 + to} mode transport`;

  /** Every node's SA dump into the tracker (and its keys into the scan list). */
  const sample = async () => {
    for (const node of nodes) {
      const dump = (await node.sh('ip -s xfrm state')).stdout;
      tracker.observe(node.name, dump);
      for (const key of dumpedKeys(dump)) if (!keys.some((known) => known.equals(key))) keys.push(key);
    }
  };
  const xfrmStats = async () => new Map(await Promise.all(nodes.map(async (node) => [node.name, parseXfrmStat((await node.sh('cat /proc/net/xfrm_stat')).stdout)] as const)));

  /** Starts a traffic node in every namespace; returns a stop that collects the directions' counts. */
  const startTraffic = async () => {
    const ids: string[] = [];
    for (const node of nodes) {
      const peers = nodes.filter((peer) => peer !== node).map(addr).join(',');
      const { id } = await vm.spawn({ argv: ['ip', 'netns', 'exec', node.netns, 'node', TRAFFIC_NODE, '--self', addr(node), '--peers', peers, '--port', String(PORT), '--rate', String(RATE)] });
      ids.push(id);
    }
    for (const id of ids) {
      for (let attempt = 0; !(await vm.logs(id)).stdout.includes('ready'); attempt += 1) {
        const status = await vm.logs(id);
        if (!status.running) throw new Error(`a traffic node exited: ${status.stderr}`);
        await sleep(250);
      }
    }
    for (const id of ids) await vm.kill(id, 'SIGUSR1'); // all listen: start sending
    return async () => {
      const summaries = [];
      for (const id of ids) await vm.kill(id, 'SIGTERM');
      for (const id of ids) {
        const status = await vm.wait(id, 60_000);
        expect(status.running, 'traffic node still running after SIGTERM').toBe(false);
        summaries.push(parseTrafficSummary(status.stdout));
      }
      return directionCounts(summaries);
    };
  };

  beforeAll(async () => {
    await warmCrypto(vm);
    topology = await createNodes(vm, ['a', 'b', 'c'], { ipv4: true, ipv6: false });
    nodes = ['a', 'b', 'c'].map((name) => topology.node(name));
    // Every ordered pair: the SA on both ends (outbound on the sender, inbound on the receiver),
    // an out policy on the sender that pins the SA's SPI, an in policy on the receiver.
    for (let from = 0; from < 3; from += 1) {
      for (let to = 0; to < 3; to += 1) {
        if (from === to) continue;
        await nodes[from]!.sh(`${sa(from, to, 0)} && ${outPolicy(from, to, 0, 'add')}`, { timeoutMs: 180_000 });
        await nodes[to]!.sh(`${sa(from, to, 0)} && ${inPolicy(from, to)}`, { timeoutMs: 180_000 });
      }
    }
  }, 600_000);
  afterAll(async () => {
    await topology?.cleanup();
  });

  it('a make-before-break rekey of a pair under traffic: nothing lost, no counter restarted, no XfrmIn error', async () => {
    const before = await xfrmStats();
    const stop = await startTraffic();
    await sample();
    await sleep(3000);
    await sample();
    // Rekey a -> b: the receiver installs the new inbound SA first, then the sender adds its
    // outbound copy and switches with one UPDPOLICY; the old SA goes after a grace period.
    await nodes[1]!.sh(sa(0, 1, 1));
    await nodes[0]!.sh(sa(0, 1, 1));
    await sample();
    await nodes[0]!.sh(outPolicy(0, 1, 1, 'update'));
    await sleep(2000);
    await sample();
    const old = `ip xfrm state delete src ${addr(nodes[0]!)} dst ${addr(nodes[1]!)} proto esp spi 0x${spiOf(0, 1, 0).toString(16)}`;
    await nodes[0]!.sh(old);
    await nodes[1]!.sh(old);
    await sleep(3000);
    await sample();
    const counts = await stop();
    await sample();
    const increase = new Map([...(await xfrmStats())].map(([node, after]) => [node, xfrmStatIncrease(before.get(node)!, after)]));
    console.log(`[traffic-proof] rekey under traffic: ${counts.map((count) => `${count.from}->${count.to} ${count.received}/${count.sent}`).join(', ')}; ${tracker.samples} dumps, ${tracker.pairs.size} (key, SPI) pairs`);
    expect(counts).toHaveLength(6);
    for (const count of counts) {
      expect(count.sent, `${count.from}->${count.to}`).toBeGreaterThanOrEqual(RATE * 5);
      expect({ lost: count.lost, missing: count.missing }, `${count.from}->${count.to}`).toEqual({ lost: 0, missing: [] });
    }
    expect(tracker.restarts).toEqual([]);
    expect(tracker.pairs.size, 'six SAs and the new generation of one').toBe(7);
    for (const [node, moved] of increase) {
      expect({ node, XfrmInNoStates: moved.get('XfrmInNoStates') ?? 0, XfrmInStateSeqError: moved.get('XfrmInStateSeqError') ?? 0 }).toEqual({ node, XfrmInNoStates: 0, XfrmInStateSeqError: 0 });
    }
    // The key scan sees the keys where they are (the dumps) and not where they are not.
    expect(keys).toHaveLength(7);
    const dump = (await nodes[0]!.sh('ip -s xfrm state')).stdout;
    expect(scanKeys(keys, new Map([['a dump', dump]])).length).toBeGreaterThan(0);
    expect(scanKeys(keys, new Map([['a policy dump', (await nodes[0]!.sh('ip xfrm policy')).stdout]]))).toEqual([]);
  });

  it('sees a flushed SA put back with its key and SPI: datagrams lost, the counter restarted', async () => {
    const stop = await startTraffic();
    await sleep(3000);
    await sample();
    // b -> c: the sender's SA removed (its datagrams are dropped: no SA for the policy's
    // template) and, two seconds later, added again as it was: the same key, counting from 0.
    const id = `src ${addr(nodes[1]!)} dst ${addr(nodes[2]!)} proto esp spi 0x${spiOf(1, 2, 0).toString(16)}`;
    await nodes[1]!.sh(`ip xfrm state delete ${id}`);
    await sleep(2000);
    await nodes[1]!.sh(sa(1, 2, 0));
    await sleep(1000);
    await sample();
    const counts = await stop();
    const broken = counts.find((count) => count.from === addr(nodes[1]!) && count.to === addr(nodes[2]!))!;
    console.log(`[traffic-proof] flush and re-add: b->c ${broken.received}/${broken.sent}, restarts ${tracker.restarts.length}`);
    expect(broken.lost).toBeGreaterThan(0);
    expect(tracker.restarts.map((restart) => ({ node: restart.node, spi: restart.spi }))).toContainEqual({ node: 'b', spi: spiOf(1, 2, 0) });
  });
});
