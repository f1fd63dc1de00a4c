/**
 * The common case of decoding a policy message, straight from the bytes: a policy of family
 * inet or inet6 in direction in/out/fwd, with no attributes but XFRMA_TMPL, XFRMA_MARK,
 * XFRMA_IF_ID, XFRMA_POLICY_TYPE (and any the model ignores), every value one the model names.
 * That is every entry of a dump of our own policies, and decoding 10,000 of them through the
 * generic path (struct objects from the layout tables, a view per address, an attribute list
 * and a Map per message) was a third of a no-op pass.
 *
 * Anything else — a short or malformed body, a selector of family AF_UNSPEC, a per-socket
 * policy, a security context, an unknown family, protocol, mode, action or share — returns
 * undefined, and the caller decodes the message the generic way (./policy-codec.ts), which
 * gives the entry or the error. Same result either way: test/unit/xfrm-policy-fast-decode.test.ts
 * compares the two over every shape of the kernel tests and over corrupted bodies.
 *
 * Offsets come from the layout tables (./abi/structs.ts), which the layout test checks
 * against the kernel's headers.
 */
import { NLA_HDRLEN } from '../netlink/align.js';
import { NLA_TYPE_MASK } from '../netlink/constants.js';
import { u64 } from '../netlink/layout.js';
import * as K from './abi/constants.js';
import { xfrm_id, xfrm_lifetime_cfg, xfrm_lifetime_cur, xfrm_mark, xfrm_selector, xfrm_user_tmpl, xfrm_userpolicy_info } from './abi/structs.js';
import { formatAddressAt } from './address.js';
import { FAMILY, MODE, POLICY_ACTION, POLICY_DIRECTION, POLICY_FLAGS, POLICY_TYPE, PROTOCOL, SHARE } from './enums.js';
import type { AddressFamily, LifetimeConfig, PolicyTemplate, SecurityPolicy, Selector } from './types.js';

const info = xfrm_userpolicy_info.fields;
const sel = xfrm_selector.fields;
const lft = xfrm_lifetime_cfg.fields;
const cur = xfrm_lifetime_cur.fields;
const tmpl = xfrm_user_tmpl.fields;
const id = xfrm_id.fields;
const SEL = info.sel.offset;
const LFT = info.lft.offset;
const CUR = info.curlft.offset;
const INFO_SPACE = (xfrm_userpolicy_info.size + 3) & ~3;
const TMPL_SIZE = xfrm_user_tmpl.size;

/** The policy in `payload` (a NEWPOLICY body), or undefined: decode it the generic way. */
export function decodePolicyFast(payload: Buffer): SecurityPolicy | undefined {
  if (payload.length < xfrm_userpolicy_info.size) return undefined;
  const direction = POLICY_DIRECTION.lookup(payload[info.dir.offset]!);
  const action = POLICY_ACTION.lookup(payload[info.action.offset]!);
  const share = SHARE.lookup(payload[info.share.offset]!);
  const family = FAMILY.lookup(payload.readUInt16LE(SEL + sel.family.offset));
  if (!direction || !action || !share || !family) return undefined;

  // Attributes: the last of each type counts (as indexAttributes keeps it).
  let templates = -1;
  let templatesLength = 0;
  let mark = -1;
  let ifId = -1;
  let type = -1;
  let offset = Math.min(INFO_SPACE, payload.length);
  while (offset < payload.length) {
    const remaining = payload.length - offset;
    if (remaining < NLA_HDRLEN) return undefined;
    const length = payload.readUInt16LE(offset);
    if (length < NLA_HDRLEN || length > remaining) return undefined;
    const attribute = payload.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
    const start = offset + NLA_HDRLEN;
    const size = length - NLA_HDRLEN;
    if (attribute === K.XFRMA_SEC_CTX) return undefined;
    if (attribute === K.XFRMA_TMPL) {
      if (size % TMPL_SIZE !== 0) return undefined;
      templates = start;
      templatesLength = size;
    } else if (attribute === K.XFRMA_MARK) {
      if (size < xfrm_mark.size) return undefined;
      mark = start;
    } else if (attribute === K.XFRMA_IF_ID) {
      if (size < 4) return undefined;
      ifId = start;
    } else if (attribute === K.XFRMA_POLICY_TYPE) {
      if (size < 1) return undefined;
      type = start;
    }
    offset += Math.min((length + 3) & ~3, remaining);
  }
  const policyType = type === -1 ? 'main' : POLICY_TYPE.lookup(payload[type]!);
  if (!policyType) return undefined;
  const decodedTemplates = templates === -1 ? [] : decodeTemplates(payload, templates, templatesLength);
  if (!decodedTemplates) return undefined;

  const selector: Selector = {
    family,
    source: { address: formatAddressAt(family, payload, SEL + sel.saddr.offset), prefixLength: payload[SEL + sel.prefixlen_s.offset]! },
    destination: { address: formatAddressAt(family, payload, SEL + sel.daddr.offset), prefixLength: payload[SEL + sel.prefixlen_d.offset]! },
    protocol: payload[SEL + sel.proto.offset]!,
    sourcePort: payload.readUInt16BE(SEL + sel.sport.offset),
    sourcePortMask: payload.readUInt16BE(SEL + sel.sport_mask.offset),
    destinationPort: payload.readUInt16BE(SEL + sel.dport.offset),
    destinationPortMask: payload.readUInt16BE(SEL + sel.dport_mask.offset),
    ifindex: payload.readInt32LE(SEL + sel.ifindex.offset),
    user: payload.readUInt32LE(SEL + sel.user.offset),
  };
  return {
    id: {
      direction,
      type: policyType,
      selector,
      mark: mark === -1 ? undefined : { value: payload.readUInt32LE(mark), mask: payload.readUInt32LE(mark + 4) },
      ifId: ifId === -1 ? undefined : payload.readUInt32LE(ifId),
    },
    action,
    priority: payload.readUInt32LE(info.priority.offset),
    index: payload.readUInt32LE(info.index.offset),
    flags: POLICY_FLAGS.fromBits(payload[info.flags.offset]!),
    share,
    lifetime: lifetimeAt(payload, LFT),
    templates: decodedTemplates,
    observed: {
      current: {
        bytes: u64.read(payload, CUR + cur.bytes.offset),
        packets: u64.read(payload, CUR + cur.packets.offset),
        addTime: u64.read(payload, CUR + cur.add_time.offset),
        useTime: u64.read(payload, CUR + cur.use_time.offset),
      },
    },
  };
}

function lifetimeAt(payload: Buffer, at: number): LifetimeConfig {
  return {
    softByteLimit: u64.read(payload, at + lft.soft_byte_limit.offset),
    hardByteLimit: u64.read(payload, at + lft.hard_byte_limit.offset),
    softPacketLimit: u64.read(payload, at + lft.soft_packet_limit.offset),
    hardPacketLimit: u64.read(payload, at + lft.hard_packet_limit.offset),
    softAddExpiresSeconds: u64.read(payload, at + lft.soft_add_expires_seconds.offset),
    hardAddExpiresSeconds: u64.read(payload, at + lft.hard_add_expires_seconds.offset),
    softUseExpiresSeconds: u64.read(payload, at + lft.soft_use_expires_seconds.offset),
    hardUseExpiresSeconds: u64.read(payload, at + lft.hard_use_expires_seconds.offset),
  };
}

function decodeTemplates(payload: Buffer, start: number, length: number): PolicyTemplate[] | undefined {
  const templates: PolicyTemplate[] = [];
  for (let at = start; at < start + length; at += TMPL_SIZE) {
    const family: AddressFamily | undefined = FAMILY.lookup(payload.readUInt16LE(at + tmpl.family.offset));
    const protocol = PROTOCOL.lookup(payload[at + tmpl.id.offset + id.proto.offset]!);
    const mode = MODE.lookup(payload[at + tmpl.mode.offset]!);
    const share = SHARE.lookup(payload[at + tmpl.share.offset]!);
    if (!family || !protocol || !mode || !share) return undefined;
    templates.push({
      family,
      source: formatAddressAt(family, payload, at + tmpl.saddr.offset),
      destination: formatAddressAt(family, payload, at + tmpl.id.offset + id.daddr.offset),
      protocol,
      spi: payload.readUInt32BE(at + tmpl.id.offset + id.spi.offset),
      reqid: payload.readUInt32LE(at + tmpl.reqid.offset),
      mode,
      share,
      level: payload[at + tmpl.optional.offset] ? 'use' : 'required',
      authAlgorithmMask: payload.readUInt32LE(at + tmpl.aalgos.offset),
      encryptionAlgorithmMask: payload.readUInt32LE(at + tmpl.ealgos.offset),
      compressionAlgorithmMask: payload.readUInt32LE(at + tmpl.calgos.offset),
    });
  }
  return templates;
}
