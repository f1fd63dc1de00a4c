/**
 * Parsing and canonical printing of the addresses and prefixes users write in manifests.
 * The canonical form is the one the kernel codec prints (and `ip xfrm` shows), so desired
 * and observed entries compare as plain strings.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { AddressFamily, Prefix } from '../xfrm/types.js';

export interface ParsedAddress {
  readonly family: AddressFamily;
  readonly address: string;
}

/** Canonical text of an address, or undefined when `text` is not an IPv4 or IPv6 address. */
export function parseAddress(text: string): ParsedAddress | undefined {
  if (isIPv4(text)) {
    return { family: 'inet', address: text.split('.').map((octet) => String(Number(octet))).join('.') };
  }
  if (isIPv6(text) && !text.includes('%')) {
    // WHATWG URL serialisation of an IPv6 host is RFC 5952: lower case, longest zero run
    // compressed, embedded IPv4 rewritten as hex, exactly what `ip` prints.
    const host = new URL(`http://[${text}]/`).hostname;
    return { family: 'inet6', address: host.slice(1, -1) };
  }
  return undefined;
}

export const ADDRESS_BITS: Record<AddressFamily, number> = { inet: 32, inet6: 128 };

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
  const parsed = parseAddress(addressText);
  if (!parsed) return `"${addressText}" is not an IPv4 or IPv6 address`;
  const maxBits = ADDRESS_BITS[parsed.family];
  let prefixLength = maxBits;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > maxBits) {
      return `prefix length "${lengthText}" must be 0..${maxBits}`;
    }
    prefixLength = Number(lengthText);
  }
  if (!hostBitsClear(parsed, prefixLength)) {
    return `${text} has bits set beyond /${prefixLength}: write the network address or a longer prefix`;
  }
  return { family: parsed.family, address: parsed.address, prefixLength };
}

function addressBytes(parsed: ParsedAddress): Buffer {
  if (parsed.family === 'inet') return Buffer.from(parsed.address.split('.').map(Number));
  const [head = '', tail = ''] = parsed.address.split('::') as [string, string?];
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const left = groups(head);
  const right = parsed.address.includes('::') ? groups(tail) : [];
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((group, index) => bytes.writeUInt16BE(parseInt(group, 16), index * 2));
  return bytes;
}

function hostBitsClear(parsed: ParsedAddress, prefixLength: number): boolean {
  const bytes = addressBytes(parsed);
  for (let bit = prefixLength; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}

// The unspecified address of a family (`0.0.0.0` / `::`): the codec's own definition.
export { anyAddress } from '../xfrm/address.js';
