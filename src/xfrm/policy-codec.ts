/**
 * SecurityPolicy ↔ struct xfrm_userpolicy_info + XFRMA_* attributes (the body of
 * XFRM_MSG_NEWPOLICY / UPDPOLICY requests and of NEWPOLICY replies and events), and PolicyId ↔
 * struct xfrm_userpolicy_id (GETPOLICY / DELPOLICY).
 *
 * Attributes follow `ip xfrm policy add` (iproute2 ip/xfrm_policy.c) in content and order:
 * XFRMA_POLICY_TYPE (only for `ptype sub`; absent means main), one XFRMA_TMPL holding every
 * template, XFRMA_MARK, XFRMA_IF_ID.
 *
 * Kernel facts the decoder reflects: `share` is not stored by the kernel (always reported as
 * `any`); XFRMA_POLICY_TYPE is reported only by kernels built with CONFIG_XFRM_SUB_POLICY
 * (absent = main); XFRMA_MARK only when value|mask is non-zero; XFRMA_IF_ID only when non-zero.
 */
import { AttributeEncoder, type RawAttribute } from '../netlink/attributes.js';
import { NetlinkCodecError, UnsupportedEntryError } from '../netlink/codec-error.js';
import * as K from './abi/constants.js';
import {
  xfrm_lifetime_cur,
  xfrm_mark,
  xfrm_user_tmpl,
  xfrm_userpolicy_id,
  xfrm_userpolicy_info,
  xfrm_userpolicy_type,
  type RawSelector,
  type RawUserpolicyInfo,
  type RawUserTmpl,
} from './abi/structs.js';
import { formatAddress, formatPrefix } from './address.js';
import { FAMILY, MODE, POLICY_ACTION, POLICY_DIRECTION, POLICY_FLAGS, POLICY_TYPE, PROTOCOL, SHARE } from './enums.js';
import { addressBytes, decodeLifetime, decodeLifetimeCurrent, decodeSelector, encodeLifetime, encodeSelector } from './selector.js';
import { isU32, markAttribute, splitBody, u32Attribute } from './body.js';
import { decodePolicyFast } from './policy-fast-decode.js';
import type { PolicyDirection, PolicyId, PolicyTemplate, PolicyType, SecurityPolicy, Selector } from './types.js';

/** `ip`-like text of a selector: `10.0.0.0/24 -> 10.0.1.0/24 proto 6 dport 443`. */
export function describeSelector(selector: Selector): string {
  const parts = [`${formatPrefix(selector.source)} -> ${formatPrefix(selector.destination)}`];
  if (selector.protocol !== 0) parts.push(`proto ${selector.protocol}`);
  if (selector.sourcePortMask !== 0) parts.push(`sport ${selector.sourcePort}`);
  if (selector.destinationPortMask !== 0) parts.push(`dport ${selector.destinationPort}`);
  if (selector.ifindex !== 0) parts.push(`ifindex ${selector.ifindex}`);
  return parts.join(' ');
}

/** `dir out ptype sub 10.0.0.0/24 -> 10.0.1.0/24 mark 0x5/0xff`: how a policy is named in errors. */
export function describePolicyId(id: PolicyId): string {
  const parts = [`dir ${id.direction}`];
  if (id.type !== 'main') parts.push(`ptype ${id.type}`);
  parts.push(describeSelector(id.selector));
  if (id.mark) parts.push(`mark 0x${id.mark.value.toString(16)}/0x${id.mark.mask.toString(16)}`);
  if (id.ifId !== undefined) parts.push(`if_id ${id.ifId}`);
  return parts.join(' ');
}

function validateId(id: PolicyId): string | undefined {
  if (id.selector.family === undefined) return 'a policy selector needs a family (inet or inet6)';
  if (id.mark && (!isU32(id.mark.value) || !isU32(id.mark.mask))) return `mark ${id.mark.value}/${id.mark.mask} is not two 32-bit values`;
  if (id.ifId !== undefined && !isU32(id.ifId)) return `if_id ${id.ifId} is not a 32-bit value`;
  return undefined;
}

/** What the kernel would refuse, checked before sending. Returns the first problem or undefined. */
export function validatePolicy(policy: SecurityPolicy): string | undefined {
  const idProblem = validateId(policy.id);
  if (idProblem) return idProblem;
  if (!isU32(policy.priority)) return `priority ${policy.priority} is not a 32-bit value`;
  if (!isU32(policy.index)) return `index ${policy.index} is not a 32-bit value`;
  const dir = POLICY_DIRECTION.toNumber(policy.id.direction);
  // xfrm_policy_id2dir(): the kernel keeps the direction in the low 3 bits of the index.
  if (policy.index !== 0 && (policy.index & 7) !== dir) {
    return `index ${policy.index} encodes direction ${policy.index & 7}, but the policy is dir ${policy.id.direction} (${dir})`;
  }
  if (policy.templates.length > K.XFRM_MAX_DEPTH) return `${policy.templates.length} templates, the kernel allows at most ${K.XFRM_MAX_DEPTH}`;
  for (const [i, template] of policy.templates.entries()) {
    if (!isU32(template.spi)) return `template ${i}: SPI ${template.spi} is not a 32-bit value`;
    if (!isU32(template.reqid)) return `template ${i}: reqid ${template.reqid} is not a 32-bit value`;
    for (const mask of [template.authAlgorithmMask, template.encryptionAlgorithmMask, template.compressionAlgorithmMask]) {
      if (!isU32(mask)) return `template ${i}: algorithm mask ${mask} is not a 32-bit value`;
    }
  }
  return undefined;
}

function encodeTemplate(template: PolicyTemplate, index: number, where: string): RawUserTmpl {
  const what = `template ${index}`;
  return {
    id: {
      daddr: addressBytes(template.family, template.destination, `${what} destination`, where),
      spi: template.spi,
      proto: PROTOCOL.toNumber(template.protocol),
    },
    family: FAMILY.toNumber(template.family),
    saddr: addressBytes(template.family, template.source, `${what} source`, where),
    reqid: template.reqid,
    mode: MODE.toNumber(template.mode),
    share: SHARE.toNumber(template.share),
    optional: template.level === 'use' ? 1 : 0,
    aalgos: template.authAlgorithmMask,
    ealgos: template.encryptionAlgorithmMask,
    calgos: template.compressionAlgorithmMask,
  };
}

/** The identity attributes every policy message carries after its fixed struct. */
function encodeIdentityAttributes(encoder: AttributeEncoder, id: PolicyId, templates: readonly PolicyTemplate[] | undefined, where: string): void {
  if (id.type !== 'main') {
    encoder.struct(K.XFRMA_POLICY_TYPE, xfrm_userpolicy_type, { type: POLICY_TYPE.toNumber(id.type), reserved1: 0, reserved2: 0 });
  }
  if (templates && templates.length > 0) {
    const bytes = encoder.attempt('XFRMA_TMPL', () => {
      // One buffer for every template, each written in place (not one buffer each, concatenated).
      const out = Buffer.alloc(templates.length * xfrm_user_tmpl.size);
      templates.forEach((template, i) => xfrm_user_tmpl.encodeInto(out, i * xfrm_user_tmpl.size, encodeTemplate(template, i, where)));
      return out;
    });
    if (bytes) encoder.bytes(K.XFRMA_TMPL, bytes);
  }
  if (id.mark) encoder.struct(K.XFRMA_MARK, xfrm_mark, { v: id.mark.value, m: id.mark.mask });
  if (id.ifId !== undefined) encoder.u32(K.XFRMA_IF_ID, id.ifId);
}

/** A request's curlft: the kernel ignores it on NEWPOLICY/UPDPOLICY; zero, like iproute2. */
const NO_CURRENT_LIFETIME = Object.freeze(xfrm_lifetime_cur.zero());
/** Room for the info struct, one template, a mark and an if_id without growing the buffer. */
const POLICY_REQUEST_CAPACITY = 256;

/** The body of XFRM_MSG_NEWPOLICY / XFRM_MSG_UPDPOLICY. Throws NetlinkCodecError. */
export function encodePolicy(policy: SecurityPolicy, where = `policy ${describePolicyId(policy.id)}`): Buffer {
  const problem = validatePolicy(policy);
  if (problem) throw new NetlinkCodecError(where, problem);
  const encoder = new AttributeEncoder(where, K.xfrmAttributeName, POLICY_REQUEST_CAPACITY);
  const info = encoder.attempt('xfrm_userpolicy_info', () => {
    const raw: RawUserpolicyInfo = {
      sel: encodeSelector(policy.id.selector, where),
      lft: encodeLifetime(policy.lifetime),
      curlft: NO_CURRENT_LIFETIME,
      priority: policy.priority,
      index: policy.index,
      dir: POLICY_DIRECTION.toNumber(policy.id.direction),
      action: POLICY_ACTION.toNumber(policy.action),
      flags: POLICY_FLAGS.toBits(policy.flags),
      share: SHARE.toNumber(policy.share),
    };
    return raw;
  });
  // Written into the message in place (not encoded apart and copied in).
  if (info) encoder.headerStruct(xfrm_userpolicy_info, info, 'xfrm_userpolicy_info');
  encodeIdentityAttributes(encoder, policy.id, policy.templates, where);
  return encoder.finish();
}

/**
 * struct xfrm_userpolicy_id (+ type, mark, if_id): the body of XFRM_MSG_GETPOLICY /
 * DELPOLICY, which find the policy by direction, type, selector bytes, mark and if_id (index 0).
 */
export function encodePolicyId(id: PolicyId, where = `policy ${describePolicyId(id)}`): Buffer {
  const problem = validateId(id);
  if (problem) throw new NetlinkCodecError(where, problem);
  const encoder = new AttributeEncoder(where, K.xfrmAttributeName);
  const head = encoder.attempt('xfrm_userpolicy_id', () =>
    xfrm_userpolicy_id.encode({ sel: encodeSelector(id.selector, where), index: 0, dir: POLICY_DIRECTION.toNumber(id.direction) }),
  );
  if (head) encoder.header(head);
  encodeIdentityAttributes(encoder, id, undefined, where);
  return encoder.finish();
}

function decodeTemplates(attribute: RawAttribute | undefined, where: string): PolicyTemplate[] {
  if (!attribute) return [];
  const size = xfrm_user_tmpl.size;
  if (attribute.payload.length % size !== 0) {
    throw new NetlinkCodecError(where, `XFRMA_TMPL has ${attribute.payload.length} bytes, not a multiple of struct xfrm_user_tmpl (${size})`);
  }
  const templates: PolicyTemplate[] = [];
  for (let offset = 0; offset < attribute.payload.length; offset += size) {
    const raw = xfrm_user_tmpl.read(attribute.payload, offset);
    const what = `template ${offset / size}`;
    const family = FAMILY.lookup(raw.family);
    if (!family) throw new UnsupportedEntryError(where, `${what}: address family ${raw.family}`);
    const protocol = PROTOCOL.lookup(raw.id.proto);
    if (!protocol) throw new UnsupportedEntryError(where, `${what}: protocol ${raw.id.proto} is not esp, ah or ipcomp`);
    const mode = MODE.lookup(raw.mode);
    if (!mode) throw new UnsupportedEntryError(where, `${what}: mode ${raw.mode} is not known to this version`);
    templates.push({
      family,
      source: formatAddress(family, raw.saddr),
      destination: formatAddress(family, raw.id.daddr),
      protocol,
      spi: raw.id.spi,
      reqid: raw.reqid,
      mode,
      share: SHARE.fromNumber(raw.share, `${where}: ${what} share`),
      level: raw.optional ? 'use' : 'required',
      authAlgorithmMask: raw.aalgos,
      encryptionAlgorithmMask: raw.ealgos,
      compressionAlgorithmMask: raw.calgos,
    });
  }
  return templates;
}

function policyType(attributes: Map<number, RawAttribute>, where: string): PolicyType {
  const attribute = attributes.get(K.XFRMA_POLICY_TYPE);
  if (!attribute) return 'main';
  if (attribute.payload.length < 1) throw new NetlinkCodecError(where, 'XFRMA_POLICY_TYPE has an empty payload');
  // struct xfrm_userpolicy_type starts with the __u8 type.
  return POLICY_TYPE.fromNumber(attribute.payload.readUInt8(0), `${where}: policy type`);
}

/** The model direction of a kernel dir, or UnsupportedEntryError for per-socket policies (3..5). */
export function policyDirection(dir: number, where: string): PolicyDirection {
  const direction = POLICY_DIRECTION.lookup(dir);
  if (direction) return direction;
  if (dir >= K.XFRM_POLICY_MAX && dir < 2 * K.XFRM_POLICY_MAX) {
    throw new UnsupportedEntryError(where, `per-socket policy (dir ${dir}), not part of the SPD model`);
  }
  throw new NetlinkCodecError(where, `policy direction ${dir} is not 0..5`);
}

function policyIdFrom(selector: RawSelector, dir: number, attributes: Map<number, RawAttribute>, where: string): PolicyId {
  return {
    direction: policyDirection(dir, where),
    type: policyType(attributes, where),
    selector: decodeSelector(selector, where),
    mark: markAttribute(attributes, where),
    ifId: u32Attribute(attributes, K.XFRMA_IF_ID, where),
  };
}

/** The policy described by a decoded xfrm_userpolicy_info and the message's attributes. */
export function decodePolicyFrom(info: RawUserpolicyInfo, attributes: Map<number, RawAttribute>, where: string): SecurityPolicy {
  // A labelled policy (XFRMA_SEC_CTX, SELinux/Smack) is a different kernel identity from any
  // policy this model can express: the kernel matches the context exactly, and our requests
  // carry none, so they can never touch it. Kept out of the model (counted as skipped, i.e.
  // foreign) rather than decoded into a key it would share with an unlabelled policy.
  if (attributes.has(K.XFRMA_SEC_CTX)) throw new UnsupportedEntryError(where, 'policy with a security context (labelled IPsec), not part of the SPD model');
  const id = policyIdFrom(info.sel, info.dir, attributes, where);
  return {
    id,
    action: POLICY_ACTION.fromNumber(info.action, `${where}: action`),
    priority: info.priority,
    index: info.index,
    flags: POLICY_FLAGS.fromBits(info.flags),
    share: SHARE.fromNumber(info.share, `${where}: share`),
    lifetime: decodeLifetime(info.lft),
    templates: decodeTemplates(attributes.get(K.XFRMA_TMPL), where),
    observed: { current: decodeLifetimeCurrent(info.curlft) },
  };
}

/** Decodes the body of a NEWPOLICY / UPDPOLICY / GETPOLICY reply. */
export function decodePolicy(payload: Buffer, where = 'XFRM policy'): SecurityPolicy {
  // Our own policies, and nearly every other, take the direct path; the rest (and every error) this one.
  return decodePolicyFast(payload) ?? decodePolicyByTable(payload, where);
}

/** decodePolicy through the layout tables alone: every shape, and every error (exported for the test that compares the two). */
export function decodePolicyByTable(payload: Buffer, where = 'XFRM policy'): SecurityPolicy {
  const { head, attributes } = splitBody(payload, xfrm_userpolicy_info, where);
  return decodePolicyFrom(head, attributes, where);
}

/** Decodes struct xfrm_userpolicy_id and its attributes (the head of a DELPOLICY event). */
export function decodePolicyId(payload: Buffer, where = 'XFRM policy id'): { id: PolicyId; index: number } {
  const { head, attributes } = splitBody(payload, xfrm_userpolicy_id, where);
  return { id: policyIdFrom(head.sel, head.dir, attributes, where), index: head.index };
}
