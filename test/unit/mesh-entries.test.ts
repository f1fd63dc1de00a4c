import { describe, expect, it } from 'vitest';

import { buildMeshEntries, ENCRYPTING_PRIORITY, EXEMPTION_PRIORITY, GUARD_PRIORITY, meshReqid, type MeshEntriesSpec, type MeshKeys } from '../../src/mesh/entries.js';
import { advertise, decide, startRotation, type MeshSelf, type RotationInput } from '../../src/mesh/rotation.js';
import { EMPTY_LOCAL_STATE, type MeshAdvertisement, type MeshLocalState } from '../../src/mesh/types.js';
import { generateX25519KeyPair, type X25519KeyPair } from '../../src/mesh/x25519.js';
import type { SecurityAssociation } from '../../src/xfrm/types.js';
import { policyKey } from '../../src/plan/identity.js';
import { plan } from '../../src/plan/planner.js';
import { MemoryOwnership } from '../support/ownership.js';

const mesh = { name: 'cluster', uid: '2f6c1e9a-aaaa-4bbb-8ccc-dddddddddddd' };
const spec: MeshEntriesSpec = { mesh, aead: 'rfc4106-gcm-aes256', mode: 'transport', esn: true, replayWindow: 128, failClosed: false, exemptions: [] };

interface Member {
  self: MeshSelf;
  pair: X25519KeyPair;
  local: MeshLocalState;
  installed: { inbound: Set<number>; outbound: Map<string, number> };
  ad?: MeshAdvertisement;
}

function member(node: string, address: string, podCIDRs: string[] = []): Member {
  const started = startRotation(EMPTY_LOCAL_STATE, 0);
  if (!started.ok) throw new Error(started.reason);
  return { self: { node, bootId: `boot-${node}`, addresses: { inet: address }, podCIDRs }, pair: generateX25519KeyPair(), local: started.local, installed: { inbound: new Set(), outbound: new Map() } };
}

const keysOf = (m: Member): MeshKeys => ({ privateKey: () => m.pair.privateKey, publicKey: () => m.pair.publicKey });

function input(m: Member, all: Member[]): RotationInput {
  const peers = new Map(all.filter((o) => o !== m && o.ad).map((o) => [o.self.node, o.ad!]));
  return {
    meshUid: mesh.uid,
    self: m.self,
    local: m.local,
    peers,
    previous: m.ad,
    installed: m.installed,
    idle: () => true,
    publicKeyOf: () => m.pair.publicKey.toString('base64'),
    now: 0,
    backstopMs: 3_600_000,
  };
}

/** Runs agent passes (decide, "apply" = mark as installed, publish) until the two converge. */
function converge(members: Member[], entrySpec = spec) {
  let tables = new Map<string, ReturnType<typeof buildMeshEntries>>();
  for (let round = 0; round < 6; round++) {
    tables = new Map();
    for (const m of members) {
      const decision = decide(input(m, members));
      m.local = decision.local;
      m.installed = {
        inbound: new Set(decision.inbound.map((a) => a.spi)),
        outbound: new Map(decision.outbound.map((o) => [`${o.to}|${o.family}`, o.spi])),
      };
      const peers = new Map(members.filter((o) => o !== m && o.ad).map((o) => [o.self.node, o.ad!]));
      tables.set(m.self.node, buildMeshEntries(entrySpec, m.self, peers, decision, keysOf(m)));
      const published = advertise(input(m, members));
      m.local = published.local;
      m.ad = published.advertisement;
    }
  }
  return tables;
}

const saTo = (states: readonly { readonly entry: SecurityAssociation }[], destination: string) => states.map((s) => s.entry).filter((sa) => sa.id.destination === destination);

describe('mesh kernel entries', () => {
  it('gives both ends of every direction the same key and SPI, and each direction its own', () => {
    const [a, b] = [member('a', '10.0.0.1'), member('b', '10.0.0.2')];
    const tables = converge([a, b]);
    const ta = tables.get('a')!;
    const tb = tables.get('b')!;
    const aToB = saTo(ta.states, '10.0.0.2')[0]!;
    const bFromA = saTo(tb.states, '10.0.0.2')[0]!;
    expect(aToB.id.spi).toBe(bFromA.id.spi);
    expect(aToB.algorithms.kind === 'aead' && bFromA.algorithms.kind === 'aead' && aToB.algorithms.aead.key.equals(bFromA.algorithms.aead.key)).toBe(true);
    const bToA = saTo(tb.states, '10.0.0.1')[0]!;
    expect(aToB.algorithms.kind === 'aead' && bToA.algorithms.kind === 'aead' && aToB.algorithms.aead.key.equals(bToA.algorithms.aead.key)).toBe(false);
    expect(aToB).toMatchObject({
      source: '10.0.0.1',
      mode: 'transport',
      reqid: meshReqid(mesh.uid),
      flags: ['esn'],
      replay: { window: 128, useEsnAttribute: true },
      algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', icvBits: 128 } },
    });
    expect(aToB.algorithms.kind === 'aead' && aToB.algorithms.aead.key.byteLength).toBe(36);
    expect(JSON.stringify(ta, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))).not.toContain(aToB.algorithms.kind === 'aead' ? aToB.algorithms.aead.key.reveal().toString('hex') : 'x');
  });

  it('keeps the key of an inbound SA across its own boot id change: an SPI never gets a second key', () => {
    const [a, b] = [member('a', '10.0.0.1'), member('b', '10.0.0.2')];
    const before = converge([a, b]).get('b')!;
    const keyOf = (sa: SecurityAssociation) => (sa.algorithms.kind === 'aead' ? sa.algorithms.aead.key.reveal().toString('hex') : '');
    const inboundBefore = new Map(saTo(before.states, '10.0.0.2').map((sa) => [sa.id.spi, keyOf(sa)]));
    expect(inboundBefore.size).toBe(1);
    // b comes back with another boot id (its kernel, here, still holding the old SAs): a keeps
    // sending on the SA b allocated under the old boot id until it has switched, so b keeps that
    // SA while it carries packets, and with the key a derived for it (bound to the old boot id).
    b.self = { ...b.self, bootId: 'boot-b-2' };
    const decision = decide({ ...input(b, [a, b]), idle: () => false });
    const after = buildMeshEntries(spec, b.self, new Map([['a', a.ad!]]), decision, keysOf(b));
    const kept = saTo(after.states, '10.0.0.2').filter((sa) => inboundBefore.has(sa.id.spi));
    expect(kept).toHaveLength(1);
    for (const sa of kept) expect(keyOf(sa) === inboundBefore.get(sa.id.spi), `SPI ${sa.id.spi} kept its key`).toBe(true);
  });

  it('keeps sending on its outbound SA, with its key, across its own boot id change until the peer acks an SA for the new boot id', () => {
    const [a, b] = [member('a', '10.0.0.1'), member('b', '10.0.0.2')];
    const before = converge([a, b]).get('b')!;
    const keyOf = (sa: SecurityAssociation) => (sa.algorithms.kind === 'aead' ? sa.algorithms.aead.key.reveal().toString('hex') : '');
    const [outBefore] = saTo(before.states, '10.0.0.1');
    // b's agent comes back with another boot id, its kernel still holding the SAs; a has not seen it yet.
    b.self = { ...b.self, bootId: 'boot-b-2' };
    const decision = decide({ ...input(b, [a, b]), idle: () => false });
    expect(decision.outbound).toMatchObject([{ to: 'a', spi: outBefore!.id.spi, fromBootId: 'boot-b' }]);
    const kept = buildMeshEntries(spec, b.self, new Map([['a', a.ad!]]), decision, keysOf(b));
    const [outKept] = saTo(kept.states, '10.0.0.1');
    expect(outKept!.id.spi).toBe(outBefore!.id.spi);
    expect(keyOf(outKept!) === keyOf(outBefore!), 'the kept SA keeps the key the kernel holds').toBe(true);
    expect(kept.policies.filter((p) => p.entry.id.direction === 'out').map((p) => p.entry.templates[0]!.spi)).toEqual([outBefore!.id.spi]);
    // Once a acks the SA for b's new boot id, b switches: a new SPI and a new key, the old SA goes.
    const after = converge([a, b]);
    const outAfter = saTo(after.get('b')!.states, '10.0.0.1');
    expect(outAfter).toHaveLength(1);
    expect(outAfter[0]!.id.spi).not.toBe(outBefore!.id.spi);
    expect(keyOf(outAfter[0]!) === keyOf(outBefore!)).toBe(false);
    const aFromB = saTo(after.get('a')!.states, '10.0.0.1').find((sa) => sa.id.spi === outAfter[0]!.id.spi)!;
    expect(keyOf(aFromB) === keyOf(outAfter[0]!), "a's inbound SA has b's new key").toBe(true);
    expect(b.ad!.outbound).toMatchObject([{ to: 'a', spi: outAfter[0]!.id.spi }]);
    expect(b.ad!.outbound[0]!.fromBootId).toBeUndefined();
  });

  it('pins the outbound SPI in the out policy and accepts any mesh SPI inbound, required once the peer encrypts', () => {
    const [a, b] = [member('a', '10.0.0.1'), member('b', '10.0.0.2')];
    const ta = converge([a, b]).get('a')!;
    const out = ta.policies.find((p) => p.entry.id.direction === 'out')!.entry;
    const spi = saTo(ta.states, '10.0.0.2')[0]!.id.spi;
    expect(out.priority).toBe(ENCRYPTING_PRIORITY);
    expect(out.id.selector).toMatchObject({ source: { address: '10.0.0.1', prefixLength: 32 }, destination: { address: '10.0.0.2', prefixLength: 32 } });
    expect(out.templates).toMatchObject([{ protocol: 'esp', spi, reqid: meshReqid(mesh.uid), mode: 'transport', level: 'required' }]);
    const inbound = ta.policies.find((p) => p.entry.id.direction === 'in')!.entry;
    expect(inbound.templates).toMatchObject([{ protocol: 'esp', spi: 0, reqid: meshReqid(mesh.uid), level: 'required' }]);
    expect(ta.policies.filter((p) => p.entry.action === 'block')).toEqual([]);
  });

  it('before the peer encrypts, the inbound policy still lets clear text in (unless failClosed)', () => {
    const [a, b] = [member('a', '10.0.0.1'), member('b', '10.0.0.2')];
    // One pass of a alone: b's advertisement is known, nothing is acked yet.
    b.ad = { node: 'b', bootId: 'boot-b', addresses: { inet: '10.0.0.2' }, podCIDRs: [], generations: [{ generation: 1, publicKey: b.pair.publicKey.toString('base64') }], inbound: [], outbound: [], peers: [], leaving: false };
    const decision = decide(input(a, [a, b]));
    const open = buildMeshEntries(spec, a.self, new Map([['b', b.ad]]), decision, keysOf(a));
    expect(open.policies.map((p) => p.entry.id.direction)).toEqual(['in']);
    expect(open.policies[0]!.entry.templates[0]!.level).toBe('use');
    const closed = buildMeshEntries({ ...spec, failClosed: true }, a.self, new Map([['b', b.ad]]), decision, keysOf(a));
    expect(closed.policies.find((p) => p.entry.id.direction === 'in' && p.entry.action === 'allow')!.entry.templates[0]!.level).toBe('required');
    expect(closed.policies.filter((p) => p.entry.action === 'block').map((p) => [p.entry.id.direction, p.entry.priority])).toEqual([['out', GUARD_PRIORITY]]);
  });

  it('with failClosed, guards in the place of the encrypting out policy, never beside it: the kernel names a policy without its priority', () => {
    // On the kernel a block policy with the encrypting policy's selector is the same policy
    // (NEWPOLICY gives EEXIST; the planner reports both as one identity asked for twice).
    const closedSpec = { ...spec, failClosed: true };
    const [a, b] = [member('a', '10.0.0.1'), member('b', '10.0.0.2')];
    b.ad = { node: 'b', bootId: 'boot-b', addresses: { inet: '10.0.0.2' }, podCIDRs: [], generations: [{ generation: 1, publicKey: b.pair.publicKey.toString('base64') }], inbound: [], outbound: [], peers: [], leaving: false };
    const before = buildMeshEntries(closedSpec, a.self, new Map([['b', b.ad]]), decide(input(a, [a, b])), keysOf(a));
    const keyed = converge([a, b], closedSpec).get('a')!;
    for (const [when, tables] of [['before b acks an SA', before], ['keyed', keyed]] as const) {
      const keys = tables.policies.map((p) => policyKey(p.entry.id));
      expect(new Set(keys).size, `${when}: one policy per kernel identity`).toBe(keys.length);
      expect(plan({ desired: tables, observed: { states: [], policies: [] }, ownership: new MemoryOwnership() }).conflicts, when).toEqual([]);
    }
    // The out slot of the link: blocked until the SA exists, then encrypting, by one update.
    const outOf = (tables: typeof keyed) => tables.policies.filter((p) => p.entry.id.direction === 'out').map((p) => p.entry);
    const [guard] = outOf(before);
    const [encrypting] = outOf(keyed);
    expect(guard).toMatchObject({ action: 'block', priority: GUARD_PRIORITY, templates: [] });
    expect(encrypting).toMatchObject({ action: 'allow', priority: ENCRYPTING_PRIORITY, templates: [{ protocol: 'esp', level: 'required' }] });
    expect(policyKey(encrypting!.id)).toBe(policyKey(guard!.id));
    expect(keyed.policies.filter((p) => p.entry.action === 'block')).toEqual([]);
    expect(keyed.policies.find((p) => p.entry.id.direction === 'in')!.entry.templates[0]!.level).toBe('required');
  });

  it('exempts protocols and ports in both directions at a better priority', () => {
    const [a, b] = [member('a', '10.0.0.1'), member('b', '10.0.0.2')];
    const ta = converge([a, b], { ...spec, exemptions: [{ protocol: 6, port: 179 }, { protocol: 1 }] }).get('a')!;
    const exempt = ta.policies.filter((p) => p.entry.priority === EXEMPTION_PRIORITY).map((p) => p.entry);
    expect(exempt.every((p) => p.templates.length === 0 && p.action === 'allow')).toBe(true);
    expect(exempt.map((p) => `${p.id.direction} ${p.id.selector.protocol} ${p.id.selector.sourcePort}->${p.id.selector.destinationPort}`).sort()).toEqual(
      ['in 1 0->0', 'in 6 0->179', 'in 6 179->0', 'out 1 0->0', 'out 6 0->179', 'out 6 179->0'].sort(),
    );
  });

  it('in tunnel mode protects pod CIDR to pod CIDR with in and fwd policies and tunnel templates', () => {
    const [a, b] = [member('a', '10.0.0.1', ['10.244.1.0/24']), member('b', '10.0.0.2', ['10.244.2.0/24'])];
    const ta = converge([a, b], { ...spec, mode: 'tunnel' }).get('a')!;
    const byDirection = Object.fromEntries(ta.policies.map((p) => [p.entry.id.direction, p.entry]));
    expect(byDirection['out']!.id.selector).toMatchObject({ source: { address: '10.244.1.0', prefixLength: 24 }, destination: { address: '10.244.2.0', prefixLength: 24 } });
    expect(byDirection['out']!.templates[0]).toMatchObject({ mode: 'tunnel', source: '10.0.0.1', destination: '10.0.0.2' });
    expect(byDirection['fwd']!.id.selector).toMatchObject({ source: { address: '10.244.2.0' }, destination: { address: '10.244.1.0' } });
    expect(byDirection['in']!.templates[0]).toMatchObject({ mode: 'tunnel', source: '10.0.0.2', destination: '10.0.0.1' });
    expect(ta.states.every((s) => s.entry.mode === 'tunnel')).toBe(true);
  });
});
