// The pure parts of the agent's mesh work: the mesh as one node sees it (src/agent/mesh-view.ts),
// what a kernel dump says of a mesh (mesh-kernel.ts), the rotation contract's agent side
// (mesh-progress.ts) and which cache events wake the agent (mesh-changes.ts).
import type { V1Node } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { IpsecMeshObject, NodeMeshReport } from '../../src/crd/mesh-contract.js';
import { normalizeMeshReport } from '../../src/crd/mesh-contract.js';
import type { IpsecNodeState } from '../../src/crd/node-state.js';
import { meshInputsChanged, meshNodeChanged, nodeStateMeshesChanged } from '../../src/agent/mesh-changes.js';
import { InboundActivity, OutboundDrain, foreignSpis, installedMesh, sequenceUsage, softLimitReached, type MeshKernelInput } from '../../src/agent/mesh-kernel.js';
import { emptyAdvertisement, meshReport, progressed, readyPeers, shouldStart } from '../../src/agent/mesh-progress.js';
import { meshEntriesSpec, meshTimers, meshView, nodeAddresses } from '../../src/agent/mesh-view.js';
import type { RotationRecord } from '../../src/mesh/key-store.js';
import type { MeshAdvertisement, MeshLocalState } from '../../src/mesh/types.js';
import type { ObservedTables } from '../../src/plan/planner.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import { KeyMaterial } from '../../src/xfrm/key-material.js';
import { anySelector, DEFAULT_LIFETIME, makePolicy, makeSelector, makeTemplate } from '../../src/xfrm/defaults.js';
import type { SecurityAssociation } from '../../src/xfrm/types.js';

const UID = '7a1b2c3d-0000-4000-8000-000000000001';
const mesh = (extra: Partial<IpsecMeshObject['spec']> = {}, status: IpsecMeshObject['status'] = {}): IpsecMeshObject => ({
  metadata: { name: 'm', uid: UID, generation: 1 },
  spec: { nodeSelector: { matchLabels: { mesh: 'on' } }, ...extra },
  status,
});
const node = (name: string, labels: Record<string, string>, addresses: [string, string][], podCIDRs?: string[]): V1Node => ({
  metadata: { name, labels },
  spec: podCIDRs ? { podCIDRs } : {},
  status: { addresses: addresses.map(([type, address]) => ({ type, address })) },
});
const ad = (name: string, extra: Partial<MeshAdvertisement> = {}): MeshAdvertisement => ({ ...emptyAdvertisement(name, `${name}-boot`), addresses: { inet: `192.0.2.${name.charCodeAt(0) - 96}` }, ...extra });
const state = (name: string, report: Partial<NodeMeshReport> & { advertisement: MeshAdvertisement }): IpsecNodeState => ({
  metadata: { name },
  spec: { nodeName: name },
  status: { meshes: [{ mesh: 'm', uid: UID, expectedPeers: 0, readyPeers: 0, ...report }] },
});

describe('meshView', () => {
  const nodes = [node('a', { mesh: 'on' }, [['InternalIP', '192.0.2.1']]), node('b', { mesh: 'on' }, [['InternalIP', '192.0.2.2']]), node('c', {}, [['InternalIP', '192.0.2.3']])];

  it('selects members by labels, finds its addresses, its own published report and its request', () => {
    const view = meshView({
      mesh: mesh({}, { rotationRequests: [{ node: 'a', requestId: '4-a', reason: 'Manual', requestedAt: '2026-12-02T00:00:00Z' }] }),
      nodes,
      nodeStates: [state('a', { advertisement: ad('a') }), state('b', { advertisement: ad('b') })],
      nodeName: 'a',
      bootId: 'a-boot',
    });
    expect(view.selected).toBe(true);
    expect(view.members).toEqual(['a', 'b']);
    expect(view.self).toEqual({ node: 'a', bootId: 'a-boot', addresses: { inet: '192.0.2.1' }, podCIDRs: [] });
    expect([...view.peers.keys()]).toEqual(['b']);
    expect(view.published?.advertisement.node).toBe('a');
    expect(view.request?.requestId).toBe('4-a');
  });

  it('keeps a node the selector let go as a peer until it publishes leaving, and drops one whose Node is gone', () => {
    const states = [state('a', { advertisement: ad('a') }), state('c', { advertisement: ad('c') }), state('d', { advertisement: ad('d') }), state('e', { advertisement: ad('e', { leaving: true }) })];
    const view = meshView({ mesh: mesh(), nodes, nodeStates: states, nodeName: 'a', bootId: 'a-boot' });
    expect([...view.peers.keys()].sort()).toEqual(['c', 'e']);
  });

  it('ignores an advertisement that names another node, and one of another mesh with the same name', () => {
    const forged = state('b', { advertisement: ad('a') });
    const other: IpsecNodeState = { ...state('b', { advertisement: ad('b') }), status: { meshes: [{ mesh: 'm', uid: 'another-uid', expectedPeers: 0, readyPeers: 0, advertisement: ad('b') }] } };
    expect(meshView({ mesh: mesh(), nodes, nodeStates: [forged], nodeName: 'a', bootId: 'x' }).peers.size).toBe(0);
    expect(meshView({ mesh: mesh(), nodes, nodeStates: [other], nodeName: 'a', bootId: 'x' }).peers.size).toBe(0);
  });

  it('takes the first address of the type per family, and pod CIDRs', () => {
    const n = node('a', {}, [['ExternalIP', '203.0.113.1'], ['InternalIP', '192.0.2.1'], ['InternalIP', '192.0.2.9'], ['InternalIP', '2001:db8::1']], ['10.0.1.0/24', 'fd00:1::/64']);
    expect(nodeAddresses(n, 'InternalIP', ['inet', 'inet6'])).toEqual({ inet: '192.0.2.1', inet6: '2001:db8::1' });
    expect(nodeAddresses(n, 'ExternalIP', ['inet', 'inet6'])).toEqual({ inet: '203.0.113.1' });
    expect(nodeAddresses(n, 'InternalIP', ['inet6'])).toEqual({ inet6: '2001:db8::1' });
    const view = meshView({ mesh: mesh({ nodeSelector: undefined, addressFamilies: ['IPv4', 'IPv6'], mode: 'tunnel' }), nodes: [n], nodeStates: [], nodeName: 'a', bootId: 'x' });
    expect(view.self?.podCIDRs).toEqual(['10.0.1.0/24', 'fd00:1::/64']);
  });

  it("writes the node's addresses as the kernel prints them, whatever text the Node holds, and skips what is no address", () => {
    // The API server keeps `2001:DB8:100:0::1` as written (seen on the real one); the kernel dumps
    // the SA to it as `2001:db8:100::1`, so an SA named with the written text never converges.
    const n = node('a', {}, [['InternalIP', 'not-an-address'], ['InternalIP', '2001:DB8:100:0::1'], ['InternalIP', '198.51.100.1']]);
    expect(nodeAddresses(n, 'InternalIP', ['inet', 'inet6'])).toEqual({ inet: '198.51.100.1', inet6: '2001:db8:100::1' });
    const view = meshView({ mesh: mesh({ nodeSelector: undefined, addressFamilies: ['IPv6'] }), nodes: [n], nodeStates: [], nodeName: 'a', bootId: 'x' });
    expect(view.self?.addresses).toEqual({ inet6: '2001:db8:100::1' });
  });

  it('applies the schema defaults to the entries and the timers', () => {
    expect(meshEntriesSpec(mesh(), { name: 'm', uid: UID })).toEqual({ mesh: { name: 'm', uid: UID }, aead: 'rfc4106-gcm-aes256', mode: 'transport', esn: true, replayWindow: 128, failClosed: false, exemptions: [] });
    const full = meshEntriesSpec(mesh({ natTraversal: {}, exemptions: [{ protocol: 'tcp', port: 179 }, { protocol: 'ipv6-icmp' }], rotation: { softPacketLimit: 5000 } }), { name: 'm', uid: UID });
    expect(full.natTraversal).toEqual({ sourcePort: 4500, destinationPort: 4500 });
    expect(full.exemptions).toEqual([{ protocol: 6, port: 179 }, { protocol: 58 }]);
    expect(full.softPacketLimit).toBe(5000n);
    expect(meshTimers(mesh())).toEqual({ gracePeriodMs: 30_000, backstopMs: 3_600_000 });
    expect(meshTimers(mesh({ rotation: { gracePeriod: '2s', backstop: '1m30s' } }))).toEqual({ gracePeriodMs: 2000, backstopMs: 90_000 });
  });
});

describe('what a dump says of a mesh', () => {
  const reqid = 0x4d001234;
  const resource = 'IpsecMesh/m';
  const sa = (source: string, destination: string, spi: number, extra: Partial<SecurityAssociation> = {}): SecurityAssociation => ({
    id: { family: 'inet', destination, spi, protocol: 'esp', mark: undefined },
    source,
    mode: 'transport',
    reqid,
    selector: anySelector('inet'),
    algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: KeyMaterial.fromBytes(Buffer.alloc(36, 1)), icvBits: 128 } },
    replay: { window: 128, useEsnAttribute: true },
    flags: ['esn'],
    extraFlags: [],
    lifetime: DEFAULT_LIFETIME,
    encapsulation: undefined,
    outputMark: undefined,
    ifId: undefined,
    tfcPad: undefined,
    direction: undefined,
    careOfAddress: undefined,
    observed: undefined,
    ...extra,
  });
  const out = (spi: number, destination: string) =>
    makePolicy({ direction: 'out', selector: makeSelector({ source: '192.0.2.1', destination }), priority: 2000, templates: [makeTemplate({ family: 'inet', protocol: 'esp', spi, reqid, mode: 'transport' })] });
  const observed: ObservedTables = {
    states: [
      sa('192.0.2.2', '192.0.2.1', 0x1001), // inbound from b, ours
      sa('192.0.2.1', '192.0.2.2', 0x2002), // outbound to b, ours
      sa('192.0.2.3', '192.0.2.1', 0x3003), // someone else's SA to us
      sa('192.0.2.1', '192.0.2.3', 0x4004), // ours, no policy pins it
    ],
    policies: [out(0x2002, '192.0.2.2'), out(0x4004, '192.0.2.3')],
  };
  const mine = new Set([stateKey(observed.states[0]!.id), stateKey(observed.states[1]!.id), stateKey(observed.states[3]!.id), policyKey(observed.policies[0]!.id)]);
  const input: MeshKernelInput = {
    observed,
    ownerOf: (key) => (mine.has(key) ? resource : key === policyKey(observed.policies[1]!.id) ? 'IpsecPolicy/other' : undefined),
    resource,
    reqid,
    self: { node: 'a', bootId: 'a-boot', addresses: { inet: '192.0.2.1' }, podCIDRs: [] },
    peers: new Map([['b', ad('b')]]),
    allocations: [],
  };

  it('finds the inbound SAs the ledger records for the mesh and the SA each of its outbound policies pins', () => {
    const installed = installedMesh(input);
    expect([...installed.inbound]).toEqual([0x1001]);
    expect([...installed.outbound]).toEqual([['b|inet', 0x2002]]);
  });

  it('never allocates an SPI another SA to this node holds', () => {
    expect([...foreignSpis(input)]).toEqual([0x3003]);
  });

  it('reports the highest share of sequence space an outbound SA used', () => {
    const replayState = { outboundSequence: 0, outboundSequenceHigh: 0x4000_0000, inboundSequence: 0, inboundSequenceHigh: 0, bitmapLength: 0 };
    const used = { ...observed, states: [sa('192.0.2.1', '192.0.2.2', 0x2002, { observed: { current: { bytes: 0n, packets: 0n, addTime: 0n, useTime: 0n }, statistics: { replayWindow: 0, replay: 0, integrityFailed: 0 }, replayState, sequence: 0 } } as never)] };
    expect(sequenceUsage({ ...input, observed: used })).toBe(0.25);
    expect(sequenceUsage(input)).toBe(0);
  });

  it('tells from the counters that an outbound SA of the mesh reached its soft limit (after a restart too)', () => {
    const counted = (packets: bigint, bytes: bigint, limits: Partial<typeof DEFAULT_LIFETIME>, source = '192.0.2.1', destination = '192.0.2.2', spi = 0x2002) =>
      sa(source, destination, spi, { lifetime: { ...DEFAULT_LIFETIME, ...limits }, observed: { current: { bytes, packets, addTime: 0n, useTime: 0n } } as never });
    const withState = (state: SecurityAssociation) => ({ ...input, observed: { ...observed, states: [state] } });
    expect(softLimitReached(withState(counted(999n, 0n, { softPacketLimit: 1000n })))).toBe(false);
    expect(softLimitReached(withState(counted(1000n, 0n, { softPacketLimit: 1000n })))).toBe(true);
    expect(softLimitReached(withState(counted(1n, 1n << 30n, { softByteLimit: 1n << 30n })))).toBe(true);
    // Inbound SAs, and SAs that are not the mesh's, do not count.
    expect(softLimitReached(withState(counted(5000n, 0n, { softPacketLimit: 1000n }, '192.0.2.2', '192.0.2.1', 0x1001)))).toBe(false);
    expect(softLimitReached(withState(counted(5000n, 0n, { softPacketLimit: 1000n }, '192.0.2.1', '192.0.2.3', 0x4005)))).toBe(false);
    expect(softLimitReached(input)).toBe(false);
  });

  it('calls an inbound SA idle once its packet counter stood still for the grace period', () => {
    const activity = new InboundActivity();
    const withPackets = (packets: bigint) => [sa('192.0.2.2', '192.0.2.1', 0x1001, { observed: { current: { bytes: 0n, packets, addTime: 0n, useTime: 0n } } as never })];
    activity.observe(withPackets(5n), new Set([0x1001]), 1000);
    expect(activity.idle(0x1001, 2000, 2500)).toBe(false);
    activity.observe(withPackets(9n), new Set([0x1001]), 2500);
    expect(activity.idle(0x1001, 2000, 4000)).toBe(false);
    activity.observe(withPackets(9n), new Set([0x1001]), 4600);
    expect(activity.idle(0x1001, 2000, 4600)).toBe(true);
    expect(activity.idle(0x9999, 2000, 0)).toBe(true);
  });

  // The policy to b switched from 0x2002 to 0x2003 (the next SA), its selector the same.
  const switched: MeshKernelInput = {
    ...input,
    observed: { states: [...observed.states, sa('192.0.2.1', '192.0.2.2', 0x2003)], policies: [out(0x2003, '192.0.2.2'), observed.policies[1]!] },
    ownerOf: (key) => (key === stateKey(sa('192.0.2.1', '192.0.2.2', 0x2003).id) ? resource : input.ownerOf(key)),
  };

  it('keeps an outbound SA for the grace period after a policy of the mesh last pinned it (one first seen unpinned: from then)', () => {
    const drain = new OutboundDrain();
    const spis = (kept: SecurityAssociation[]) => kept.map((state) => state.id.spi);
    drain.observe(input, 1000);
    expect(spis(drain.kept(input, 2000, 1000))).toEqual([0x2002, 0x4004]);
    drain.observe(switched, 1500);
    expect(spis(drain.kept(switched, 2000, 2999))).toEqual([0x2002, 0x4004, 0x2003]);
    expect(spis(drain.kept(switched, 2000, 3000))).toEqual([0x2003]);
    // Gone from the kernel, then back (added again): unpinned from when it is seen again.
    drain.observe({ ...switched, observed: { ...switched.observed, states: switched.observed.states.filter((state) => state.id.spi !== 0x2002) } }, 4000);
    drain.observe(switched, 5000);
    expect(spis(drain.kept(switched, 2000, 6999))).toEqual([0x2002, 0x2003]);
  });

  it('does not ask for a rotation for a draining outbound SA at its soft limit: it was replaced already', () => {
    const atLimit = sa('192.0.2.1', '192.0.2.2', 0x2002, { lifetime: { ...DEFAULT_LIFETIME, softPacketLimit: 1000n }, observed: { current: { bytes: 0n, packets: 1000n, addTime: 0n, useTime: 0n } } as never });
    const states = switched.observed.states.map((state) => (state.id.spi === 0x2002 ? atLimit : state));
    expect(softLimitReached({ ...switched, observed: { ...switched.observed, states } })).toBe(false);
    expect(softLimitReached({ ...input, observed: { ...observed, states: [atLimit] } })).toBe(true);
  });
});

describe('the rotation contract, agent side', () => {
  const record: RotationRecord = { requestId: '3-a', state: 'Rotating', generation: 2, startedAt: '2026-12-02T00:00:00Z' };
  const local = (generations: MeshLocalState['generations']): MeshLocalState => ({ generations, allocations: [], releasedSpis: [] });

  it('acts on a requestId once', () => {
    const request = { node: 'a', requestId: '3-a', reason: 'Manual' as const, requestedAt: '2026-12-02T00:00:00Z' };
    expect(shouldStart(request, undefined)).toBe(true);
    expect(shouldStart(request, record)).toBe(false);
    expect(shouldStart({ ...request, requestId: '4-a' }, { ...record, state: 'Done' })).toBe(true);
    expect(shouldStart(undefined, undefined)).toBe(false);
  });

  it('is done once the new generation is published and no older one is live', () => {
    const now = new Date('2026-12-02T00:01:00Z');
    expect(progressed(record, local([{ generation: 1, createdAt: 0, publishedAt: 0, retiring: false }, { generation: 2, createdAt: 1, retiring: false }]), now)).toBe(record);
    expect(progressed(record, local([{ generation: 1, createdAt: 0, publishedAt: 0, retiring: false }, { generation: 2, createdAt: 1, publishedAt: 1, retiring: false }]), now)).toBe(record);
    expect(progressed(record, local([{ generation: 1, createdAt: 0, publishedAt: 0, retiring: true }, { generation: 2, createdAt: 1, publishedAt: 1, retiring: false }]), now)).toEqual({ ...record, state: 'Done', completedAt: '2026-12-02T00:01:00Z' });
    const done = { ...record, state: 'Done' as const, completedAt: 'x' };
    expect(progressed(done, local([]), now)).toBe(done);
  });

  it('counts a peer ready only when both directions are used and acked', () => {
    const a = ad('a', {
      inbound: [{ from: 'b', family: 'inet', fromGeneration: 1, fromBootId: 'b-boot', generation: 1, spi: 0x100 }],
      outbound: [{ to: 'b', family: 'inet', generation: 1, toGeneration: 1, toBootId: 'b-boot', spi: 0x200 }],
    });
    const b = ad('b', {
      inbound: [{ from: 'a', family: 'inet', fromGeneration: 1, fromBootId: 'a-boot', generation: 1, spi: 0x200 }],
      outbound: [{ to: 'a', family: 'inet', generation: 1, toGeneration: 1, toBootId: 'a-boot', spi: 0x100 }],
    });
    expect(readyPeers(a, new Map([['b', b]]), new Set(['a', 'b']))).toBe(1);
    expect(readyPeers(a, new Map([['b', { ...b, outbound: [] }]]), new Set(['a', 'b']))).toBe(0);
    expect(readyPeers(a, new Map([['b', { ...b, inbound: [] }]]), new Set(['a', 'b']))).toBe(0);
    expect(readyPeers(a, new Map([['b', { ...b, bootId: 'b-boot-2' }]]), new Set(['a', 'b']))).toBe(0);
    expect(readyPeers(a, new Map([['b', b]]), new Set(['a']))).toBe(0);
  });

  it('asks for a rotation only while none is under way', () => {
    const base = { mesh: { name: 'm', uid: UID }, advertisement: ad('a'), expectedPeers: 2, readyPeers: 2 };
    expect(meshReport({ ...base, rotation: undefined, rotationWanted: true }).rotationWanted).toBe('SoftLimit');
    expect(meshReport({ ...base, rotation: record, rotationWanted: true }).rotationWanted).toBeUndefined();
    expect(meshReport({ ...base, rotation: { ...record, state: 'Done' }, rotationWanted: true }).rotationWanted).toBe('SoftLimit');
    expect(meshReport({ ...base, rotation: undefined, rotationWanted: false })).toEqual({ mesh: 'm', uid: UID, advertisement: ad('a'), expectedPeers: 2, readyPeers: 2 });
  });

  it('reads a report that lost its empty lists', () => {
    const bare = { mesh: 'm', uid: UID, expectedPeers: 0, readyPeers: 0, advertisement: { node: 'a', bootId: 'x', addresses: {} } } as unknown as NodeMeshReport;
    expect(normalizeMeshReport(bare).advertisement).toEqual(emptyAdvertisement('a', 'x'));
  });
});

describe('which cache events wake the mesh work', () => {
  it('mesh spec, deletion and rotation requests; not the rest of its status', () => {
    const before = mesh();
    expect(meshInputsChanged(before, { ...before, status: { conditions: [] } as never })).toBe(false);
    expect(meshInputsChanged(before, { ...before, metadata: { ...before.metadata, generation: 2 } })).toBe(true);
    expect(meshInputsChanged(before, { ...before, metadata: { ...before.metadata, deletionTimestamp: '2026-12-02T00:00:00Z' } })).toBe(true);
    expect(meshInputsChanged(before, mesh({}, { rotationRequests: [{ node: 'a', requestId: '1-a', reason: 'Manual', requestedAt: 'x' }] }))).toBe(true);
  });

  it('Node labels, addresses and pod CIDRs; not its heartbeats', () => {
    const before = node('a', { mesh: 'on' }, [['InternalIP', '192.0.2.1']]);
    expect(meshNodeChanged(before, { ...before, status: { ...before.status, conditions: [{ type: 'Ready', status: 'True' }] } })).toBe(false);
    expect(meshNodeChanged(before, node('a', {}, [['InternalIP', '192.0.2.1']]))).toBe(true);
    expect(meshNodeChanged(before, node('a', { mesh: 'on' }, [['InternalIP', '192.0.2.7']]))).toBe(true);
    expect(meshNodeChanged(before, node('a', { mesh: 'on' }, [['InternalIP', '192.0.2.1']], ['10.0.0.0/24']))).toBe(true);
  });

  it("an IpsecNodeState's meshes; not its other fields", () => {
    const before = state('b', { advertisement: ad('b') });
    expect(nodeStateMeshesChanged(before, { ...before, status: { ...before.status, lastAttemptTime: 'later' } })).toBe(false);
    expect(nodeStateMeshesChanged(before, state('b', { advertisement: ad('b', { leaving: true }) }))).toBe(true);
  });
});
