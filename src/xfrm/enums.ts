/**
 * The kernel's numbers for the model's named values, both ways. One table per enum; a number
 * the model has no name for is a codec error naming the field (decoding) and a name the kernel
 * has no number for cannot be written (the types prevent it).
 */
import { NetlinkCodecError } from '../netlink/codec-error.js';
import * as K from './abi/constants.js';
import type {
  AddressFamily,
  EncapType,
  PolicyAction,
  PolicyDirection,
  PolicyFlag,
  PolicyType,
  StateDirection,
  StateExtraFlag,
  StateFlag,
  TemplateShare,
  XfrmMode,
  XfrmProtocol,
} from './types.js';

/** A two-way table between a string union and kernel numbers. */
export class EnumTable<Name extends string> {
  readonly #byName: ReadonlyMap<Name, number>;
  readonly #byNumber: ReadonlyMap<number, Name>;

  constructor(
    /** The C field or enum, for errors: `xfrm_usersa_info.mode`. */
    readonly field: string,
    entries: Readonly<Record<Name, number>>,
  ) {
    const pairs = Object.entries(entries) as Array<[Name, number]>;
    this.#byName = new Map(pairs);
    this.#byNumber = new Map(pairs.map(([name, value]) => [value, name]));
  }

  toNumber(name: Name): number {
    const value = this.#byName.get(name);
    if (value === undefined) throw new NetlinkCodecError(this.field, `"${String(name)}" is not one of ${[...this.#byName.keys()].join(', ')}`);
    return value;
  }

  /** The name of a kernel value, or undefined when the model has none. */
  lookup(value: number): Name | undefined {
    return this.#byNumber.get(value);
  }

  fromNumber(value: number, where: string = this.field): Name {
    const name = this.#byNumber.get(value);
    if (name === undefined) throw new NetlinkCodecError(where, `unknown ${this.field} value ${value}`);
    return name;
  }
}

export const FAMILY = new EnumTable<AddressFamily>('address family', { inet: K.AF_INET, inet6: K.AF_INET6 });

export const PROTOCOL = new EnumTable<XfrmProtocol>('xfrm_id.proto', {
  esp: K.IPPROTO_ESP,
  ah: K.IPPROTO_AH,
  ipcomp: K.IPPROTO_COMP,
});

export const MODE = new EnumTable<XfrmMode>('XFRM_MODE', {
  transport: K.XFRM_MODE_TRANSPORT,
  tunnel: K.XFRM_MODE_TUNNEL,
  ro: K.XFRM_MODE_ROUTEOPTIMIZATION,
  in_trigger: K.XFRM_MODE_IN_TRIGGER,
  beet: K.XFRM_MODE_BEET,
});

export const SHARE = new EnumTable<TemplateShare>('XFRM_SHARE', {
  any: K.XFRM_SHARE_ANY,
  session: K.XFRM_SHARE_SESSION,
  user: K.XFRM_SHARE_USER,
  unique: K.XFRM_SHARE_UNIQUE,
});

export const POLICY_DIRECTION = new EnumTable<PolicyDirection>('xfrm_userpolicy_info.dir', {
  in: K.XFRM_POLICY_IN,
  out: K.XFRM_POLICY_OUT,
  fwd: K.XFRM_POLICY_FWD,
});

export const POLICY_ACTION = new EnumTable<PolicyAction>('xfrm_userpolicy_info.action', {
  allow: K.XFRM_POLICY_ALLOW,
  block: K.XFRM_POLICY_BLOCK,
});

export const POLICY_TYPE = new EnumTable<PolicyType>('xfrm_userpolicy_type.type', {
  main: K.XFRM_POLICY_TYPE_MAIN,
  sub: K.XFRM_POLICY_TYPE_SUB,
});

export const ENCAP_TYPE = new EnumTable<EncapType>('xfrm_encap_tmpl.encap_type', {
  'espinudp-nonike': K.UDP_ENCAP_ESPINUDP_NON_IKE,
  espinudp: K.UDP_ENCAP_ESPINUDP,
  espintcp: K.TCP_ENCAP_ESPINTCP,
});

export const STATE_DIRECTION = new EnumTable<StateDirection>('XFRMA_SA_DIR', {
  in: K.XFRM_SA_DIR_IN,
  out: K.XFRM_SA_DIR_OUT,
});

/** A set of named bits in an integer field, listed in bit order. */
export class FlagTable<Name extends string> {
  readonly #bits: ReadonlyArray<readonly [Name, number]>;

  constructor(
    readonly field: string,
    bits: Readonly<Record<Name, number>>,
  ) {
    this.#bits = (Object.entries(bits) as Array<[Name, number]>).sort((a, b) => a[1] - b[1]);
  }

  toBits(names: readonly Name[]): number {
    let value = 0;
    for (const name of names) {
      const bit = this.#bits.find(([candidate]) => candidate === name)?.[1];
      if (bit === undefined) throw new NetlinkCodecError(this.field, `unknown flag "${String(name)}"`);
      value |= bit;
    }
    return value >>> 0;
  }

  /** Named flags set in `value`, in bit order; bits without a name are dropped. */
  fromBits(value: number): Name[] {
    return this.#bits.filter(([, bit]) => (value & bit) !== 0).map(([name]) => name);
  }

  /** Bits of `value` that have no name. */
  unknownBits(value: number): number {
    return this.#bits.reduce((rest, [, bit]) => rest & ~bit, value) >>> 0;
  }
}

export const STATE_FLAGS = new FlagTable<StateFlag>('xfrm_usersa_info.flags', {
  noecn: K.XFRM_STATE_NOECN,
  'decap-dscp': K.XFRM_STATE_DECAP_DSCP,
  nopmtudisc: K.XFRM_STATE_NOPMTUDISC,
  wildrecv: K.XFRM_STATE_WILDRECV,
  icmp: K.XFRM_STATE_ICMP,
  'af-unspec': K.XFRM_STATE_AF_UNSPEC,
  align4: K.XFRM_STATE_ALIGN4,
  esn: K.XFRM_STATE_ESN,
});

export const STATE_EXTRA_FLAGS = new FlagTable<StateExtraFlag>('XFRMA_SA_EXTRA_FLAGS', {
  'dont-encap-dscp': K.XFRM_SA_XFLAG_DONT_ENCAP_DSCP,
  'oseq-may-wrap': K.XFRM_SA_XFLAG_OSEQ_MAY_WRAP,
});

export const POLICY_FLAGS = new FlagTable<PolicyFlag>('xfrm_userpolicy_info.flags', {
  localok: K.XFRM_POLICY_LOCALOK,
  icmp: K.XFRM_POLICY_ICMP,
});
