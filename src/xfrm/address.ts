/**
 * IP addresses between the model (canonical strings) and the ABI (xfrm_address_t: 16 bytes in
 * network order, IPv4 in the first 4).
 *
 * Canonical text is what `ip xfrm` prints, so model values, CLI output and `ip` output compare
 * as strings: IPv4 dotted quad; IPv6 per RFC 5952 (lowercase, no leading zeros, the longest run
 * of two or more zero groups — the first on a tie — as `::`), with glibc's inet_ntop rule for
 * embedded IPv4: `::ffff:a.b.c.d` (mapped) and `::a.b.c.d` (compatible, when the low 32 bits
 * are not just the last group).
 */
import type { AddressFamily, Prefix } from './types.js';

export class AddressError extends Error {
  override readonly name = 'AddressError';
}

export interface ParsedAddress {
  readonly family: AddressFamily;
  /** 4 bytes for inet, 16 for inet6. */
  readonly bytes: Buffer;
}

function parseIPv4(text: string): Buffer | undefined {
  // A hand-written scanner: this runs for every address of every request in large batches.
  const out = Buffer.alloc(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i += 1) {
    const code = i < text.length ? text.charCodeAt(i) : 46; // end acts as a final '.'
    if (code === 46) {
      if (digits === 0 || part > 3) return undefined;
      out[part] = value;
      part += 1;
      value = 0;
      digits = 0;
      continue;
    }
    if (code < 48 || code > 57) return undefined;
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (digits === 1 && value === 0) return undefined;
    value = value * 10 + (code - 48);
    digits += 1;
    if (value > 255) return undefined;
  }
  return part === 4 ? out : undefined;
}

function parseIPv6(text: string): Buffer | undefined {
  if (text.length === 0 || text.includes('%')) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (half: string): number[] | undefined => {
    if (half === '') return [];
    const groups: number[] = [];
    const parts = half.split(':');
    for (let i = 0; i < parts.length; i += 1) {
      const part = parts[i] ?? '';
      if (i === parts.length - 1 && part.includes('.')) {
        const v4 = parseIPv4(part);
        if (!v4) return undefined;
        groups.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined;
        groups.push(parseInt(part, 16));
      }
    }
    return groups;
  };
  const head = groupsOf(halves[0] ?? '');
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  if (!head || !tail) return undefined;
  // An embedded IPv4 is only allowed at the very end.
  if (halves.length === 2 && (halves[0] ?? '').includes('.')) return undefined;
  const explicit = head.length + tail.length;
  if (halves.length === 1 ? explicit !== 8 : explicit > 7) return undefined;
  const groups = [...head, ...new Array<number>(8 - explicit).fill(0), ...tail];
  const out = Buffer.alloc(16);
  groups.forEach((group, i) => out.writeUInt16BE(group, i * 2));
  return out;
}

/** Parses an IPv4 or IPv6 address (no prefix, no zone). Throws AddressError. */
export function parseAddress(text: string): ParsedAddress {
  if (typeof text !== 'string') throw new AddressError(`address must be a string, got ${typeof text}`);
  const v4 = parseIPv4(text);
  if (v4) return { family: 'inet', bytes: v4 };
  const v6 = text.includes(':') ? parseIPv6(text) : undefined;
  if (v6) return { family: 'inet6', bytes: v6 };
  throw new AddressError(`"${text}" is not an IPv4 or IPv6 address`);
}

/** The family of an address string. Throws AddressError. */
export function addressFamily(text: string): AddressFamily {
  return parseAddress(text).family;
}

/**
 * IPv4 text by value, so that an address repeated over a table is one string: a dump or the
 * manifests of 10,000 policies repeat a few addresses (the peer, 0.0.0.0) tens of thousands of
 * times, and one string per field was 1.7 MB of the CLI's peak heap at 10,000 policies (a heap
 * snapshot: 60,002 address strings). Bounded: emptied when full, so a table of many distinct
 * addresses costs a Map insert per address and holds at most this many.
 */
const IPV4_TEXT = new Map<number, string>();
const IPV4_TEXT_CAPACITY = 4096;

function formatIPv4(bytes: Buffer, offset = 0): string {
  const value = bytes.readUInt32BE(offset);
  let text = IPV4_TEXT.get(value);
  if (text === undefined) {
    if (IPV4_TEXT.size >= IPV4_TEXT_CAPACITY) IPV4_TEXT.clear();
    text = `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
    IPV4_TEXT.set(value, text);
  }
  return text;
}

function formatIPv6(bytes: Buffer): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i += 1) words.push(bytes.readUInt16BE(i * 2));
  let bestBase = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestBase = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestLength < 2) bestBase = -1; // RFC 5952 4.2.2: a single zero group is not shortened
  const embeddedV4 = bestBase === 0 && (bestLength === 6 || (bestLength === 5 && words[5] === 0xffff));
  let out = '';
  for (let i = 0; i < 8; i += 1) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLength) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && embeddedV4) {
      out += formatIPv4(bytes, 12);
      break;
    }
    out += (words[i] ?? 0).toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLength === 8) out += ':';
  return out;
}

/** Canonical text of 4 (inet) or 16 (inet6) address bytes; for inet, extra bytes are ignored. */
export function formatAddress(family: AddressFamily, bytes: Buffer): string {
  if (family === 'inet') {
    if (bytes.length < 4) throw new AddressError(`an IPv4 address needs 4 bytes, got ${bytes.length}`);
    return formatIPv4(bytes);
  }
  if (bytes.length < 16) throw new AddressError(`an IPv6 address needs 16 bytes, got ${bytes.length}`);
  return formatIPv6(bytes);
}

/** formatAddress of the xfrm_address_t at `offset` of `buffer` (without a view of its own for IPv4). */
export function formatAddressAt(family: AddressFamily, buffer: Buffer, offset: number): string {
  if (family === 'inet') {
    if (buffer.length < offset + 4) throw new AddressError(`an IPv4 address needs 4 bytes, got ${Math.max(0, buffer.length - offset)}`);
    return formatIPv4(buffer, offset);
  }
  return formatAddress(family, buffer.subarray(offset, offset + 16));
}

/** The canonical form of an address string (`fd00:0::01` → `fd00::1`). Throws AddressError. */
export function canonicalAddress(text: string): string {
  const parsed = parseAddress(text);
  return formatAddress(parsed.family, parsed.bytes);
}

/** The unspecified address of a family: `0.0.0.0` or `::`. */
export function anyAddress(family: AddressFamily): string {
  return family === 'inet' ? '0.0.0.0' : '::';
}

/** Maximum prefix length of a family. */
export function maxPrefixLength(family: AddressFamily): number {
  return family === 'inet' ? 32 : 128;
}

/** Parses `10.0.0.0/24`, `fd00::/64` or a bare address (full length). Throws AddressError. */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const parsed = parseAddress(address);
  const max = maxPrefixLength(parsed.family);
  let prefixLength = max;
  if (slash !== -1) {
    const lengthText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lengthText) || Number(lengthText) > max) {
      throw new AddressError(`"${text}": prefix length must be 0..${max}`);
    }
    prefixLength = Number(lengthText);
  }
  return { address: formatAddress(parsed.family, parsed.bytes), prefixLength };
}

/** `10.0.0.0/24`, as `ip` prints a selector prefix. */
export function formatPrefix(prefix: Prefix): string {
  return `${prefix.address}/${prefix.prefixLength}`;
}
