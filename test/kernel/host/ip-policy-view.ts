/**
 * The key fields of each policy as `ip -s -d xfrm policy list` prints them, and the same fields
 * computed from our decoded model: comparing the two checks our codec against iproute2's own
 * decoding of the kernel's reply. The parser reads ip's text only; it shares nothing with the
 * codec.
 */
import type { SecurityPolicy } from '../../../src/xfrm/types.js';

export interface PolicyView {
  selector: string;
  dir: string;
  action: string;
  index: number;
  priority: number;
  ptype: string;
  flags: string;
  limits: string[];
  mark: string | undefined;
  ifId: string | undefined;
  templates: string[];
}

/** Parses `ip -s -d xfrm policy list` output into one view per policy. */
export function parseIpPolicies(text: string): PolicyView[] {
  const blocks: string[][] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('src ')) blocks.push([line]);
    else if (line.trim() !== '') blocks.at(-1)?.push(line);
  }
  return blocks.map((lines) => {
    const selector = lines[0]!.replace(/ uid \d+$/, '').trim();
    const head = lines[1]!.trim();
    const field = (name: string): string => new RegExp(`\\b${name} (\\S+)`).exec(head)?.[1] ?? '';
    const flags = /flag (.*?) \(0x/.exec(head)?.[1]?.trim() ?? '';
    const limits = lines.filter((l) => /^\s+(limit|expire)/.test(l)).map((l) => l.trim());
    const mark = lines.find((l) => /^\tmark /.test(l))?.trim().split(/\s+/)[1];
    const ifId = lines.find((l) => /^\tif_id /.test(l))?.trim().split(/\s+/)[1];
    const templates: string[] = [];
    for (let i = 0; i < lines.length; i += 1) {
      const line = lines[i]!;
      if (!line.startsWith('\ttmpl ')) continue;
      const addresses = line.trim().replace(/^tmpl /, '');
      const protoLine = lines[i + 1]!.trim();
      const levelLine = lines[i + 2]!.trim();
      const masks = lines[i + 3]!.trim();
      const proto = /proto (\S+)/.exec(protoLine)?.[1];
      const spi = /spi (0x[0-9a-f]+)/.exec(protoLine)?.[1];
      const reqid = /reqid (\d+)/.exec(protoLine)?.[1];
      const mode = /mode (\S+)/.exec(protoLine)?.[1];
      templates.push(`${addresses} proto ${proto} spi ${spi} reqid ${reqid} mode ${mode} | ${levelLine} | ${masks}`);
    }
    return {
      selector,
      dir: field('dir'),
      action: field('action'),
      index: Number(field('index')),
      priority: Number(field('priority')),
      ptype: field('ptype'),
      flags,
      limits,
      mark,
      ifId,
      templates,
    };
  });
}

const PROTOCOL_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 33: 'dccp', 47: 'gre', 58: 'ipv6-icmp', 132: 'sctp', 135: 'mobility-header' };
const hex32 = (value: number): string => `0x${value.toString(16)}`;
const limit = (value: bigint): string => (value === 0xffff_ffff_ffff_ffffn ? '(INF)' : value.toString());

/** The same view computed from a decoded policy (`deviceName` maps ifindex to a name). */
export function viewOf(policy: SecurityPolicy, deviceName: (ifindex: number) => string): PolicyView {
  const s = policy.id.selector;
  const parts = [`src ${s.source.address}/${s.source.prefixLength} dst ${s.destination.address}/${s.destination.prefixLength}`];
  if (s.protocol !== 0) {
    parts.push(`proto ${PROTOCOL_NAMES[s.protocol] ?? s.protocol}`);
    if (s.protocol === 1 || s.protocol === 58 || s.protocol === 135) {
      if (s.sourcePortMask) parts.push(`type ${s.sourcePort}`);
      if (s.destinationPortMask) parts.push(`code ${s.destinationPort}`);
    } else if (s.protocol === 47) {
      if (s.sourcePortMask || s.destinationPortMask) parts.push(`key ${s.sourcePort * 65536 + s.destinationPort}`);
    } else {
      if (s.sourcePortMask) parts.push(`sport ${s.sourcePort}`);
      if (s.destinationPortMask) parts.push(`dport ${s.destinationPort}`);
    }
  }
  if (s.ifindex !== 0) parts.push(`dev ${deviceName(s.ifindex)}`);
  const lt = policy.lifetime;
  return {
    selector: parts.join(' '),
    dir: policy.id.direction,
    action: policy.action,
    index: policy.index,
    priority: policy.priority,
    ptype: policy.id.type,
    flags: policy.flags.join(' '),
    limits: [
      `limit: soft ${limit(lt.softByteLimit)}(bytes), hard ${limit(lt.hardByteLimit)}(bytes)`,
      `limit: soft ${limit(lt.softPacketLimit)}(packets), hard ${limit(lt.hardPacketLimit)}(packets)`,
      `expire add: soft ${lt.softAddExpiresSeconds}(sec), hard ${lt.hardAddExpiresSeconds}(sec)`,
      `expire use: soft ${lt.softUseExpiresSeconds}(sec), hard ${lt.hardUseExpiresSeconds}(sec)`,
    ],
    mark: policy.id.mark ? `${hex32(policy.id.mark.value)}/${hex32(policy.id.mark.mask)}` : undefined,
    ifId: policy.id.ifId === undefined ? undefined : hex32(policy.id.ifId),
    templates: policy.templates.map((t) => {
      const proto = t.protocol === 'ipcomp' ? 'comp' : t.protocol;
      const mask = (m: number): string => m.toString(16).padStart(8, '0');
      return (
        `src ${t.source} dst ${t.destination} proto ${proto} spi 0x${t.spi.toString(16).padStart(8, '0')} reqid ${t.reqid} mode ${t.mode} | ` +
        `level ${t.level} share ${t.share} | enc-mask ${mask(t.encryptionAlgorithmMask)} auth-mask ${mask(t.authAlgorithmMask)} comp-mask ${mask(t.compressionAlgorithmMask)}`
      );
    }),
  };
}
