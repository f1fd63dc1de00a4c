/**
 * Default values and small constructors for the model, matching what `ip xfrm ... add` fills
 * in when an option is not given. Handy for tests, the CLI and the model layer; the codec never
 * relies on them.
 */
import { anyAddress, parsePrefix } from './address.js';
import type {
  AddressFamily,
  LifetimeConfig,
  PolicyTemplate,
  ReplayConfig,
  SecurityAssociation,
  SecurityPolicy,
  Selector,
} from './types.js';
import { XFRM_INFINITY } from './types.js';

/**
 * No limits, as `ip xfrm` sends when no `limit` is given: byte and packet limits are
 * XFRM_INFINITY, time limits 0. Zero is the kernel's "no expiry" for the time limits; an
 * infinite time limit would be wrong, as the kernel adds it to the creation time (it wraps and
 * the SA or policy expires at once).
 */
export const DEFAULT_LIFETIME: LifetimeConfig = Object.freeze({
  softByteLimit: XFRM_INFINITY,
  hardByteLimit: XFRM_INFINITY,
  softPacketLimit: XFRM_INFINITY,
  hardPacketLimit: XFRM_INFINITY,
  softAddExpiresSeconds: 0n,
  hardAddExpiresSeconds: 0n,
  softUseExpiresSeconds: 0n,
  hardUseExpiresSeconds: 0n,
});

/** Template algorithm masks meaning "any algorithm" (`ip` prints ffffffff). */
export const ALL_ALGORITHMS = 0xffff_ffff;

/** A selector matching all traffic of a family (0.0.0.0/0 or ::/0, any protocol and port). */
export function anySelector(family: AddressFamily): Selector {
  const any = { address: anyAddress(family), prefixLength: 0 };
  return {
    family,
    source: any,
    destination: any,
    protocol: 0,
    sourcePort: 0,
    sourcePortMask: 0,
    destinationPort: 0,
    destinationPortMask: 0,
    ifindex: 0,
    user: 0,
  };
}

export interface SelectorOptions {
  /** `10.0.0.0/24` or an address (full length). */
  readonly source: string;
  readonly destination: string;
  readonly protocol?: number;
  /** A port sets its mask to 0xffff, like `ip ... sport 80`. */
  readonly sourcePort?: number;
  readonly destinationPort?: number;
  /** ICMP type and code travel in the source and destination port fields. */
  readonly icmpType?: number;
  readonly icmpCode?: number;
  readonly ifindex?: number;
}

/** A selector as `ip xfrm policy add src S dst D [proto P [sport|type ...] [dport|code ...]] [dev]` builds it. */
export function makeSelector(options: SelectorOptions): Selector {
  const source = parsePrefix(options.source);
  const destination = parsePrefix(options.destination);
  const family: AddressFamily = source.address.includes(':') ? 'inet6' : 'inet';
  const sourcePort = options.sourcePort ?? options.icmpType;
  const destinationPort = options.destinationPort ?? options.icmpCode;
  return {
    family,
    source,
    destination,
    protocol: options.protocol ?? 0,
    sourcePort: sourcePort ?? 0,
    sourcePortMask: sourcePort === undefined ? 0 : 0xffff,
    destinationPort: destinationPort ?? 0,
    destinationPortMask: destinationPort === undefined ? 0 : 0xffff,
    ifindex: options.ifindex ?? 0,
    user: 0,
  };
}

/** A template with `ip`'s defaults (share any, level required, all algorithms). */
export function makeTemplate(template: Pick<PolicyTemplate, 'protocol'> & Partial<PolicyTemplate>): PolicyTemplate {
  const family = template.family ?? (template.destination?.includes(':') || template.source?.includes(':') ? 'inet6' : 'inet');
  return {
    family,
    source: template.source ?? anyAddress(family),
    destination: template.destination ?? anyAddress(family),
    protocol: template.protocol,
    spi: template.spi ?? 0,
    reqid: template.reqid ?? 0,
    mode: template.mode ?? 'transport',
    share: template.share ?? 'any',
    level: template.level ?? 'required',
    authAlgorithmMask: template.authAlgorithmMask ?? ALL_ALGORITHMS,
    encryptionAlgorithmMask: template.encryptionAlgorithmMask ?? ALL_ALGORITHMS,
    compressionAlgorithmMask: template.compressionAlgorithmMask ?? ALL_ALGORITHMS,
  };
}

export type PolicyOptions = Pick<SecurityPolicy['id'], 'direction' | 'selector'> &
  Partial<Pick<SecurityPolicy['id'], 'type' | 'mark' | 'ifId'>> &
  Partial<Omit<SecurityPolicy, 'id'>>;

/** A policy with `ip xfrm policy add`'s defaults (allow, priority 0, index chosen by the kernel, main). */
export function makePolicy(options: PolicyOptions): SecurityPolicy {
  return {
    id: {
      direction: options.direction,
      type: options.type ?? 'main',
      selector: options.selector,
      mark: options.mark,
      ifId: options.ifId,
    },
    action: options.action ?? 'allow',
    priority: options.priority ?? 0,
    index: options.index ?? 0,
    flags: options.flags ?? [],
    share: options.share ?? 'any',
    lifetime: options.lifetime ?? DEFAULT_LIFETIME,
    templates: options.templates ?? [],
    observed: options.observed,
  };
}

/** The replay configuration the codec will report back for a window (ESN attribute above 32 or with ESN). */
export function replayConfig(window: number, options: { esn?: boolean } = {}): ReplayConfig {
  return { window, useEsnAttribute: options.esn === true || window > 32 };
}

export type StateOptions = Pick<SecurityAssociation, 'id' | 'source' | 'algorithms'> & Partial<Omit<SecurityAssociation, 'id' | 'source' | 'algorithms'>>;

/** An SA with `ip xfrm state add`'s defaults (transport, reqid 0, no replay window, selector of the SA's family). */
export function makeState(options: StateOptions): SecurityAssociation {
  return {
    id: options.id,
    source: options.source,
    mode: options.mode ?? 'transport',
    reqid: options.reqid ?? 0,
    selector: options.selector ?? anySelector(options.id.family),
    algorithms: options.algorithms,
    replay: options.replay ?? { window: 0, useEsnAttribute: false },
    flags: options.flags ?? [],
    extraFlags: options.extraFlags ?? [],
    lifetime: options.lifetime ?? DEFAULT_LIFETIME,
    encapsulation: options.encapsulation,
    outputMark: options.outputMark,
    ifId: options.ifId,
    tfcPad: options.tfcPad,
    direction: options.direction,
    careOfAddress: options.careOfAddress,
    observed: options.observed,
  };
}
