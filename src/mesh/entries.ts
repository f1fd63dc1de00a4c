/**
 * A rotation decision as kernel entries: the SAs and policies of this node for one mesh, in the
 * form the planner diffs (DesiredTables), built exactly as the kernel dumps them back (like
 * model/build.ts does for hand-written resources), so a converged mesh plans nothing.
 *
 * Per link (peer, family):
 * - inbound SAs, one per (peer generation, own generation) the decision holds;
 * - at most one outbound SA, the one the receiver acked, and an `out` policy whose template
 *   pins its SPI: adding the next SA never moves traffic, the policy update does;
 * - an `in` policy (and `fwd` in tunnel mode, where decapsulated traffic is forwarded to pods)
 *   whose template accepts any SPI of the mesh's reqid, so old and new inbound SAs both pass
 *   during a rotation. Its level is `use` (ESP or clear text) until the peer publishes that it
 *   encrypts to us, then `required`; with failClosed it is `required` from the start, so clear
 *   text from a member is refused while its SAs are missing;
 * - with failClosed, while a member link has no outbound SA yet (the peer has not acked one),
 *   a `block` out policy in the place of the encrypting one: nothing leaves in clear text, and
 *   the one UPDPOLICY that turns it into the encrypting policy lets traffic flow. In the place
 *   of, not beside it: the kernel names a policy by (direction, type, selector, mark, if_id), not
 *   by priority, so a guard with the encrypting policy's selector at another priority is the same
 *   policy (NEWPOLICY: EEXIST; UPDPOLICY would replace the encrypting one). An encrypting out
 *   policy whose SA is gone already drops (its template finds no SA), so the block is needed only
 *   where there is no encrypting policy.
 * Exemptions (clear-text protocols/ports) are `allow` policies without templates at a better
 * priority, per family, for both directions.
 *
 * Priorities (lower wins in XFRM): exemptions 1000, encrypting 2000, fail-closed guards 3000
 * (the guard's own priority only tells it apart in a dump: it never shares a selector with an
 * encrypting policy).
 */
import { createHash } from 'node:crypto';

import type { DesiredEntry, DesiredTables } from '../plan/planner.js';
import { anyAddress } from '../xfrm/address.js';
import { DEFAULT_LIFETIME, anySelector, makePolicy, makeSelector, makeTemplate } from '../xfrm/defaults.js';
import type { KeyMaterial } from '../xfrm/key-material.js';
import type { AddressFamily, LifetimeConfig, PolicyDirection, SecurityAssociation, SecurityPolicy, Selector, StateFlag } from '../xfrm/types.js';
import { meshAeadSpec, type MeshAead } from './aead.js';
import { deriveSaKey, type MeshIdentity, type SaEndpoint } from './derive.js';
import { linkKey, type MeshDecision, type MeshSelf } from './rotation.js';
import type { MeshAdvertisement } from './types.js';

export const EXEMPTION_PRIORITY = 1000;
export const ENCRYPTING_PRIORITY = 2000;
export const GUARD_PRIORITY = 3000;
/** Above this the replay state needs XFRMA_REPLAY_ESN_VAL (as model/build.ts decides). */
const LEGACY_REPLAY_WINDOW_MAX = 32;

export interface MeshExemption {
  /** IP protocol number (6 tcp, 17 udp, 132 sctp, 1 icmp, 58 ipv6-icmp). */
  readonly protocol: number;
  /** For tcp/udp/sctp: the port, exempt as source and as destination. */
  readonly port?: number;
}

export interface MeshEntriesSpec {
  readonly mesh: MeshIdentity;
  readonly aead: MeshAead;
  readonly mode: 'transport' | 'tunnel';
  readonly esn: boolean;
  readonly replayWindow: number;
  /** ESP in UDP (RFC 3948) on these ports. */
  readonly natTraversal?: { readonly sourcePort: number; readonly destinationPort: number };
  readonly failClosed: boolean;
  readonly exemptions: readonly MeshExemption[];
  /** Soft limits on outbound SAs: the kernel's soft expiry is a rotation trigger. */
  readonly softByteLimit?: bigint;
  readonly softPacketLimit?: bigint;
}

export interface MeshKeys {
  privateKey(generation: number): KeyMaterial;
  /** Raw public key of an own generation. */
  publicKey(generation: number): Uint8Array;
}

/** The reqid of a mesh's SAs and templates: 0x4d000000 + 24 bits of SHA-256(uid), never 0. */
export function meshReqid(uid: string): number {
  return 0x4d00_0000 + (createHash('sha256').update(`ipsec-operator mesh reqid ${uid}`).digest().readUIntBE(0, 3) || 1);
}

export function meshResource(mesh: MeshIdentity): string {
  return `IpsecMesh/${mesh.name}`;
}

export function buildMeshEntries(
  spec: MeshEntriesSpec,
  self: MeshSelf,
  peers: ReadonlyMap<string, MeshAdvertisement>,
  decision: MeshDecision,
  keys: MeshKeys,
): DesiredTables {
  const resource = meshResource(spec.mesh);
  const reqid = meshReqid(spec.mesh.uid);
  const aead = meshAeadSpec(spec.aead);
  const states: DesiredEntry<SecurityAssociation>[] = [];
  const policies: DesiredEntry<SecurityPolicy>[] = [];

  const sa = (family: AddressFamily, source: string, destination: string, spi: number, key: KeyMaterial, lifetime: LifetimeConfig): SecurityAssociation => ({
    id: { family, destination, spi, protocol: 'esp', mark: undefined },
    source,
    mode: spec.mode,
    reqid,
    selector: anySelector(family),
    algorithms: { kind: 'aead', aead: { name: aead.kernelName, key, icvBits: aead.icvBits } },
    replay: { window: spec.replayWindow, useEsnAttribute: spec.esn || spec.replayWindow > LEGACY_REPLAY_WINDOW_MAX },
    flags: spec.esn ? (['esn'] as StateFlag[]) : [],
    extraFlags: [],
    lifetime,
    encapsulation: spec.natTraversal
      ? { type: 'espinudp', sourcePort: spec.natTraversal.sourcePort, destinationPort: spec.natTraversal.destinationPort, originalAddress: anyAddress(family) }
      : undefined,
    outputMark: undefined,
    ifId: undefined,
    tfcPad: undefined,
    direction: undefined,
    careOfAddress: undefined,
    observed: undefined,
  });

  for (const allocation of decision.inbound) {
    const own = self.addresses[allocation.family];
    if (own === undefined) continue;
    const sender: SaEndpoint = {
      node: allocation.from,
      address: allocation.fromAddress,
      generation: allocation.fromGeneration,
      bootId: allocation.fromBootId,
      publicKey: Buffer.from(allocation.fromPublicKey, 'base64'),
    };
    // The boot id the SPI was allocated (and its key published) under, not the current one: an SA
    // kept across this node's boot id change while its sender still uses it keeps its key (the
    // same SPI with another key would fail every packet the sender sends on it).
    const receiver: SaEndpoint = { node: self.node, address: own, generation: allocation.generation, bootId: allocation.bootId, publicKey: keys.publicKey(allocation.generation) };
    const key = deriveSaKey({ mesh: spec.mesh, aead: spec.aead, sender, receiver }, 'receiver', keys.privateKey(allocation.generation));
    states.push({ resource, entry: sa(allocation.family, allocation.fromAddress, own, allocation.spi, key, DEFAULT_LIFETIME) });
  }

  const outboundLifetime: LifetimeConfig = {
    ...DEFAULT_LIFETIME,
    ...(spec.softByteLimit !== undefined ? { softByteLimit: spec.softByteLimit } : {}),
    ...(spec.softPacketLimit !== undefined ? { softPacketLimit: spec.softPacketLimit } : {}),
  };
  const outbound = new Map(decision.outbound.map((choice) => [linkKey(choice.to, choice.family), choice]));

  const members = new Set(decision.links.map((l) => linkKey(l.peer, l.family)));
  for (const link of decision.policyLinks) {
    const { peer, family } = link;
    const member = members.has(linkKey(peer, family));
    const own = self.addresses[family]!;
    const theirs = link.peerAddress;
    const tunnelEnds = spec.mode === 'tunnel' ? { source: own, destination: theirs } : {};
    const flows = trafficPrefixes(spec.mode, family, own, theirs, self.podCIDRs, link.peerPodCIDRs);

    const choice = outbound.get(linkKey(peer, family));
    if (choice) {
      // An SA kept across this node's boot id change keeps the key of the boot id it was made under.
      const sender: SaEndpoint = { node: self.node, address: own, generation: choice.generation, bootId: choice.fromBootId ?? self.bootId, publicKey: keys.publicKey(choice.generation) };
      const receiver: SaEndpoint = { node: peer, address: theirs, generation: choice.toGeneration, bootId: choice.toBootId, publicKey: Buffer.from(choice.toPublicKey, 'base64') };
      const key = deriveSaKey({ mesh: spec.mesh, aead: spec.aead, sender, receiver }, 'sender', keys.privateKey(choice.generation));
      states.push({ resource, entry: sa(family, own, theirs, choice.spi, key, outboundLifetime) });
    }

    // A draining link (a peer leaving, or this node) accepts clear text: its other end stops
    // encrypting the moment it lets the link go.
    const inboundLevel = link.required || (spec.failClosed && member) ? 'required' : 'use';
    for (const flow of flows) {
      if (choice) {
        policies.push({
          resource,
          entry: makePolicy({
            direction: 'out',
            selector: flow.outbound,
            priority: ENCRYPTING_PRIORITY,
            templates: [makeTemplate({ family, ...tunnelEnds, protocol: 'esp', spi: choice.spi, reqid, mode: spec.mode })],
          }),
        });
      }
      const inboundDirections: PolicyDirection[] = spec.mode === 'tunnel' ? ['in', 'fwd'] : ['in'];
      for (const direction of inboundDirections) {
        policies.push({
          resource,
          entry: makePolicy({
            direction,
            selector: flow.inbound,
            priority: ENCRYPTING_PRIORITY,
            templates: [
              makeTemplate({
                family,
                ...(spec.mode === 'tunnel' ? { source: theirs, destination: own } : {}),
                protocol: 'esp',
                reqid,
                mode: spec.mode,
                level: inboundLevel,
              }),
            ],
          }),
        });
      }
      if (!choice && spec.failClosed && member) {
        policies.push({ resource, entry: makePolicy({ direction: 'out', selector: flow.outbound, priority: GUARD_PRIORITY, action: 'block' }) });
      }
    }
  }

  const families = new Set(decision.links.map((l) => l.family));
  for (const family of [...families].sort()) {
    for (const exemption of spec.exemptions) {
      for (const selector of exemptionSelectors(family, exemption)) {
        for (const direction of ['out', 'in', ...(spec.mode === 'tunnel' ? ['fwd' as const] : [])] as PolicyDirection[]) {
          policies.push({ resource, entry: makePolicy({ direction, selector, priority: EXEMPTION_PRIORITY }) });
        }
      }
    }
  }
  return { states, policies };
}

/** The traffic one link protects: node to node (transport), or pod CIDRs to pod CIDRs (tunnel). */
function trafficPrefixes(
  mode: 'transport' | 'tunnel',
  family: AddressFamily,
  own: string,
  theirs: string,
  ownCIDRs: readonly string[],
  theirCIDRs: readonly string[],
): { outbound: Selector; inbound: Selector }[] {
  if (mode === 'transport') {
    return [{ outbound: makeSelector({ source: own, destination: theirs }), inbound: makeSelector({ source: theirs, destination: own }) }];
  }
  const inFamily = (cidr: string): boolean => (family === 'inet6') === cidr.includes(':');
  const flows: { outbound: Selector; inbound: Selector }[] = [];
  for (const local of ownCIDRs.filter(inFamily)) {
    for (const remote of theirCIDRs.filter(inFamily)) {
      flows.push({ outbound: makeSelector({ source: local, destination: remote }), inbound: makeSelector({ source: remote, destination: local }) });
    }
  }
  return flows;
}

function exemptionSelectors(family: AddressFamily, exemption: MeshExemption): Selector[] {
  const any = family === 'inet' ? '0.0.0.0/0' : '::/0';
  if (exemption.port === undefined) return [makeSelector({ source: any, destination: any, protocol: exemption.protocol })];
  return [
    makeSelector({ source: any, destination: any, protocol: exemption.protocol, destinationPort: exemption.port }),
    makeSelector({ source: any, destination: any, protocol: exemption.protocol, sourcePort: exemption.port }),
  ];
}
