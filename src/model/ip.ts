/**
 * The addresses and prefixes users write in manifests, parsed by the codec's own parser
 * (../xfrm/address.ts) so that the model and the kernel codec have one canonical form: what
 * the codec prints for a dumped entry is exactly what the model builds for the desired one
 * (`::ffff:192.0.2.1` stays that, never `::ffff:c000:201`), and the planner compares them as
 * strings. This module only adds what manifests need beyond the codec: results instead of
 * exceptions, and the refusal of host bits beyond a prefix length.
 */
import type { AddressFamily, Prefix } from '../xfrm/types.js';
import { AddressError, formatAddress, maxPrefixLength, parseAddress as parseCodecAddress } from '../xfrm/address.js';
import { quoted } from '../crd/echo.js';

export interface ParsedAddress {
  readonly family: AddressFamily;
  readonly address: string;
}

interface ParsedBytes extends ParsedAddress {
  readonly bytes: Buffer;
}

function parse(text: string): ParsedBytes | undefined {
  try {
    const parsed = parseCodecAddress(text);
    return { family: parsed.family, address: formatAddress(parsed.family, parsed.bytes), bytes: parsed.bytes };
  } catch (error) {
    if (error instanceof AddressError) return undefined;
    throw error;
  }
}

/** Canonical text of an address, or undefined when `text` is not an IPv4 or IPv6 address. */
export function parseAddress(text: string): ParsedAddress | undefined {
  const parsed = parse(text);
  return parsed && { family: parsed.family, address: parsed.address };
}

export const ADDRESS_BITS: Record<AddressFamily, number> = { inet: maxPrefixLength('inet'), inet6: maxPrefixLength('inet6') };

export interface ParsedPrefix extends Prefix {
  readonly family: AddressFamily;
}

/**
 * Parses `ADDRESS[/LENGTH]`; a bare address is a host prefix. Host bits beyond the length are
 * an error rather than silently masked: `10.0.0.1/24` is almost always a typo for one of
 * `10.0.0.0/24` or `10.0.0.1/32`, and guessing would install a policy matching the wrong traffic.
 */
export function parsePrefix(text: string): ParsedPrefix | string {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const parsed = parse(addressText);
  if (!parsed) return `${quoted(addressText)} is not an IPv4 or IPv6 address`;
  const maxBits = ADDRESS_BITS[parsed.family];
  let prefixLength = maxBits;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lengthText) || Number(lengthText) > maxBits) {
      return `prefix length ${quoted(lengthText)} must be 0..${maxBits}`;
    }
    prefixLength = Number(lengthText);
  }
  if (!hostBitsClear(parsed.bytes, prefixLength)) {
    return `${quoted(text)} has bits set beyond /${prefixLength}: write the network address or a longer prefix`;
  }
  return { family: parsed.family, address: parsed.address, prefixLength };
}

function hostBitsClear(bytes: Buffer, prefixLength: number): boolean {
  for (let bit = prefixLength; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}

// The unspecified address of a family (`0.0.0.0` / `::`): the codec's own definition.
export { anyAddress } from '../xfrm/address.js';
