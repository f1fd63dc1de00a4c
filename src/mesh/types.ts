/**
 * The data of the mesh protocol: what each node publishes (its advertisement, carried in its
 * IpsecNodeState) and what it keeps to itself (its local state, in its state directory).
 *
 * Every SA is named by a `link` (sender, receiver, address family) and the pair of key
 * generations (and boot ids) it was derived from, so rotations of different nodes overlap
 * without ambiguity: the SA from a at generation 3 to b at generation 7 is a different SA,
 * with a different key and SPI, from a@3 -> b@8 or a@4 -> b@7.
 */
import type { AddressFamily } from '../xfrm/types.js';

/** A published public key. */
export interface PublishedGeneration {
  readonly generation: number;
  /** Raw X25519 public key, base64. */
  readonly publicKey: string;
}

/** "I have installed the inbound SA from `from` at `fromGeneration` to me at `generation`, with this SPI." */
export interface InboundAck {
  readonly from: string;
  readonly family: AddressFamily;
  readonly fromGeneration: number;
  readonly fromBootId: string;
  readonly generation: number;
  readonly spi: number;
}

/** "My outbound policy to `to` now pins this SA." */
export interface OutboundUse {
  readonly to: string;
  readonly family: AddressFamily;
  readonly generation: number;
  readonly toGeneration: number;
  readonly toBootId: string;
  readonly spi: number;
  /**
   * The sender's boot id the SA's key was derived with, when it is not the advertisement's: an
   * SA the kernel kept across the sender's boot id change, sent on until the receiver acks one
   * for the new boot id (rule 3 of ./rotation.ts). Absent otherwise.
   */
  readonly fromBootId?: string;
}

/** What a node publishes. Generations, acks and uses are published only once the kernel has them. */
export interface MeshAdvertisement {
  readonly node: string;
  readonly bootId: string;
  /** One node address per family (InternalIP). */
  readonly addresses: Readonly<Partial<Record<AddressFamily, string>>>;
  /** The node's pod CIDRs, for tunnel mode. */
  readonly podCIDRs: readonly string[];
  /** Ascending; the last is the node's current generation. */
  readonly generations: readonly PublishedGeneration[];
  readonly inbound: readonly InboundAck[];
  readonly outbound: readonly OutboundUse[];
  /** The peers (and their boot ids) this node keeps SAs with: a leaving peer learns here that we let it go. */
  readonly peers: readonly { readonly node: string; readonly bootId: string }[];
  /** The node is leaving the mesh: it installs nothing new, keeps what peers still use, then withdraws. */
  readonly leaving: boolean;
}

/** One of this node's key generations (the private key lives in the key store beside it). */
export interface LocalGeneration {
  readonly generation: number;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** When this node first published it. */
  readonly publishedAt?: number;
  /** No longer used for new SAs nor published; kept until no SA of it is left. */
  readonly retiring: boolean;
}

/** An inbound SA this node allocated an SPI for. */
export interface InboundAllocation {
  readonly from: string;
  readonly family: AddressFamily;
  /** The sender's address in `family` when it was allocated (the SA outlives the sender's advertisement). */
  readonly fromAddress: string;
  readonly fromGeneration: number;
  readonly fromBootId: string;
  /** Base64 public key of the sender's generation, so the key can be derived while the SA is kept after the sender stopped publishing it. */
  readonly fromPublicKey: string;
  readonly generation: number;
  readonly bootId: string;
  readonly spi: number;
  /** Since when the SA is no longer wanted (kept only while a sender may still use it). */
  readonly unwantedSince?: number;
}

/** An outbound SA this node installs or holds, with everything its key was derived with. */
export interface SendingRecord extends Omit<OutboundUse, 'fromBootId'> {
  /** This node's boot id when the key was derived. */
  readonly fromBootId: string;
  /** Base64 public key of the receiver's generation. */
  readonly toPublicKey: string;
}

export interface MeshLocalState {
  readonly generations: readonly LocalGeneration[];
  readonly allocations: readonly InboundAllocation[];
  /** Recently released SPIs, never reallocated while they are here (oldest first, bounded). */
  readonly releasedSpis: readonly number[];
  /**
   * The outbound SAs this node chose and those its kernel still pins, recorded before they are
   * installed: after an agent restart with another boot id, the keys of what the kernel holds
   * (absent in files written before it existed).
   */
  readonly sending?: readonly SendingRecord[];
}

export const EMPTY_LOCAL_STATE: MeshLocalState = Object.freeze({ generations: [], allocations: [], releasedSpis: [], sending: [] });
