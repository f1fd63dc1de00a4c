/**
 * The mesh's rotation state machine, pure: the advertisements of the peers, this node's local
 * state and what its kernel holds in; the SAs this node must have, what it sends on, what it
 * keeps or releases, and what it may publish out. No clock (the time is an input), no I/O, no
 * keys: ../mesh/entries.ts turns a decision into kernel entries.
 *
 * The rules, each gated on what the other side has published (the peers' lessons: timers
 * alone removed keys a slow peer still used, and advertising before the kernel had the SAs
 * caused drops):
 *
 * 1. Inbound first. A node wants the inbound SA from every peer at every generation the peer
 *    publishes to itself at every generation it holds, including a new, not yet published one.
 * 2. Publish after install. A new generation is published only once the kernel holds its
 *    inbound SAs from every peer generation this node knows of; an ack ("I have the inbound SA
 *    with SPI s") only for an SA the kernel holds.
 * 3. Switch on the receiver's ack. A node sends to a peer on the acked SA with the highest
 *    receiver generation, then the highest own generation. The outbound policy pins the SPI,
 *    so the switch is the one UPDPOLICY that changes it. Because the receiver generation comes
 *    first and acks of a live generation are never withdrawn, a sender never goes back to an
 *    older receiver generation, and never re-creates an outbound SA (same key, counter at 0).
 *    After this node's boot id changed while its kernel kept the SAs (an agent restarted with
 *    another boot id), no ack names the new boot id yet: the node keeps sending on the outbound
 *    SA the kernel holds, its key derived with the previous boot id (published as the use's
 *    `fromBootId`), until the receiver acks an SA for the new boot id, and then switches with
 *    the one UPDPOLICY, as for a rotation. Only an SA the kernel holds (pinned by the policy,
 *    the SA present) is kept, never one installed again: after a real reboot the kernel is
 *    empty, nothing is kept, and the node waits for acks of new keys (an old key installed
 *    again would restart its counter). The key's inputs come from the local state, which
 *    records every outbound SA before it is installed (the last advertisement may lag behind
 *    the kernel). It is kept even when the receiver's boot id changed too: its kernel may
 *    have kept its end as well (a restart), and it acks a new SA as soon as it sees ours.
 * 4. Retire on both sides' word. An own generation older than the newest published one is
 *    retired (no longer published, no new SAs) once this node's published outbound to every
 *    peer uses a newer own generation and every peer's published outbound to this node uses a
 *    newer generation of this node.
 * 5. Remove inbound only when unused. An inbound SA no longer wanted stays while its sender's
 *    published outbound uses it (the use names the SA's SPI and both boot ids it was derived
 *    with, current or not) or it is not idle (the caller measures idleness: no packet
 *    for a grace period), or, when it was allocated under an earlier boot id of this node, while
 *    its sender has not yet listed this node's current boot id (the sender may still switch to
 *    it on an ack this node published before the boot id change: such acks are withdrawn, not
 *    superseded); then its SPI is released into a quarantine. A retiring generation is
 *    forgotten (its private key deleted) when no SA of it is left.
 * 6. Timers are a backstop only: a generation superseded for longer than `backstopMs`, and an
 *    unwanted inbound SA kept for longer than that, go regardless.
 *
 * Churn follows: a joining node is a peer with new generations (rule 1 on both sides), and a
 * boot id change names new SAs on both sides (the boot ids are part of every SA's name and
 * key), while acks naming the old boot id no longer count for a new choice; what the kernel
 * kept carries traffic until both ends have switched (rules 3 and 5). A leaving node does not
 * just vanish (a peer with a stale view could switch to an SA it acked and then removed):
 * 7. Leave in two phases. The leaving node stops acking, accepts clear text inbound, keeps
 *    sending on the SAs it uses (never switching again) and publishes `leaving`. Each peer
 *    then drops the link: it stops sending to it (the leaver accepts clear text already), keeps
 *    the leaver's inbound SAs while the leaver uses them (rule 5), and publishes its peer list
 *    without it. The leaver stops sending to a peer that no longer lists it, and withdraws its
 *    advertisement when no peer lists it and its SAs are gone.
 */
import type { AddressFamily } from '../xfrm/types.js';
import { allocateSpi } from './spi.js';
import type {
  InboundAck,
  InboundAllocation,
  LocalGeneration,
  MeshAdvertisement,
  MeshLocalState,
  OutboundUse,
  PublishedGeneration,
  SendingRecord,
} from './types.js';

export const FAMILIES: readonly AddressFamily[] = ['inet', 'inet6'];
/** How many released SPIs stay in quarantine. */
export const RELEASED_SPI_QUARANTINE = 4096;
/** A node rotates only when no newer generation is pending and at most this many are live. */
export const MAX_LIVE_GENERATIONS = 2;

export interface MeshSelf {
  readonly node: string;
  readonly bootId: string;
  readonly addresses: Readonly<Partial<Record<AddressFamily, string>>>;
  readonly podCIDRs: readonly string[];
}

/** What the kernel holds of this mesh (from a dump, after the last converge). */
export interface InstalledMesh {
  /** SPIs of this mesh's inbound SAs present with the configuration we derive. */
  readonly inbound: ReadonlySet<number>;
  /** Per link (`linkKey(peer, family)`), the SPI the outbound policy's template pins. */
  readonly outbound: ReadonlyMap<string, number>;
}

export interface RotationInput {
  readonly meshUid: string;
  readonly self: MeshSelf;
  readonly local: MeshLocalState;
  /** The latest advertisement of every selected peer (this node excluded). */
  readonly peers: ReadonlyMap<string, MeshAdvertisement>;
  /** What this node published last (undefined before its first publication). */
  readonly previous: MeshAdvertisement | undefined;
  readonly installed: InstalledMesh;
  /** Whether an inbound SA has carried no packet for the grace period. */
  readonly idle: (allocation: InboundAllocation) => boolean;
  /** SPIs other SAs to this node hold (other meshes, other software): never allocated. */
  readonly foreignSpi?: (spi: number) => boolean;
  /** Public key (base64) of an own generation. */
  readonly publicKeyOf: (generation: number) => string;
  readonly now: number;
  readonly backstopMs: number;
  /** This node is leaving the mesh (rule 7). */
  readonly leaving?: boolean;
}

/** An SA to send on: the use this node will publish, plus what entries need. */
export interface OutboundChoice extends OutboundUse {
  readonly toPublicKey: string;
}

export interface MeshDecision {
  /** The next local state: persist it before applying anything. */
  readonly local: MeshLocalState;
  /** The inbound SAs the kernel must hold (wanted and kept). */
  readonly inbound: readonly InboundAllocation[];
  /** One per link whose receiver acked an SA; links without one have no encrypting SA yet. */
  readonly outbound: readonly OutboundChoice[];
  /** Links (`linkKey(peer, family)`) whose peer publishes that it sends to us encrypted. */
  readonly peerEncrypts: ReadonlySet<string>;
  /** Every link with a member peer that has an address in a family this node has. */
  readonly links: readonly { readonly peer: string; readonly family: AddressFamily }[];
  /**
   * Every link that needs policies: the member links, plus links that only drain (a leaving
   * peer's SAs still in use, or ours while we leave). `required`: the inbound policy requires
   * ESP (the peer publishes that it encrypts to us, and nobody on the link is leaving).
   */
  readonly policyLinks: readonly PolicyLink[];
  /** Whether this node may withdraw its advertisement (it left, and nothing of it is left). */
  readonly departed: boolean;
}

export interface PolicyLink {
  readonly peer: string;
  readonly family: AddressFamily;
  readonly peerAddress: string;
  readonly peerPodCIDRs: readonly string[];
  readonly required: boolean;
}

export function linkKey(peer: string, family: AddressFamily): string {
  return `${peer}|${family}`;
}

export type RotationStart = { readonly ok: true; readonly local: MeshLocalState; readonly generation: number } | { readonly ok: false; readonly reason: string };

/** Makes a new generation (pending: not yet published). The caller stores its key pair first. */
export function startRotation(local: MeshLocalState, now: number): RotationStart {
  const live = local.generations.filter((g) => !g.retiring);
  if (live.some((g) => g.publishedAt === undefined)) {
    return { ok: false, reason: `generation ${live.find((g) => g.publishedAt === undefined)!.generation} is not published yet` };
  }
  if (live.length >= MAX_LIVE_GENERATIONS) {
    return { ok: false, reason: `generations ${live.map((g) => g.generation).join(', ')} are still in use (the last rotation has not finished)` };
  }
  const generation = Math.max(0, ...local.generations.map((g) => g.generation)) + 1;
  const next: LocalGeneration = { generation, createdAt: now, retiring: false };
  return { ok: true, generation, local: { ...local, generations: [...local.generations, next] } };
}

/** Rules 1, 3, 4, 5 and 6: what this node's kernel must hold now. */
export function decide(input: RotationInput): MeshDecision {
  const { self, peers } = input;
  const leaving = input.leaving === true;
  const links = leaving ? [] : linksOf(self, peers);
  const generations = retire(input, links);
  const live = generations.filter((g) => !g.retiring);

  // Rule 1: every (peer generation × own live generation) on every link, SPIs kept or allocated.
  const existing = new Map(input.local.allocations.map((a) => [allocationKey(a), a]));
  const taken = new Set<number>([...input.local.allocations.map((a) => a.spi), ...input.local.releasedSpis]);
  const wanted = new Map<string, InboundAllocation>();
  for (const { peer, family } of links) {
    const advertisement = peers.get(peer)!;
    for (const peerGeneration of advertisement.generations) {
      for (const own of live) {
        const identity = {
          from: peer,
          family,
          fromAddress: advertisement.addresses[family]!,
          fromGeneration: peerGeneration.generation,
          fromBootId: advertisement.bootId,
          fromPublicKey: peerGeneration.publicKey,
          generation: own.generation,
          bootId: self.bootId,
        };
        const key = allocationKey(identity);
        const found = existing.get(key);
        if (found) {
          wanted.set(key, withoutUnwanted(found));
          continue;
        }
        const spi = allocateSpi(
          {
            meshUid: input.meshUid,
            receiver: self.node,
            sender: peer,
            family,
            senderGeneration: identity.fromGeneration,
            receiverGeneration: identity.generation,
            senderBootId: identity.fromBootId,
            receiverBootId: identity.bootId,
          },
          (candidate) => taken.has(candidate) || (input.foreignSpi?.(candidate) ?? false),
        );
        taken.add(spi);
        wanted.set(key, { ...identity, spi });
      }
    }
  }

  // Rule 5 and 6: what is no longer wanted stays while it may still carry traffic.
  const kept: InboundAllocation[] = [];
  const released: number[] = [];
  for (const allocation of input.local.allocations) {
    if (wanted.has(allocationKey(allocation))) continue;
    const unwantedSince = allocation.unwantedSince ?? input.now;
    const inKernel = input.installed.inbound.has(allocation.spi);
    const backstop = input.now - unwantedSince >= input.backstopMs;
    if (inKernel && !backstop && (senderUses(allocation, input) || !input.idle(allocation) || (leaving && listsUs(allocation.from, input)) || ackedBeforeBootChange(allocation, input))) {
      kept.push({ ...allocation, unwantedSince });
    } else {
      released.push(allocation.spi);
    }
  }
  const allocations = [...wanted.values(), ...kept];

  const outbound = leaving
    ? keptWhileLeaving(input)
    : links.flatMap(({ peer, family }) => {
        const advertisement = peers.get(peer)!;
        const choice = chooseOutbound(self, advertisement, family, live) ?? keptAcrossBootChange(input, advertisement, family, generations);
        return choice ? [choice] : [];
      });

  const sending = sendingRecords(input, outbound);

  // A retiring generation is forgotten once nothing of it is left.
  const inUse = new Set<number>([...allocations.map((a) => a.generation), ...outbound.map((o) => o.generation), ...sending.map((r) => r.generation)]);
  const remaining = generations.filter((g) => !g.retiring || inUse.has(g.generation));

  // Also an SA kept across a boot id change of either end: the inbound policy stays `required`.
  const peerEncrypts = new Set<string>();
  for (const { peer, family } of links) {
    const advertisement = peers.get(peer)!;
    if (allocations.some((a) => a.from === peer && a.family === family && usesAllocation(advertisement, a, self.node))) peerEncrypts.add(linkKey(peer, family));
  }

  const policyLinks = new Map<string, PolicyLink>();
  for (const { peer, family } of links) {
    const advertisement = peers.get(peer)!;
    policyLinks.set(linkKey(peer, family), {
      peer,
      family,
      peerAddress: advertisement.addresses[family]!,
      peerPodCIDRs: advertisement.podCIDRs,
      required: peerEncrypts.has(linkKey(peer, family)),
    });
  }
  const draining = [
    ...outbound.map((o) => ({ peer: o.to, family: o.family, address: peers.get(o.to)?.addresses[o.family] })),
    ...kept.map((a) => ({ peer: a.from, family: a.family, address: a.fromAddress as string | undefined })),
  ];
  for (const { peer, family, address } of draining) {
    if (policyLinks.has(linkKey(peer, family)) || self.addresses[family] === undefined || address === undefined) continue;
    policyLinks.set(linkKey(peer, family), { peer, family, peerAddress: address, peerPodCIDRs: peers.get(peer)?.podCIDRs ?? [], required: false });
  }

  return {
    local: {
      generations: remaining,
      allocations,
      releasedSpis: [...input.local.releasedSpis, ...released].slice(-RELEASED_SPI_QUARANTINE),
      sending,
    },
    inbound: allocations,
    outbound,
    peerEncrypts,
    links,
    policyLinks: [...policyLinks.values()],
    departed: leaving && allocations.length === 0 && outbound.length === 0 && ![...peers.keys()].some((peer) => listsUs(peer, input)),
  };
}

/** Rule 7: a leaving node keeps sending on what it published, to peers that still list it. */
function keptWhileLeaving(input: RotationInput): OutboundChoice[] {
  const previous = input.previous?.bootId === input.self.bootId ? input.previous.outbound : [];
  return previous.flatMap((use) => {
    const advertisement = input.peers.get(use.to);
    const key = advertisement?.generations.find((g) => g.generation === use.toGeneration)?.publicKey;
    const spi = input.installed.outbound.get(linkKey(use.to, use.family));
    if (!advertisement || advertisement.bootId !== use.toBootId || key === undefined || spi !== use.spi || !listsUs(use.to, input)) return [];
    return [{ ...use, toPublicKey: key }];
  });
}

function listsUs(peer: string, input: RotationInput): boolean {
  const advertisement = input.peers.get(peer);
  return advertisement !== undefined && advertisement.peers.some((p) => p.node === input.self.node && p.bootId === input.self.bootId);
}

/**
 * Rule 2: what this node may publish, from what its kernel holds after applying `decide`'s
 * entries (`input.local` must be the decision's local state). Returns the local state with
 * newly published generations stamped.
 */
export function advertise(input: RotationInput): { readonly advertisement: MeshAdvertisement; readonly local: MeshLocalState } {
  const { self, peers, installed } = input;
  const leaving = input.leaving === true;
  const links = leaving ? [] : linksOf(self, peers);
  const allocations = input.local.allocations;
  const present = (a: InboundAllocation): boolean => installed.inbound.has(a.spi) && a.bootId === self.bootId;

  const generations = input.local.generations.map((generation) => {
    if (generation.retiring || generation.publishedAt !== undefined) return generation;
    const ready = links.every(({ peer, family }) => {
      const advertisement = peers.get(peer)!;
      return advertisement.generations.every((peerGeneration) =>
        allocations.some(
          (a) =>
            a.from === peer &&
            a.family === family &&
            a.fromGeneration === peerGeneration.generation &&
            a.fromBootId === advertisement.bootId &&
            a.fromPublicKey === peerGeneration.publicKey &&
            a.generation === generation.generation &&
            present(a),
        ),
      );
    });
    return ready ? { ...generation, publishedAt: input.now } : generation;
  });
  const published = generations.filter((g) => !g.retiring && g.publishedAt !== undefined).sort((a, b) => a.generation - b.generation);
  const publishedSet = new Set(published.map((g) => g.generation));

  const inbound: InboundAck[] = allocations
    .filter((a) => !leaving && present(a) && a.unwantedSince === undefined && publishedSet.has(a.generation))
    .map((a) => ({ from: a.from, family: a.family, fromGeneration: a.fromGeneration, fromBootId: a.fromBootId, generation: a.generation, spi: a.spi }))
    .sort(compareAcks);

  const outbound: OutboundUse[] = [];
  const sendingTo = leaving ? (input.previous?.outbound ?? []).map((u) => ({ peer: u.to, family: u.family })) : links;
  for (const { peer, family } of sendingTo) {
    const spi = installed.outbound.get(linkKey(peer, family));
    const advertisement = peers.get(peer);
    if (spi === undefined || !advertisement) continue;
    const ack = advertisement.inbound.find((a) => a.from === self.node && a.family === family && a.spi === spi && a.fromBootId === self.bootId);
    const record = sendingOf(input, peer, family, spi);
    const use: OutboundUse | undefined = ack
      ? { to: peer, family, generation: ack.fromGeneration, toGeneration: ack.generation, toBootId: advertisement.bootId, spi }
      : record && publishedUse(record, self.bootId);
    if (use) outbound.push(use);
  }

  const publishedGenerations: PublishedGeneration[] = published.map((g) => ({ generation: g.generation, publicKey: input.publicKeyOf(g.generation) }));
  return {
    advertisement: {
      node: self.node,
      bootId: self.bootId,
      addresses: self.addresses,
      podCIDRs: self.podCIDRs,
      generations: publishedGenerations,
      inbound,
      outbound,
      peers: [...new Set(links.map((l) => l.peer))].map((peer) => ({ node: peer, bootId: peers.get(peer)!.bootId })),
      leaving,
    },
    local: { ...input.local, generations },
  };
}

/** Rule 4 and 6. */
function retire(input: RotationInput, links: readonly { peer: string; family: AddressFamily }[]): LocalGeneration[] {
  const { self, peers } = input;
  const published = input.local.generations.filter((g) => !g.retiring && g.publishedAt !== undefined);
  if (published.length < 2) return [...input.local.generations];
  const newest = published.reduce((a, b) => (b.generation > a.generation ? b : a));
  return input.local.generations.map((generation) => {
    if (generation.retiring || generation.publishedAt === undefined || generation.generation >= newest.generation) return generation;
    const successor = published
      .filter((g) => g.generation > generation.generation)
      .reduce((a, b) => (b.generation < a.generation ? b : a));
    const backstop = input.now - (successor.publishedAt ?? input.now) >= input.backstopMs;
    const movedOn = links.every(({ peer, family }) => {
      const mine = input.previous?.bootId === self.bootId ? input.previous.outbound.find((u) => u.to === peer && u.family === family) : undefined;
      const theirs = useTo(peers.get(peer)!, self, family);
      return mine !== undefined && mine.generation > generation.generation && theirs !== undefined && theirs.toGeneration > generation.generation;
    });
    return movedOn || backstop ? { ...generation, retiring: true } : generation;
  });
}

/** Rule 3. */
function chooseOutbound(self: MeshSelf, advertisement: MeshAdvertisement, family: AddressFamily, live: readonly LocalGeneration[]): OutboundChoice | undefined {
  const ownLive = new Set(live.filter((g) => g.publishedAt !== undefined).map((g) => g.generation));
  const keys = new Map(advertisement.generations.map((g) => [g.generation, g.publicKey]));
  let best: InboundAck | undefined;
  for (const ack of advertisement.inbound) {
    if (ack.from !== self.node || ack.family !== family || ack.fromBootId !== self.bootId) continue;
    if (!ownLive.has(ack.fromGeneration) || !keys.has(ack.generation)) continue;
    if (!best || ack.generation > best.generation || (ack.generation === best.generation && ack.fromGeneration > best.fromGeneration)) best = ack;
  }
  if (!best) return undefined;
  return {
    to: advertisement.node,
    family,
    generation: best.fromGeneration,
    toGeneration: best.generation,
    toBootId: advertisement.bootId,
    spi: best.spi,
    toPublicKey: keys.get(best.generation)!,
  };
}

/**
 * Rule 3, after this node's boot id changed: the outbound SA the kernel still holds (its key
 * derived with an earlier boot id), while no ack for the current boot id exists.
 */
function keptAcrossBootChange(input: RotationInput, advertisement: MeshAdvertisement, family: AddressFamily, generations: readonly LocalGeneration[]): OutboundChoice | undefined {
  const spi = input.installed.outbound.get(linkKey(advertisement.node, family));
  if (spi === undefined) return undefined; // nothing in the kernel to keep (a real reboot empties it)
  const record = sendingOf(input, advertisement.node, family, spi);
  if (record === undefined || record.fromBootId === input.self.bootId) return undefined; // derived with this boot id: the acks alone decide
  if (!generations.some((g) => g.generation === record.generation)) return undefined; // its key pair is gone
  return { ...record, fromBootId: record.fromBootId };
}

/**
 * What this node knows of the outbound SA with this SPI on a link: its record in the local
 * state, or (a state file from before the records) the use it last published, with the
 * receiver's public key from its advertisement.
 */
function sendingOf(input: RotationInput, peer: string, family: AddressFamily, spi: number): SendingRecord | undefined {
  const record = (input.local.sending ?? []).find((r) => r.to === peer && r.family === family && r.spi === spi);
  if (record !== undefined) return record;
  const previous = input.previous;
  const use = previous?.outbound.find((u) => u.to === peer && u.family === family && u.spi === spi);
  const toPublicKey = input.peers.get(peer)?.generations.find((g) => g.generation === use?.toGeneration)?.publicKey;
  if (use === undefined || toPublicKey === undefined) return undefined;
  return { ...use, fromBootId: use.fromBootId ?? previous!.bootId, toPublicKey };
}

/** The records to persist: every SA chosen now, and every earlier one the kernel still pins. */
function sendingRecords(input: RotationInput, outbound: readonly OutboundChoice[]): SendingRecord[] {
  const records: SendingRecord[] = outbound.map((choice) => ({
    to: choice.to,
    family: choice.family,
    generation: choice.generation,
    toGeneration: choice.toGeneration,
    toBootId: choice.toBootId,
    spi: choice.spi,
    fromBootId: choice.fromBootId ?? input.self.bootId,
    toPublicKey: choice.toPublicKey,
  }));
  for (const [link, spi] of input.installed.outbound) {
    if (records.some((r) => linkKey(r.to, r.family) === link && r.spi === spi)) continue;
    const [peer, family] = link.split('|') as [string, AddressFamily];
    const record = sendingOf(input, peer, family, spi);
    if (record !== undefined) records.push(record);
  }
  return records.sort((a, b) => a.to.localeCompare(b.to) || a.family.localeCompare(b.family) || a.spi - b.spi);
}

/** A record as this node publishes its use: `fromBootId` only when it is not the current boot id. */
function publishedUse(record: SendingRecord, bootId: string): OutboundUse {
  const { fromBootId, toPublicKey: _, ...use } = record;
  return fromBootId === bootId ? use : { ...use, fromBootId };
}

/**
 * Rule 5: an inbound SA allocated under an earlier boot id of this node, whose ack the sender
 * may still act on: it has not listed this node's current boot id yet (nor changed its own).
 */
function ackedBeforeBootChange(allocation: InboundAllocation, input: RotationInput): boolean {
  if (allocation.bootId === input.self.bootId) return false;
  const advertisement = input.peers.get(allocation.from);
  return advertisement !== undefined && advertisement.bootId === allocation.fromBootId && !listsUs(allocation.from, input);
}

function senderUses(allocation: InboundAllocation, input: RotationInput): boolean {
  const advertisement = input.peers.get(allocation.from);
  return advertisement !== undefined && usesAllocation(advertisement, allocation, input.self.node);
}

/** Whether the sender publishes that it sends on this inbound SA: its SPI and both boot ids it was derived with. */
function usesAllocation(advertisement: MeshAdvertisement, allocation: InboundAllocation, self: string): boolean {
  return advertisement.outbound.some(
    (u) =>
      u.to === self &&
      u.family === allocation.family &&
      u.spi === allocation.spi &&
      u.toBootId === allocation.bootId &&
      (u.fromBootId ?? advertisement.bootId) === allocation.fromBootId,
  );
}

function useTo(advertisement: MeshAdvertisement, self: MeshSelf, family: AddressFamily): OutboundUse | undefined {
  return advertisement.outbound.find((u) => u.to === self.node && u.family === family && u.toBootId === self.bootId);
}

function linksOf(self: MeshSelf, peers: ReadonlyMap<string, MeshAdvertisement>): { peer: string; family: AddressFamily }[] {
  const links: { peer: string; family: AddressFamily }[] = [];
  for (const peer of [...peers.keys()].sort()) {
    if (peer === self.node) continue;
    const advertisement = peers.get(peer)!;
    if (advertisement.leaving) continue;
    for (const family of FAMILIES) {
      if (self.addresses[family] !== undefined && advertisement.addresses[family] !== undefined) links.push({ peer, family });
    }
  }
  return links;
}

function allocationKey(a: Omit<InboundAllocation, 'spi' | 'unwantedSince'>): string {
  return [a.from, a.family, a.fromAddress, a.fromGeneration, a.fromBootId, a.fromPublicKey, a.generation, a.bootId].join('|');
}

function withoutUnwanted(allocation: InboundAllocation): InboundAllocation {
  if (allocation.unwantedSince === undefined) return allocation;
  const { unwantedSince: _, ...rest } = allocation;
  return rest;
}

function compareAcks(a: InboundAck, b: InboundAck): number {
  return a.from.localeCompare(b.from) || a.family.localeCompare(b.family) || a.fromGeneration - b.fromGeneration || a.generation - b.generation || a.spi - b.spi;
}
