/**
 * IP protocol names for selectors, as /etc/protocols and `ip xfrm` name them. Kept as a table
 * rather than read from /etc/protocols so that manifests mean the same on every node and in
 * minimal container images.
 */
const PROTOCOLS: ReadonlyArray<readonly [string, number]> = [
  ['icmp', 1],
  ['igmp', 2],
  ['ipip', 4],
  ['tcp', 6],
  ['egp', 8],
  ['udp', 17],
  ['dccp', 33],
  ['ipv6', 41],
  ['rsvp', 46],
  ['gre', 47],
  ['esp', 50],
  ['ah', 51],
  ['ipv6-icmp', 58],
  ['ospf', 89],
  ['pim', 103],
  ['comp', 108],
  ['vrrp', 112],
  ['l2tp', 115],
  ['sctp', 132],
  ['mh', 135],
  ['udplite', 136],
  ['mpls', 137],
];

const numberByName = new Map(PROTOCOLS);
const nameByNumber = new Map(PROTOCOLS.map(([name, number]) => [number, name]));

/** Protocol number for a name or decimal text; undefined when neither. */
export function protocolNumber(text: string): number | undefined {
  if (/^\d{1,3}$/.test(text)) {
    const number = Number(text);
    return number <= 255 ? number : undefined;
  }
  return numberByName.get(text);
}

/** The name a manifest uses for a protocol number (decimal text when it has no name). */
export function protocolName(number: number): string {
  return nameByNumber.get(number) ?? String(number);
}

export const ICMP_PROTOCOLS: ReadonlySet<number> = new Set([1, 58]);
export const PORT_PROTOCOLS: ReadonlySet<number> = new Set([6, 17, 33, 132, 136]);
