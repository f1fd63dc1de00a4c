/**
 * The public model of the kernel's XFRM tables: Security Associations (the SAD) and
 * Security Policies (the SPD), as plain immutable data.
 *
 * These types are what the codec decodes a dump into and encodes a request from, what the
 * planner diffs, and what the CLI prints. They mirror the kernel's concepts one to one
 * (see /usr/include/linux/xfrm.h and `ip xfrm`), but with names, enums as string unions,
 * addresses as strings and keys wrapped in {@link KeyMaterial}. The raw ABI (structs with
 * padding, byte order, numeric constants) lives only in the codec.
 *
 * Conventions:
 * - Every field the kernel always has is required; fields that exist only when a netlink
 *   attribute is present are optional (`undefined` = attribute absent).
 * - Addresses are canonical strings (`10.0.0.1`, `fd00::1`): IPv4 dotted quad, IPv6 in the
 *   RFC 5952 form that `ip` prints. Use `canonicalAddress()` from ./address.js to normalise.
 * - u64 quantities (lifetimes, counters) are bigint; `XFRM_INFINITY` is the kernel's "no limit".
 */
import type { KeyMaterial } from './key-material.js';

export type AddressFamily = 'inet' | 'inet6';

/** IPsec protocols the SAD holds. `ipcomp` is what `ip xfrm` calls `comp`. */
export type XfrmProtocol = 'esp' | 'ah' | 'ipcomp';

/** XFRM_MODE_*. `ro` (route optimisation) and `in_trigger` exist only for Mobile IPv6. */
export type XfrmMode = 'transport' | 'tunnel' | 'beet' | 'ro' | 'in_trigger';

/** XFRM_POLICY_IN/OUT/FWD. Socket policies (dir 3-5) are never part of this model. */
export type PolicyDirection = 'in' | 'out' | 'fwd';

export type PolicyAction = 'allow' | 'block';

/** XFRM_POLICY_TYPE_MAIN / _SUB. */
export type PolicyType = 'main' | 'sub';

/** XFRM_SHARE_*. */
export type TemplateShare = 'any' | 'session' | 'user' | 'unique';

/** XFRM_STATE_* flags of xfrm_usersa_info.flags, by the names `ip xfrm state` uses. */
export type StateFlag = 'noecn' | 'decap-dscp' | 'nopmtudisc' | 'wildrecv' | 'icmp' | 'af-unspec' | 'align4' | 'esn';

/** XFRM_SA_XFLAG_* of XFRMA_SA_EXTRA_FLAGS. */
export type StateExtraFlag = 'dont-encap-dscp' | 'oseq-may-wrap';

/** XFRM_POLICY_LOCALOK / XFRM_POLICY_ICMP. */
export type PolicyFlag = 'localok' | 'icmp';

/** UDP encapsulation types (linux/udp.h UDP_ENCAP_ESPINUDP*, and TCP_ENCAP_ESPINTCP). */
export type EncapType = 'espinudp' | 'espinudp-nonike' | 'espintcp';

/** SA direction (XFRMA_SA_DIR, Linux 6.10+). */
export type StateDirection = 'in' | 'out';

/** The kernel's "no limit" for every u64 lifetime (XFRM_INF = ~0ULL). */
export const XFRM_INFINITY = 0xffff_ffff_ffff_ffffn;

/** An address prefix: an address plus prefix length, e.g. 10.0.0.0/24. */
export interface Prefix {
  readonly address: string;
  readonly prefixLength: number;
}

/**
 * struct xfrm_selector: which traffic a policy (or an SA's inner traffic) matches.
 * Ports are in host order; for ICMP/ICMPv6 the kernel keeps type in sourcePort and code in
 * destinationPort (as `ip xfrm ... proto icmp type T code C` does).
 */
export interface Selector {
  /** AF_UNSPEC selectors (family `undefined`) appear on SAs that match any inner traffic. */
  readonly family: AddressFamily | undefined;
  readonly source: Prefix;
  readonly destination: Prefix;
  /** IP protocol number; 0 matches any. */
  readonly protocol: number;
  readonly sourcePort: number;
  readonly sourcePortMask: number;
  readonly destinationPort: number;
  readonly destinationPortMask: number;
  /** Interface index (`dev NAME` resolved in the target namespace); 0 matches any. */
  readonly ifindex: number;
  /** Owning uid; always 0 from `ip`. */
  readonly user: number;
}

/** struct xfrm_lifetime_cfg. Byte and packet limits are XFRM_INFINITY unless set; time limits are 0 (none). */
export interface LifetimeConfig {
  readonly softByteLimit: bigint;
  readonly hardByteLimit: bigint;
  readonly softPacketLimit: bigint;
  readonly hardPacketLimit: bigint;
  readonly softAddExpiresSeconds: bigint;
  readonly hardAddExpiresSeconds: bigint;
  readonly softUseExpiresSeconds: bigint;
  readonly hardUseExpiresSeconds: bigint;
}

/** struct xfrm_lifetime_cur: what the kernel has counted (observed only). */
export interface LifetimeCurrent {
  readonly bytes: bigint;
  readonly packets: bigint;
  /** Seconds since the epoch. */
  readonly addTime: bigint;
  readonly useTime: bigint;
}

/** struct xfrm_mark: value matched under mask. */
export interface Mark {
  readonly value: number;
  readonly mask: number;
}

/** XFRMA_ALG_AEAD: e.g. rfc4106(gcm(aes)) with a 160-bit key (128-bit key + 32-bit salt). */
export interface AeadAlgorithm {
  readonly name: string;
  readonly key: KeyMaterial;
  readonly icvBits: number;
}

/** XFRMA_ALG_CRYPT: e.g. cbc(aes). */
export interface CipherAlgorithm {
  readonly name: string;
  readonly key: KeyMaterial;
}

/**
 * XFRMA_ALG_AUTH_TRUNC (and XFRMA_ALG_AUTH, which the kernel also reports and which is the
 * same algorithm with the default truncation length).
 */
export interface AuthAlgorithm {
  readonly name: string;
  readonly key: KeyMaterial;
  readonly truncationBits: number;
}

/** XFRMA_ALG_COMP: e.g. deflate. */
export interface CompressionAlgorithm {
  readonly name: string;
}

/**
 * The algorithms of one SA. The union makes the kernel's rules structural: ESP carries either
 * an AEAD or a cipher with optional authentication; AH carries authentication only; IPComp a
 * compression algorithm only.
 */
export type StateAlgorithms =
  | { readonly kind: 'aead'; readonly aead: AeadAlgorithm }
  | { readonly kind: 'cipher'; readonly cipher: CipherAlgorithm; readonly auth: AuthAlgorithm | undefined }
  | { readonly kind: 'auth'; readonly auth: AuthAlgorithm }
  | { readonly kind: 'compression'; readonly compression: CompressionAlgorithm };

/** struct xfrm_encap_tmpl (NAT traversal). */
export interface Encapsulation {
  readonly type: EncapType;
  readonly sourcePort: number;
  readonly destinationPort: number;
  /** Original address before NAT; `0.0.0.0`/`::` when unknown. */
  readonly originalAddress: string;
}

/**
 * Anti-replay configuration. `window` is in packets. A window above 32 (the u8 in
 * xfrm_usersa_info can carry 255 but iproute2 and the kernel use the ESN attribute for large
 * windows) or ESN requires XFRMA_REPLAY_ESN_VAL; the codec chooses the encoding.
 */
export interface ReplayConfig {
  readonly window: number;
  /** Whether the replay state travels as XFRMA_REPLAY_ESN_VAL (implied by the `esn` flag). */
  readonly useEsnAttribute: boolean;
}

/** The replay counters of a live SA (observed only). */
export interface ReplayState {
  readonly outboundSequence: number;
  readonly outboundSequenceHigh: number;
  readonly inboundSequence: number;
  readonly inboundSequenceHigh: number;
  readonly bitmapLength: number;
}

/** struct xfrm_stats (observed only). */
export interface StateStatistics {
  readonly replayWindow: number;
  readonly replay: number;
  readonly integrityFailed: number;
}

/** The identity of an SA in the kernel: (destination, SPI, protocol) within a family, and mark. */
export interface StateId {
  readonly family: AddressFamily;
  readonly destination: string;
  /** Host order. For IPComp the kernel uses the 16-bit CPI. */
  readonly spi: number;
  readonly protocol: XfrmProtocol;
  readonly mark: Mark | undefined;
}

/**
 * An SA as XFRM_MSG_EXPIRE reports it. The kernel's build_expire sends struct xfrm_usersa_info
 * and only XFRMA_MARK and XFRMA_IF_ID after it (XFRMA_SA_DIR too on 6.10+): no algorithms, no
 * keys, no replay state. Whoever needs the key (the usage history names keys by it) looks the SA
 * up by its identity and add time in a dump taken before it expired.
 */
export type ExpiredState = Omit<SecurityAssociation, 'algorithms' | 'resumeSequence'>;

/** One Security Association, as `ip xfrm state` shows it. */
export interface SecurityAssociation {
  readonly id: StateId;
  readonly source: string;
  readonly mode: XfrmMode;
  readonly reqid: number;
  readonly selector: Selector;
  readonly algorithms: StateAlgorithms;
  readonly replay: ReplayConfig;
  readonly flags: readonly StateFlag[];
  readonly extraFlags: readonly StateExtraFlag[];
  readonly lifetime: LifetimeConfig;
  readonly encapsulation: Encapsulation | undefined;
  readonly outputMark: Mark | undefined;
  readonly ifId: number | undefined;
  readonly tfcPad: number | undefined;
  readonly direction: StateDirection | undefined;
  readonly careOfAddress: string | undefined;
  /** Present on SAs read from the kernel, absent on desired SAs. */
  readonly observed: ObservedStateCounters | undefined;
  /**
   * Desired SAs only: the outbound sequence number to start from when (re)creating the SA.
   * An SA that vanished (a hand flush) and is restored with its sequence back at 0 would have
   * every packet dropped as a replay by the peer's inbound SA, which remembers where it was;
   * the agent restores owned SAs past the highest sequence number it last saw. Not part of the
   * SA's configuration: never compared, never fingerprinted.
   */
  readonly resumeSequence?: bigint;
}

export interface ObservedStateCounters {
  readonly current: LifetimeCurrent;
  readonly statistics: StateStatistics;
  readonly replayState: ReplayState | undefined;
  readonly sequence: number;
}

/** struct xfrm_user_tmpl: which SA a policy requires, found by proto/reqid/mode (and addresses). */
export interface PolicyTemplate {
  readonly family: AddressFamily;
  readonly source: string;
  readonly destination: string;
  readonly protocol: XfrmProtocol;
  /** 0 matches any SPI. */
  readonly spi: number;
  readonly reqid: number;
  readonly mode: XfrmMode;
  readonly share: TemplateShare;
  /** `use` = optional (the SA may be missing), `required` otherwise (`level` in `ip xfrm`). */
  readonly level: 'required' | 'use';
  /** Algorithm bitmasks; 0xffffffff (all) unless restricted. */
  readonly authAlgorithmMask: number;
  readonly encryptionAlgorithmMask: number;
  readonly compressionAlgorithmMask: number;
}

/** The identity of a policy in the kernel. */
export interface PolicyId {
  readonly direction: PolicyDirection;
  readonly type: PolicyType;
  readonly selector: Selector;
  readonly mark: Mark | undefined;
  readonly ifId: number | undefined;
}

/** One Security Policy, as `ip xfrm policy` shows it. */
export interface SecurityPolicy {
  readonly id: PolicyId;
  readonly action: PolicyAction;
  readonly priority: number;
  /** 0 lets the kernel choose; the kernel's choice encodes the direction in its low 3 bits. */
  readonly index: number;
  readonly flags: readonly PolicyFlag[];
  readonly share: TemplateShare;
  readonly lifetime: LifetimeConfig;
  /** At most six (XFRM_MAX_DEPTH). */
  readonly templates: readonly PolicyTemplate[];
  readonly observed: { readonly current: LifetimeCurrent } | undefined;
}

/** Counts the kernel reports for the SAD (XFRM_MSG_NEWSADINFO). */
export interface SadInfo {
  readonly count: number;
  readonly hashBuckets: number;
  readonly maxHashBuckets: number;
}

/** Counts the kernel reports for the SPD (XFRM_MSG_NEWSPDINFO). */
export interface SpdInfo {
  readonly inbound: number;
  readonly outbound: number;
  readonly forward: number;
  readonly inboundSocket: number;
  readonly outboundSocket: number;
  readonly forwardSocket: number;
  readonly hashBuckets: number;
  readonly maxHashBuckets: number;
}
