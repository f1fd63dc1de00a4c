/**
 * struct xfrm_selector ↔ Selector, and the lifetime structs ↔ LifetimeConfig/LifetimeCurrent:
 * the pieces SAs and policies share.
 */
import { NetlinkCodecError } from '../netlink/codec-error.js';
import { AF_UNSPEC } from './abi/constants.js';
import type { RawLifetimeCfg, RawLifetimeCur, RawSelector } from './abi/structs.js';
import { AddressError, formatAddress, maxPrefixLength, parseAddress } from './address.js';
import { FAMILY } from './enums.js';
import type { AddressFamily, LifetimeConfig, LifetimeCurrent, Prefix, Selector } from './types.js';

function checkU16(value: number, what: string, where: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new NetlinkCodecError(where, `${what} ${value} is not 0..65535`);
}

function prefixBytes(prefix: Prefix, family: AddressFamily | undefined, what: string, where: string): Buffer {
  let parsed;
  try {
    parsed = parseAddress(prefix.address);
  } catch (error) {
    throw new NetlinkCodecError(where, `${what}: ${(error as AddressError).message}`);
  }
  if (family !== undefined && parsed.family !== family) {
    throw new NetlinkCodecError(where, `${what} ${prefix.address} is not ${family}, the selector's family`);
  }
  const max = maxPrefixLength(parsed.family);
  if (!Number.isInteger(prefix.prefixLength) || prefix.prefixLength < 0 || prefix.prefixLength > max) {
    throw new NetlinkCodecError(where, `${what} prefix length ${prefix.prefixLength} is not 0..${max}`);
  }
  const out = Buffer.alloc(16);
  parsed.bytes.copy(out);
  return out;
}

/**
 * The raw selector. Ports and masks are host order here; the layout writes them big-endian.
 * A selector without a family (SAs that match any inner traffic) is AF_UNSPEC.
 */
export function encodeSelector(selector: Selector, where: string): RawSelector {
  checkU16(selector.sourcePort, 'source port', where);
  checkU16(selector.sourcePortMask, 'source port mask', where);
  checkU16(selector.destinationPort, 'destination port', where);
  checkU16(selector.destinationPortMask, 'destination port mask', where);
  if (!Number.isInteger(selector.protocol) || selector.protocol < 0 || selector.protocol > 255) {
    throw new NetlinkCodecError(where, `selector protocol ${selector.protocol} is not 0..255`);
  }
  if (!Number.isInteger(selector.ifindex) || selector.ifindex < 0 || selector.ifindex > 0x7fff_ffff) {
    throw new NetlinkCodecError(where, `selector ifindex ${selector.ifindex} is not a valid interface index`);
  }
  if (!Number.isInteger(selector.user) || selector.user < 0 || selector.user > 0xffff_ffff) {
    throw new NetlinkCodecError(where, `selector user ${selector.user} is not a uid`);
  }
  return {
    daddr: prefixBytes(selector.destination, selector.family, 'selector destination', where),
    saddr: prefixBytes(selector.source, selector.family, 'selector source', where),
    dport: selector.destinationPort,
    dport_mask: selector.destinationPortMask,
    sport: selector.sourcePort,
    sport_mask: selector.sourcePortMask,
    family: selector.family === undefined ? AF_UNSPEC : FAMILY.toNumber(selector.family),
    prefixlen_d: selector.destination.prefixLength,
    prefixlen_s: selector.source.prefixLength,
    proto: selector.protocol,
    ifindex: selector.ifindex,
    user: selector.user,
  };
}

/** Text of an address whose family is unknown (AF_UNSPEC selectors): IPv4 when it fits. */
function unspecifiedFamilyAddress(bytes: Buffer): string {
  return bytes.subarray(4).every((byte) => byte === 0) ? formatAddress('inet', bytes) : formatAddress('inet6', bytes);
}

export function decodeSelector(raw: RawSelector, where: string): Selector {
  const family = raw.family === AF_UNSPEC ? undefined : FAMILY.fromNumber(raw.family, `${where}: selector family`);
  const text = (bytes: Buffer): string => (family === undefined ? unspecifiedFamilyAddress(bytes) : formatAddress(family, bytes));
  return {
    family,
    source: { address: text(raw.saddr), prefixLength: raw.prefixlen_s },
    destination: { address: text(raw.daddr), prefixLength: raw.prefixlen_d },
    protocol: raw.proto,
    sourcePort: raw.sport,
    sourcePortMask: raw.sport_mask,
    destinationPort: raw.dport,
    destinationPortMask: raw.dport_mask,
    ifindex: raw.ifindex,
    user: raw.user,
  };
}

export function encodeLifetime(lifetime: LifetimeConfig): RawLifetimeCfg {
  return {
    soft_byte_limit: lifetime.softByteLimit,
    hard_byte_limit: lifetime.hardByteLimit,
    soft_packet_limit: lifetime.softPacketLimit,
    hard_packet_limit: lifetime.hardPacketLimit,
    soft_add_expires_seconds: lifetime.softAddExpiresSeconds,
    hard_add_expires_seconds: lifetime.hardAddExpiresSeconds,
    soft_use_expires_seconds: lifetime.softUseExpiresSeconds,
    hard_use_expires_seconds: lifetime.hardUseExpiresSeconds,
  };
}

export function decodeLifetime(raw: RawLifetimeCfg): LifetimeConfig {
  return {
    softByteLimit: raw.soft_byte_limit,
    hardByteLimit: raw.hard_byte_limit,
    softPacketLimit: raw.soft_packet_limit,
    hardPacketLimit: raw.hard_packet_limit,
    softAddExpiresSeconds: raw.soft_add_expires_seconds,
    hardAddExpiresSeconds: raw.hard_add_expires_seconds,
    softUseExpiresSeconds: raw.soft_use_expires_seconds,
    hardUseExpiresSeconds: raw.hard_use_expires_seconds,
  };
}

export function decodeLifetimeCurrent(raw: RawLifetimeCur): LifetimeCurrent {
  return { bytes: raw.bytes, packets: raw.packets, addTime: raw.add_time, useTime: raw.use_time };
}

/** Ensures an address string parses in `family`; returns its 16-byte xfrm_address_t. */
export function addressBytes(family: AddressFamily, text: string, what: string, where: string): Buffer {
  let parsed;
  try {
    parsed = parseAddress(text);
  } catch (error) {
    throw new NetlinkCodecError(where, `${what}: ${(error as Error).message}`);
  }
  if (parsed.family !== family) throw new NetlinkCodecError(where, `${what} ${text} is not ${family}`);
  const out = Buffer.alloc(16);
  parsed.bytes.copy(out);
  return out;
}
