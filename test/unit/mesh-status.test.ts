// The IpsecMesh status (src/controller/mesh-status.ts): Ready from the advertisements, Rotating
// from the scheduler, per-node summaries, and a second run on the same inputs giving the same
// status (so the controller writes nothing).
import { describe, expect, it } from 'vitest';
import type { IpsecMeshObject, NodeMeshReport } from '../../src/crd/mesh-contract.js';
import type { InboundAck, OutboundUse } from '../../src/mesh/types.js';
import { meshStatus, pairView, scheduleState, type MeshStatusInput } from '../../src/controller/mesh-status.js';
import { hashJitter } from '../../src/controller/mesh-schedule.js';
import { statusEqual } from '../../src/kube/status.js';
import { findCondition } from '../../src/kube/conditions.js';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const mesh: IpsecMeshObject = {
  metadata: { name: 'm', uid: 'uid-1', generation: 3, creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: { addressFamilies: ['IPv4', 'IPv6'], rotation: { interval: '24h', gracePeriod: '30s', backstop: '1h', maxConcurrent: 1 } },
};

const spi = (from: string, to: string, family: string) => 0x1000 + from.charCodeAt(0) * 16 + to.charCodeAt(0) + (family === 'inet6' ? 0x100000 : 0);

/** Reports of nodes that have SAs with each other in `links` (sender>receiver/family), and every family address. */
function reports(nodes: readonly string[], links: ReadonlySet<string> | 'all', extra: Record<string, Partial<NodeMeshReport>> = {}): Map<string, NodeMeshReport> {
  const has = (from: string, to: string, family: string) => links === 'all' || links.has(`${from}>${to}/${family}`);
  return new Map(
    nodes.map((node) => {
      const outbound: OutboundUse[] = [];
      const inbound: InboundAck[] = [];
      for (const peer of nodes) {
        if (peer === node) continue;
        for (const family of ['inet', 'inet6'] as const) {
          if (has(node, peer, family)) outbound.push({ to: peer, family, generation: 1, toGeneration: 1, toBootId: `boot-${peer}`, spi: spi(node, peer, family) });
          if (has(peer, node, family)) inbound.push({ from: peer, family, fromGeneration: 1, fromBootId: `boot-${peer}`, generation: 1, spi: spi(peer, node, family) });
        }
      }
      const report: NodeMeshReport = {
        mesh: 'm',
        uid: 'uid-1',
        advertisement: { node, bootId: `boot-${node}`, addresses: { inet: `10.0.0.${node.charCodeAt(0)}`, inet6: `fd00::${node.charCodeAt(0)}` }, podCIDRs: [], generations: [{ generation: 1, publicKey: 'AAAA' }], inbound, outbound, peers: [], leaving: false },
        expectedPeers: nodes.length - 1,
        readyPeers: nodes.length - 1,
        ...extra[node],
      };
      return [node, report];
    }),
  );
}

const input = (over: Partial<MeshStatusInput> = {}): MeshStatusInput => ({ mesh, members: ['a', 'b', 'c'], reports: reports(['a', 'b', 'c'], 'all'), previous: undefined, now: NOW, jitter: hashJitter('s'), ...over });
const allLinks = (nodes: readonly string[]) => new Set(nodes.flatMap((a) => nodes.filter((b) => b !== a).flatMap((b) => [`${a}>${b}/inet`, `${a}>${b}/inet6`])));

describe('mesh status', () => {
  it('is Ready when every ordered pair has SAs in every family, with counts and node summaries', () => {
    const result = meshStatus(input());
    expect(result.ready).toEqual({ status: true, reason: 'AllPairsKeyed', message: '3 members, every pair has SAs in both directions' });
    expect(result.status.members).toEqual({ selected: 3, ready: 3, rotating: 0 });
    expect(result.status.nodes?.[0]).toEqual({ name: 'a', generation: 1, peers: 2, expectedPeers: 2, rotating: false });
    expect(findCondition(result.status.conditions, 'Ready')).toMatchObject({ status: 'True', observedGeneration: 3 });
    expect(findCondition(result.status.conditions, 'Rotating')).toMatchObject({ status: 'False', reason: 'Idle' });
    expect(result.missingPairs).toBe(0);
  });

  it('is not Ready when one direction of one pair in one family is missing, and says which', () => {
    const links = allLinks(['a', 'b', 'c']);
    links.delete('b>c/inet6');
    const result = meshStatus(input({ reports: reports(['a', 'b', 'c'], links) }));
    expect(result.ready.status).toBe(false);
    expect(result.ready.reason).toBe('PeersMissing');
    expect(result.ready.message).toContain('b -> c (IPv6)');
    expect(result.status.members?.ready).toBe(1);
    expect(result.missingPairs).toBe(1);
  });

  it('needs the receiver to ack the very SA the sender uses (SPI, generations, boot ids)', () => {
    const base = reports(['a', 'b'], 'all');
    const b = base.get('b')!;
    // b acks a's SA under another SPI: a sends on an SA b does not hold.
    const wrong = { ...b, advertisement: { ...b.advertisement, inbound: b.advertisement.inbound.map((ack) => (ack.family === 'inet' ? { ...ack, spi: ack.spi + 1 } : ack)) } };
    expect(pairView(['a', 'b'], new Map([['a', base.get('a')!], ['b', wrong]]), ['inet', 'inet6']).missing).toEqual(['a -> b (IPv4)']);
    // b rebooted: a still names its old boot id.
    const rebooted = { ...b, advertisement: { ...b.advertisement, bootId: 'boot-b2' } };
    expect(pairView(['a', 'b'], new Map([['a', base.get('a')!], ['b', rebooted]]), ['inet']).missing).toEqual(['a -> b (IPv4)', 'b -> a (IPv4)']);
    // Only the families of the spec count.
    const v4only = new Set(['a>b/inet', 'b>a/inet']);
    expect(pairView(['a', 'b'], reports(['a', 'b'], v4only), ['inet']).missing).toEqual([]);
  });

  it('requires the agents to agree (readyPeers of expectedPeers)', () => {
    const result = meshStatus(input({ reports: reports(['a', 'b', 'c'], 'all', { c: { readyPeers: 1 } }) }));
    expect(result.ready).toMatchObject({ status: false, reason: 'PeersMissing' });
    expect(result.ready.message).toContain('agents of c');
  });

  it('names members without an agent report, and members that cannot take part', () => {
    const partial = reports(['a', 'b'], 'all');
    expect(meshStatus(input({ reports: partial })).ready).toMatchObject({ status: false, reason: 'AgentMissing', message: 'no report from the agent of c' });
    const cannot = reports(['a', 'b', 'c'], 'all', { c: { reason: 'NoAddress', message: 'no InternalIP' } });
    const result = meshStatus(input({ reports: cannot }));
    expect(result.ready).toMatchObject({ status: false, reason: 'MemberCannotJoin', message: 'not taking part: c (NoAddress: no InternalIP)' });
    expect(result.status.nodes?.find((node) => node.name === 'c')?.reason).toBe('NoAddress');
    expect(meshStatus(input({ members: [], reports: new Map() })).ready.reason).toBe('NoMembers');
    expect(meshStatus(input({ members: ['a'], reports: reports(['a'], 'all') })).ready.status).toBe(true);
  });

  it('reports a rotation under way, and the status round-trips into the scheduler', () => {
    const result = meshStatus(input({ mesh: { ...mesh, metadata: { ...mesh.metadata, annotations: { 'ipsec.xfrm.io/rotate': 'now' } } } }));
    expect(result.clearAnnotation).toBe(true);
    expect(findCondition(result.status.conditions, 'Rotating')).toMatchObject({ status: 'True', reason: 'ManualRotation', message: 'key generation 1: rotating a (Manual); waiting: b, c' });
    expect(result.status.members?.rotating).toBe(1);
    expect(result.status.rotationRequests).toEqual([{ node: 'a', requestId: '1-a', reason: 'Manual', requestedAt: '2026-01-01T12:00:00Z' }]);
    const state = scheduleState(JSON.parse(JSON.stringify(result.status)));
    expect(state.requests).toEqual(result.status.rotationRequests);
    expect(state.round).toEqual(result.status.round);
    expect(state.rotateAnnotationHandled).toBe(true);
  });

  it('gives the same status again for the same inputs (nothing to write), later too', () => {
    const first = meshStatus(input());
    const second = meshStatus(input({ previous: JSON.parse(JSON.stringify(first.status)), now: NOW + 60_000 }));
    expect(statusEqual(second.status, first.status)).toBe(true);
    // A change flips the condition's transition time, and only then.
    const links = allLinks(['a', 'b', 'c']);
    links.delete('a>b/inet');
    const third = meshStatus(input({ previous: second.status, reports: reports(['a', 'b', 'c'], links), now: NOW + 120_000 }));
    expect(findCondition(third.status.conditions, 'Ready')?.lastTransitionTime).toBe('2026-01-01T12:02:00Z');
    expect(findCondition(third.status.conditions, 'Rotating')?.lastTransitionTime).toBe('2026-01-01T12:00:00Z');
  });
});
