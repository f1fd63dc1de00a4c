import { describe, expect, it } from 'vitest';

import { advertise, decide, startRotation, type RotationInput } from '../../src/mesh/rotation.js';
import { EMPTY_LOCAL_STATE, type MeshAdvertisement, type MeshLocalState } from '../../src/mesh/types.js';
import { actions, clone, explore, fingerprint, initialWorld, settle, unsettled, violations, type Budget, type World } from '../support/mesh-model.js';

const A = { name: 'a', address: '10.0.0.1' };
const B = { name: 'b', address: '10.0.0.2' };
const C = { name: 'c', address: '10.0.0.3' };

function exhaustively(nodes: (typeof A)[], budget: Budget, from: 'scratch' | 'steady' = 'steady') {
  const world = initialWorld(nodes, budget);
  const result = explore(from === 'steady' ? settle(world) : world);
  expect(result.violation, result.violation ? `${result.violation.message}\n  after: ${result.violation.trace.join(' → ')}` : '').toBeUndefined();
  expect(result.unsettledTerminal, result.unsettledTerminal ? `${result.unsettledTerminal.problems.join('; ')}\n  after: ${result.unsettledTerminal.trace.join(' → ')}` : '').toBeUndefined();
  expect(result.terminal).toBeGreaterThan(0);
  return result;
}

/** A seeded walk through random interleavings until nothing changes; returns the steps taken. */
function randomWalk(start: World, seed: number): number {
  let state = seed >>> 0 || 1;
  const random = (n: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  let world = start;
  const trace: string[] = [];
  for (let step = 0; step < 5000; step++) {
    const options = actions(world);
    const print = fingerprint(world);
    const moving = options
      .map((action) => {
        const copy = clone(world);
        const problem = action.apply(copy) ?? violations(copy)[0];
        return { action, copy, problem };
      })
      .filter(({ copy }) => fingerprint(copy) !== print);
    if (moving.length === 0) {
      expect(unsettled(world), `seed ${seed}: ${trace.join(' → ')}`).toEqual([]);
      return step;
    }
    const pick = moving[random(moving.length)]!;
    trace.push(pick.action.name);
    expect(pick.problem, `seed ${seed}: ${pick.problem}\n  after: ${trace.join(' → ')}`).toBeUndefined();
    world = pick.copy;
  }
  throw new Error(`seed ${seed}: no end after 5000 steps`);
}

describe('mesh rotation over every interleaving (model checked)', () => {
  // Every step an agent or the API server can take, in every order: converge, publish, deliver
  // one node's advertisement to one other node, start a rotation, packets in flight arrive,
  // reboot, join, leave. At every step: nobody sends on an SA its receiver does not hold, no
  // packet in flight finds its SA gone, no SPI names two keys, no outbound SA is made twice.
  it('2 nodes: the mesh forms from nothing', () => {
    exhaustively([A, B], {}, 'scratch');
  });

  it('2 nodes: one rotates', () => {
    exhaustively([A, B], { rotations: { a: 1 } });
  });

  it('2 nodes: both rotate, overlapping in every way', () => {
    exhaustively([A, B], { rotations: { a: 1, b: 1 } });
  }, 600_000);

  it('2 nodes: one rotates twice in a row', () => {
    exhaustively([A, B], { rotations: { a: 2 } });
  }, 600_000);

  it('2 nodes: the peer reboots (new boot id) at any point of a rotation', () => {
    exhaustively([A, B], { rotations: { a: 1 }, reboots: { b: 1 } });
  }, 600_000);

  // The churn test's step: the agent comes back with another --boot-id and the kernel kept its
  // SAs. The node keeps sending on its kept outbound SAs (keys of the old boot id) until each
  // peer acks one for the new boot id: no clear-text gap, no key installed twice.
  it('2 nodes: an agent restarts with a new boot id (the kernel keeps its SAs)', () => {
    exhaustively([A, B], { restarts: { b: 1 } });
  });

  it('2 nodes: the peer restarts with a new boot id, the kernel kept, at any point of a rotation', () => {
    exhaustively([A, B], { rotations: { a: 1 }, restarts: { b: 1 } });
  }, 600_000);

  it('2 nodes: the rotating node restarts with a new boot id, the kernel kept, at any point of its rotation', () => {
    exhaustively([A, B], { rotations: { a: 1 }, restarts: { a: 1 } });
  }, 600_000);

  it('2 nodes: a restart with a new boot id (kernel kept) and then or before a reboot (kernel empty)', () => {
    exhaustively([A, B], { restarts: { b: 1 }, reboots: { b: 1 } });
  }, 600_000);

  it('2 nodes: both restart with new boot ids, the kernels kept', () => {
    exhaustively([A, B], { restarts: { a: 1, b: 1 } });
  }, 600_000);

  it('3 nodes: a node restarts with a new boot id, the kernel kept', () => {
    exhaustively([A, B, C], { restarts: { b: 1 }, granularity: 'passes' });
  }, 600_000);

  it('3 nodes: the mesh forms as a third node joins a settled pair', () => {
    exhaustively([A, B, C], { joins: ['c'], granularity: 'passes' });
  }, 600_000);

  it('3 nodes: one rotates', () => {
    const result = exhaustively([A, B, C], { rotations: { a: 1 }, granularity: 'passes' });
    expect(result.states).toBeGreaterThan(1000);
  }, 600_000);

  // A node leaving (two-phase) at any point of another node's rotation: the exhaustive search
  // of this space did not finish within ten minutes on this 2-core machine, so it is sampled by
  // seeded walks, every step checked, like the overlapping rotations below.
  it('3 nodes: a node leaves at any point of another node\'s rotation (seeded walks)', () => {
    const start = settle(initialWorld([A, B, C], { rotations: { a: 1 }, leaves: ['c'], granularity: 'passes' }));
    for (let seed = 1; seed <= 200; seed++) randomWalk(start, seed * 104_729);
  }, 600_000);
});

describe('mesh rotation over random interleavings (3 nodes, overlapping rotations, churn)', () => {
  // The full state space of overlapping rotations of 3 nodes is beyond a unit test (more than
  // 400 000 worlds); these walks sample it with fixed seeds, every step checked.
  const scenarios: [string, Budget][] = [
    ['two nodes rotate at once', { rotations: { a: 1, b: 1 } }],
    ['all three rotate at once', { rotations: { a: 1, b: 1, c: 1 } }],
    ['rotations, a reboot and a leave', { rotations: { a: 1, b: 1 }, reboots: { c: 1 }, leaves: ['b'] }],
    ['rotations and restarts with new boot ids (kernels kept)', { rotations: { a: 1, c: 1 }, restarts: { b: 1, c: 1 } }],
    ['a rotation, a restart with a new boot id, a reboot and a leave', { rotations: { a: 1 }, restarts: { b: 1 }, reboots: { b: 1 }, leaves: ['c'] }],
  ];
  it.each(scenarios)('%s', (_name, budget) => {
    const start = settle(initialWorld([A, B, C], budget));
    for (let seed = 1; seed <= 60; seed++) randomWalk(start, seed * 7919);
  }, 600_000);
});

describe('mesh rotation rules, step by step', () => {
  const self = { node: 'a', bootId: 'boot-a', addresses: { inet: '10.0.0.1' }, podCIDRs: [] };
  const peerAd = (overrides: Partial<MeshAdvertisement> = {}): MeshAdvertisement => ({
    node: 'b',
    bootId: 'boot-b',
    addresses: { inet: '10.0.0.2' },
    podCIDRs: [],
    generations: [{ generation: 1, publicKey: 'b#1' }],
    inbound: [],
    outbound: [],
    peers: [],
    leaving: false,
    ...overrides,
  });
  const inputFor = (local: MeshLocalState, overrides: Partial<RotationInput> = {}): RotationInput => ({
    meshUid: 'uid',
    self,
    local,
    peers: new Map([['b', peerAd()]]),
    previous: undefined,
    installed: { inbound: new Set(), outbound: new Map() },
    idle: () => true,
    publicKeyOf: (g) => `a#${g}`,
    now: 1000,
    backstopMs: 3_600_000,
    ...overrides,
  });
  const fresh = (): MeshLocalState => {
    const started = startRotation(EMPTY_LOCAL_STATE, 0);
    if (!started.ok) throw new Error(started.reason);
    return started.local;
  };

  it('publishes a new generation only once the kernel holds its inbound SAs from every peer', () => {
    const decision = decide(inputFor(fresh()));
    expect(decision.inbound).toHaveLength(1);
    expect(decision.outbound).toEqual([]); // b has not acked anything
    const notYet = advertise(inputFor(decision.local));
    expect(notYet.advertisement.generations).toEqual([]);
    expect(notYet.advertisement.inbound).toEqual([]);
    const installed = { inbound: new Set([decision.inbound[0]!.spi]), outbound: new Map<string, number>() };
    const published = advertise(inputFor(decision.local, { installed }));
    expect(published.advertisement.generations).toEqual([{ generation: 1, publicKey: 'a#1' }]);
    expect(published.advertisement.inbound).toEqual([{ from: 'b', family: 'inet', fromGeneration: 1, fromBootId: 'boot-b', generation: 1, spi: decision.inbound[0]!.spi }]);
    expect(published.local.generations[0]!.publishedAt).toBe(1000);
  });

  it('sends only on what the receiver acked, for this boot', () => {
    const local = { ...fresh(), generations: [{ generation: 1, createdAt: 0, publishedAt: 1, retiring: false }] };
    const ack = { from: 'a', family: 'inet' as const, fromGeneration: 1, fromBootId: 'boot-a', generation: 1, spi: 0x1234 };
    expect(decide(inputFor(local, { peers: new Map([['b', peerAd({ inbound: [ack] })]]) })).outbound).toMatchObject([{ to: 'b', spi: 0x1234, generation: 1, toGeneration: 1 }]);
    // An ack for an earlier boot of ours (we rebooted since) names keys we no longer derive.
    expect(decide(inputFor(local, { peers: new Map([['b', peerAd({ inbound: [{ ...ack, fromBootId: 'boot-a-old' }] })]]) })).outbound).toEqual([]);
  });

  it('after its own boot id changed, keeps sending on the outbound SA the kernel holds until the receiver acks one for the new boot id', () => {
    const local: MeshLocalState = {
      ...fresh(),
      generations: [{ generation: 1, createdAt: 0, publishedAt: 1, retiring: false }],
      sending: [{ to: 'b', family: 'inet', generation: 1, toGeneration: 1, toBootId: 'boot-b', spi: 0x1234, fromBootId: 'boot-a-old', toPublicKey: 'b#1' }],
    };
    const oldAck = { from: 'a', family: 'inet' as const, fromGeneration: 1, fromBootId: 'boot-a-old', generation: 1, spi: 0x1234 };
    const installed = { inbound: new Set<number>(), outbound: new Map([['b|inet', 0x1234]]) };
    const peers = new Map([['b', peerAd({ inbound: [oldAck] })]]);
    const kept = decide(inputFor(local, { installed, peers }));
    expect(kept.outbound).toEqual([{ to: 'b', family: 'inet', generation: 1, toGeneration: 1, toBootId: 'boot-b', spi: 0x1234, fromBootId: 'boot-a-old', toPublicKey: 'b#1' }]);
    expect(kept.local.sending).toEqual(local.sending);
    // Published with the boot id its key was derived with: the receiver keeps its end while it is used.
    expect(advertise(inputFor(kept.local, { installed, peers })).advertisement.outbound).toEqual([{ to: 'b', family: 'inet', generation: 1, toGeneration: 1, toBootId: 'boot-b', spi: 0x1234, fromBootId: 'boot-a-old' }]);
    // The receiver acks the SA for the new boot id: one switch to it.
    const newAck = { ...oldAck, fromBootId: 'boot-a', spi: 0x5678 };
    const switched = decide(inputFor(local, { installed, peers: new Map([['b', peerAd({ inbound: [newAck] })]]) }));
    expect(switched.outbound).toMatchObject([{ to: 'b', spi: 0x5678 }]);
    expect(switched.outbound[0]!.fromBootId).toBeUndefined();
    // The old SA's record stays while the kernel still pins it (the next pass removes it).
    expect(switched.local.sending?.map((r) => r.spi)).toEqual([0x1234, 0x5678]);
  });

  it('keeps nothing the kernel does not hold: after a real reboot (kernel empty) it waits for acks of new keys', () => {
    const local: MeshLocalState = {
      ...fresh(),
      generations: [{ generation: 1, createdAt: 0, publishedAt: 1, retiring: false }],
      sending: [{ to: 'b', family: 'inet', generation: 1, toGeneration: 1, toBootId: 'boot-b', spi: 0x1234, fromBootId: 'boot-a-old', toPublicKey: 'b#1' }],
    };
    const oldAck = { from: 'a', family: 'inet' as const, fromGeneration: 1, fromBootId: 'boot-a-old', generation: 1, spi: 0x1234 };
    const decision = decide(inputFor(local, { peers: new Map([['b', peerAd({ inbound: [oldAck] })]]) }));
    expect(decision.outbound).toEqual([]);
    expect(decision.local.sending).toEqual([]);
    // Nor an SA derived with the current boot id whose ack went away: rule 3 alone decides those.
    const current: MeshLocalState = { ...local, sending: [{ ...local.sending![0]!, fromBootId: 'boot-a' }] };
    const installed = { inbound: new Set<number>(), outbound: new Map([['b|inet', 0x1234]]) };
    expect(decide(inputFor(current, { installed })).outbound).toEqual([]);
  });

  it('after its own boot id changed, keeps an inbound SA of the old boot id while the sender may still switch to it or sends on it', () => {
    const allocation = { from: 'b', family: 'inet' as const, fromAddress: '10.0.0.2', fromGeneration: 1, fromBootId: 'boot-b', fromPublicKey: 'b#1', generation: 1, bootId: 'boot-a-old', spi: 0x4242 };
    const local: MeshLocalState = { ...fresh(), generations: [{ generation: 1, createdAt: 0, publishedAt: 1, retiring: false }], allocations: [allocation] };
    const installed = { inbound: new Set([0x4242]), outbound: new Map<string, number>() };
    const spis = (peer: MeshAdvertisement) => decide(inputFor(local, { installed, peers: new Map([['b', peer]]) })).inbound.map((a) => a.spi);
    // b has not seen a's new boot id: it may still switch to 0x4242 on the ack a published before.
    expect(spis(peerAd({ peers: [{ node: 'a', bootId: 'boot-a-old' }] }))).toContain(0x4242);
    // b lists a's new boot id and does not send on it: it goes.
    expect(spis(peerAd({ peers: [{ node: 'a', bootId: 'boot-a' }] }))).not.toContain(0x4242);
    // b sends on it (the use names the boot ids it was derived with): it stays, and the inbound policy stays required.
    const use = { to: 'a', family: 'inet' as const, generation: 1, toGeneration: 1, toBootId: 'boot-a-old', spi: 0x4242 };
    const busy = peerAd({ peers: [{ node: 'a', bootId: 'boot-a' }], outbound: [use] });
    expect(spis(busy)).toContain(0x4242);
    expect(decide(inputFor(local, { installed, peers: new Map([['b', busy]]) })).peerEncrypts.has('b|inet')).toBe(true);
  });

  it('refuses to start a rotation while one is unpublished or two generations are live', () => {
    const pending = fresh();
    expect(startRotation(pending, 5)).toEqual({ ok: false, reason: 'generation 1 is not published yet' });
    const two = { ...pending, generations: [{ generation: 1, createdAt: 0, publishedAt: 1, retiring: false }, { generation: 2, createdAt: 2, publishedAt: 3, retiring: false }] };
    expect(startRotation(two, 5)).toMatchObject({ ok: false, reason: expect.stringMatching(/generations 1, 2 are still in use/) });
  });

  it('retires an old generation on the backstop alone when a peer never answers, and only then', () => {
    const local: MeshLocalState = {
      ...EMPTY_LOCAL_STATE,
      generations: [
        { generation: 1, createdAt: 0, publishedAt: 1, retiring: false },
        { generation: 2, createdAt: 10, publishedAt: 100, retiring: false },
      ],
    };
    const before = decide(inputFor(local, { now: 100 + 3_599_999 }));
    expect(before.local.generations.map((g) => g.retiring)).toEqual([false, false]);
    const after = decide(inputFor(local, { now: 100 + 3_600_000 }));
    expect(after.local.generations.map((g) => g.generation)).toEqual([2]); // retired and, with no SA left, forgotten
  });

  it('keeps an unwanted inbound SA while its sender uses it or it is not idle; releases its SPI into quarantine after', () => {
    const local: MeshLocalState = {
      generations: [{ generation: 1, createdAt: 0, publishedAt: 1, retiring: false }],
      allocations: [{ from: 'b', family: 'inet', fromAddress: '10.0.0.2', fromGeneration: 1, fromBootId: 'boot-b-old', fromPublicKey: 'b#1', generation: 1, bootId: 'boot-a', spi: 0x4242 }],
      releasedSpis: [],
    };
    const installed = { inbound: new Set([0x4242]), outbound: new Map<string, number>() };
    const busy = decide(inputFor(local, { installed, idle: () => false }));
    expect(busy.inbound.map((a) => a.spi)).toContain(0x4242);
    expect(busy.local.allocations.find((a) => a.spi === 0x4242)?.unwantedSince).toBe(1000);
    const quiet = decide(inputFor(busy.local, { installed, idle: () => true, now: 2000 }));
    expect(quiet.inbound.map((a) => a.spi)).not.toContain(0x4242);
    expect(quiet.local.releasedSpis).toContain(0x4242);
  });
});
