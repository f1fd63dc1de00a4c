/**
 * What a kernel dump says about one mesh on this node, for the rotation state machine
 * (../mesh/rotation.ts InstalledMesh): which of its inbound SAs the kernel holds, which SA each
 * outbound policy pins, which SPIs to this node other SAs hold (never allocated to the mesh),
 * how far its outbound counters are through their sequence space, and whether an inbound SA
 * still carries packets (InboundActivity), which outbound SAs no policy pins any more still drain
 * (OutboundDrain), and whether an outbound SA reached a soft limit. Only entries the ledger records for the mesh's
 * resource count as the mesh's: the kernel may hold anything else. Pure but for the trackers'
 * memory; the time is an input.
 */
import type { ObservedTables } from '../plan/planner.js';
import { policyKey, stateKey } from '../plan/identity.js';
import { observedSequence, sequenceSpace } from '../engine/sequence-rule.js';
import { linkKey, type InstalledMesh, type MeshSelf } from '../mesh/rotation.js';
import type { InboundAllocation, MeshAdvertisement } from '../mesh/types.js';
import type { AddressFamily, SecurityAssociation } from '../xfrm/types.js';

/** The ledger's answer: which resource an SA or policy key belongs to. */
export type OwnerOf = (key: string) => string | undefined;

export interface MeshKernelInput {
  readonly observed: ObservedTables;
  readonly ownerOf: OwnerOf;
  /** The mesh's resource name (../mesh/entries.ts meshResource). */
  readonly resource: string;
  readonly reqid: number;
  readonly self: MeshSelf;
  readonly peers: ReadonlyMap<string, MeshAdvertisement>;
  /** The node's allocations: a draining peer is found by the address it had. */
  readonly allocations: readonly InboundAllocation[];
}

const familyOf = (address: string): AddressFamily => (address.includes(':') ? 'inet6' : 'inet');

function owned(input: MeshKernelInput, sa: SecurityAssociation): boolean {
  return input.ownerOf(stateKey(sa.id)) === input.resource && sa.id.protocol === 'esp' && sa.reqid === input.reqid;
}

function ownedOutbound(input: MeshKernelInput): SecurityAssociation[] {
  return input.observed.states.filter((sa) => owned(input, sa) && sa.source === input.self.addresses[sa.id.family]);
}

/** SPIs the templates of the mesh's outbound policies pin. */
function pinnedSpis(input: MeshKernelInput): Set<number> {
  const spis = new Set<number>();
  for (const policy of input.observed.policies) {
    if (policy.id.direction !== 'out' || input.ownerOf(policyKey(policy.id)) !== input.resource) continue;
    for (const template of policy.templates) if (template.spi !== 0 && template.reqid === input.reqid) spis.add(template.spi);
  }
  return spis;
}

export function installedMesh(input: MeshKernelInput): InstalledMesh {
  const { self } = input;
  const inbound = new Set<number>();
  const outboundSas = new Map<number, SecurityAssociation>();
  for (const sa of input.observed.states) {
    if (!owned(input, sa)) continue;
    const family = sa.id.family;
    if (sa.id.destination === self.addresses[family]) inbound.add(sa.id.spi);
    else if (sa.source === self.addresses[family]) outboundSas.set(sa.id.spi, sa);
  }
  // Peers by address, so a pinned SA's destination names its link.
  const byAddress = new Map<string, string>();
  for (const allocation of input.allocations) byAddress.set(allocation.fromAddress, allocation.from);
  for (const [peer, advertisement] of input.peers) for (const address of Object.values(advertisement.addresses)) if (address !== undefined) byAddress.set(address, peer);

  const outbound = new Map<string, number>();
  for (const policy of input.observed.policies) {
    if (policy.id.direction !== 'out' || input.ownerOf(policyKey(policy.id)) !== input.resource) continue;
    for (const template of policy.templates) {
      if (template.spi === 0 || template.reqid !== input.reqid) continue;
      const sa = outboundSas.get(template.spi);
      if (sa === undefined) continue;
      const peer = byAddress.get(sa.id.destination);
      if (peer !== undefined) outbound.set(linkKey(peer, familyOf(sa.id.destination)), template.spi);
    }
  }
  return { inbound, outbound };
}

/** SPIs of SAs to this node's addresses that are not the mesh's own: the mesh never allocates them. */
export function foreignSpis(input: MeshKernelInput): Set<number> {
  const addresses = new Set(Object.values(input.self.addresses));
  const spis = new Set<number>();
  for (const sa of input.observed.states) if (addresses.has(sa.id.destination) && !owned(input, sa)) spis.add(sa.id.spi);
  return spis;
}

/** Highest fraction of sequence space an outbound SA of the mesh has used (0 when none). */
export function sequenceUsage(input: MeshKernelInput): number {
  let usage = 0;
  for (const sa of input.observed.states) {
    if (!owned(input, sa) || sa.source !== input.self.addresses[sa.id.family]) continue;
    const sequence = observedSequence(sa);
    if (sequence === undefined) continue;
    // Parts per million first: bigint division, then a number in [0, 1].
    usage = Math.max(usage, Number((sequence * 1_000_000n) / sequenceSpace(sa)) / 1_000_000);
  }
  return Math.min(1, usage);
}

/**
 * Whether an outbound SA of the mesh has reached its soft packet or byte limit, from its
 * counters in the dump: the kernel's soft-expire event comes once, and an agent restarted since
 * would not know; the counters say it again at every pass until the SA is replaced.
 */
export function softLimitReached(input: MeshKernelInput): boolean {
  // Only an SA a policy sends on: one draining after its switch (OutboundDrain) has been replaced already.
  const pinned = pinnedSpis(input);
  return ownedOutbound(input).some((sa) => {
    if (!pinned.has(sa.id.spi)) return false;
    const current = sa.observed?.current;
    if (current === undefined) return false;
    return current.packets >= sa.lifetime.softPacketLimit || current.bytes >= sa.lifetime.softByteLimit;
  });
}

/**
 * Whether an inbound SA has carried no packet for the grace period: its packet counter is
 * remembered per SPI with the time it last moved. An SA seen for the first time counts as
 * just used (after a restart, each SA waits one grace period before it may go).
 */
export class InboundActivity {
  readonly #seen = new Map<number, { readonly packets: bigint; readonly changedAt: number }>();

  observe(states: readonly SecurityAssociation[], spis: ReadonlySet<number>, now: number): void {
    const present = new Set<number>();
    for (const sa of states) {
      if (!spis.has(sa.id.spi)) continue;
      present.add(sa.id.spi);
      const packets = sa.observed?.current.packets ?? 0n;
      const before = this.#seen.get(sa.id.spi);
      if (before === undefined || before.packets !== packets) this.#seen.set(sa.id.spi, { packets, changedAt: now });
    }
    for (const spi of [...this.#seen.keys()]) if (!present.has(spi)) this.#seen.delete(spi);
  }

  idle(spi: number, graceMs: number, now: number): boolean {
    const seen = this.#seen.get(spi);
    return seen === undefined || now - seen.changedAt >= graceMs;
  }
}

/**
 * When each outbound SA of the mesh was last pinned by an outbound policy, so that an SA the
 * policy stopped pinning (a switch to the next SA, a link dropped) stays for the grace period
 * instead of going in the same pass. Make-before-break in one pass is not enough: the kernel
 * resolves a packet's templates after it found the policy, under RCU and without a lock, so a
 * packet that found the policy just before the UPDPOLICY that moved it still looks for the old
 * SPI; with that SA deleted right after, it finds none and is dropped as XfrmOutNoStates (and
 * one already bundled with the old SA as XfrmOutStateInvalid). Measured in the test VM under a
 * UDP flood, 500 switches each with the old SA deleted in the same batch: 7 XfrmOutNoStates on
 * 6.12 (~10k datagrams/s), 4 XfrmOutNoStates and 90 XfrmOutStateInvalid on 6.1 (~5k/s); with it
 * deleted a second later, none in 500 on either. An SA first seen unpinned counts as just
 * unpinned: a restarted agent does not know when its predecessor switched.
 */
export class OutboundDrain {
  readonly #pinnedAt = new Map<string, number>();

  observe(input: MeshKernelInput, now: number): void {
    const pinned = pinnedSpis(input);
    const present = new Set<string>();
    for (const sa of ownedOutbound(input)) {
      const key = stateKey(sa.id);
      present.add(key);
      if (pinned.has(sa.id.spi) || !this.#pinnedAt.has(key)) this.#pinnedAt.set(key, now);
    }
    for (const key of [...this.#pinnedAt.keys()]) if (!present.has(key)) this.#pinnedAt.delete(key);
  }

  /** The outbound SAs pinned now or within the grace period: none of them may go in this pass. */
  kept(input: MeshKernelInput, graceMs: number, now: number): SecurityAssociation[] {
    return ownedOutbound(input).filter((sa) => now - (this.#pinnedAt.get(stateKey(sa.id)) ?? now) < graceMs);
  }
}
