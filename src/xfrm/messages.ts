/**
 * One builder per XFRM request and one parser per reply: pure functions from the model to
 * message bodies and back. The connection (src/netlink/connection.ts) adds the nlmsghdr,
 * sequence numbers and acknowledgements.
 */
import { AttributeDecoder, AttributeEncoder, type RawAttribute } from '../netlink/attributes.js';
import { NetlinkCodecError } from '../netlink/codec-error.js';
import { NLM_F_DUMP } from '../netlink/constants.js';
import type { NetlinkMessage } from '../netlink/message.js';
import * as K from './abi/constants.js';
import { xfrm_usersa_flush, xfrm_userpolicy_type, xfrmu_sadhinfo, xfrmu_spdhinfo, xfrmu_spdinfo } from './abi/structs.js';
import { indexAttributes, structAttribute, u32Attribute } from './body.js';
import { POLICY_TYPE, PROTOCOL } from './enums.js';
import { describePolicyId, encodePolicy, encodePolicyId, decodePolicy } from './policy-codec.js';
import { describeStateId, encodeState, encodeStateId, decodeState } from './state-codec.js';
import type { PolicyId, PolicyType, SadInfo, SecurityAssociation, SecurityPolicy, SpdInfo, StateId, XfrmProtocol } from './types.js';
import { decodeSequenceReport, encodeReplayThreshold, encodeSequenceQuery, replayThresholdAttribute, type SequenceReport } from './aevent-codec.js';
import { NLM_F_REPLACE } from '../netlink/constants.js';

/**
 * The replay threshold every SA is created with (XFRMA_REPLAY_THRESH): while the agent listens
 * on XFRMNLGRP_AEVENTS, the kernel reports an SA's counter each time it moved this far (and on
 * the SA's event timer), instead of every other packet (the sysctl default, 2). It equals the
 * step at which a sequence mark is persisted (../engine/sequence-rule.ts PERSIST_STEP), so a
 * report at a threshold crossing is a mark due to be written.
 */
export const SEQUENCE_REPORT_PACKETS = 1 << 16;

/** A request body with its message type, ready for the connection to frame and send. */
export interface XfrmRequest {
  readonly type: number;
  /** NLM_F_* flags besides NLM_F_REQUEST; NLM_F_DUMP marks a dump. */
  readonly flags: number;
  readonly body: Buffer;
  /** For errors and logs: `XFRM_MSG_NEWSA esp spi 0x00001000 dst 10.0.0.2`. Never contains keys. */
  readonly operation: string;
  /** The message type of the data reply (GET and info requests), if any. */
  readonly replyType?: number;
}

function request(type: number, body: Buffer, subject: string, extra: Partial<Pick<XfrmRequest, 'flags' | 'replyType'>> = {}): XfrmRequest {
  const operation = `${K.xfrmMessageName(type)}${subject ? ` ${subject}` : ''}`;
  const base = { type, flags: extra.flags ?? 0, body, operation };
  return extra.replyType === undefined ? base : { ...base, replyType: extra.replyType };
}

/**
 * NEWSA and UPDSA share one builder: only the message type differs. Both carry the replay
 * threshold SEQUENCE_REPORT_PACKETS (an UPDSA of a live SA ignores it, like the keys).
 */
function stateRequest(type: number, sa: SecurityAssociation): XfrmRequest {
  const subject = describeStateId(sa.id);
  const where = `${K.xfrmMessageName(type)} ${subject}`;
  return request(type, Buffer.concat([encodeState(sa, where), replayThresholdAttribute(SEQUENCE_REPORT_PACKETS, where)]), subject);
}

/** `ip xfrm state add ...` */
export function newStateRequest(sa: SecurityAssociation): XfrmRequest {
  return stateRequest(K.XFRM_MSG_NEWSA, sa);
}

/** `ip xfrm state get ID` for the replay state and thresholds only (XFRM_MSG_GETAE; the answer is a NEWAE). */
export function getSequenceReportRequest(id: StateId): XfrmRequest {
  const subject = describeStateId(id);
  return request(K.XFRM_MSG_GETAE, encodeSequenceQuery(id, `XFRM_MSG_GETAE ${subject}`), subject, { replyType: K.XFRM_MSG_NEWAE });
}

/** Sets one SA's replay threshold (XFRM_MSG_NEWAE; the kernel insists on NLM_F_REPLACE). */
export function setReplayThresholdRequest(id: StateId, packets: number): XfrmRequest {
  const subject = describeStateId(id);
  return request(K.XFRM_MSG_NEWAE, encodeReplayThreshold(id, packets, `XFRM_MSG_NEWAE ${subject}`), subject, { flags: NLM_F_REPLACE });
}

/** A sequence report from a NEWAE (the answer to a GETAE, or a notification). */
export function parseSequenceReport(message: NetlinkMessage): SequenceReport {
  const where = `${K.xfrmMessageName(message.type)} (seq ${message.sequence})`;
  expectType(message, [K.XFRM_MSG_NEWAE], where);
  return decodeSequenceReport(message.payload, where);
}

/** `ip xfrm state update ...` (the kernel changes only lifetimes, encap ports, care-of address, output mark and if_id of a live SA). */
export function updateStateRequest(sa: SecurityAssociation): XfrmRequest {
  return stateRequest(K.XFRM_MSG_UPDSA, sa);
}

/** `ip xfrm state get ID` */
export function getStateRequest(id: StateId): XfrmRequest {
  const subject = describeStateId(id);
  return request(K.XFRM_MSG_GETSA, encodeStateId(id, `XFRM_MSG_GETSA ${subject}`), subject, { replyType: K.XFRM_MSG_NEWSA });
}

/**
 * Asks the kernel whether it knows XFRMA_SA_DIR (Linux 6.10+) without changing anything: a
 * GETSA for SPI 0 carrying direction 0, outside the attribute's range (in 1, out 2). A kernel
 * that knows the attribute refuses while parsing, before any lookup (ERANGE or EINVAL); an
 * older one skips the unknown attribute and finds no such SA (ESRCH).
 */
export function stateDirectionProbeRequest(): XfrmRequest {
  const id: StateId = { family: 'inet', destination: '0.0.0.0', spi: 0, protocol: 'esp', mark: undefined };
  const where = 'XFRM_MSG_GETSA probe of XFRMA_SA_DIR';
  const direction = new AttributeEncoder(where, K.xfrmAttributeName).u8(K.XFRMA_SA_DIR, 0).finish();
  return request(K.XFRM_MSG_GETSA, Buffer.concat([encodeStateId(id, where), direction]), 'probe of XFRMA_SA_DIR', { replyType: K.XFRM_MSG_NEWSA });
}

/** `ip xfrm state delete ID` */
export function deleteStateRequest(id: StateId): XfrmRequest {
  const subject = describeStateId(id);
  return request(K.XFRM_MSG_DELSA, encodeStateId(id, `XFRM_MSG_DELSA ${subject}`), subject);
}

/** `ip xfrm state list` (a dump: header only, like iproute2). */
export function dumpStatesRequest(): XfrmRequest {
  return request(K.XFRM_MSG_GETSA, Buffer.alloc(0), 'dump', { flags: NLM_F_DUMP, replyType: K.XFRM_MSG_NEWSA });
}

/**
 * `ip xfrm state flush [proto P]`. Without a protocol, proto 0 as iproute2 sends it: every SA
 * (the kernel's xfrm_id_proto_match treats 0 as "any", Mobile IPv6 states included).
 */
export function flushStatesRequest(protocol?: XfrmProtocol): XfrmRequest {
  const proto = protocol === undefined ? 0 : PROTOCOL.toNumber(protocol);
  return request(K.XFRM_MSG_FLUSHSA, xfrm_usersa_flush.encode({ proto }), protocol === undefined ? 'all' : `proto ${protocol}`);
}

/** `ip xfrm state count` (XFRM_MSG_GETSADINFO; the u32 is echoed back, unused). */
export function sadInfoRequest(): XfrmRequest {
  return request(K.XFRM_MSG_GETSADINFO, Buffer.alloc(4), '', { replyType: K.XFRM_MSG_NEWSADINFO });
}

function policyRequest(type: number, policy: SecurityPolicy): XfrmRequest {
  const subject = describePolicyId(policy.id);
  return request(type, encodePolicy(policy, `${K.xfrmMessageName(type)} ${subject}`), subject);
}

/** `ip xfrm policy add ...` */
export function newPolicyRequest(policy: SecurityPolicy): XfrmRequest {
  return policyRequest(K.XFRM_MSG_NEWPOLICY, policy);
}

/** `ip xfrm policy update ...`: an atomic upsert that keeps the index. */
export function updatePolicyRequest(policy: SecurityPolicy): XfrmRequest {
  return policyRequest(K.XFRM_MSG_UPDPOLICY, policy);
}

/** `ip xfrm policy get SELECTOR dir DIR [ptype] [mark] [if_id]` */
export function getPolicyRequest(id: PolicyId): XfrmRequest {
  const subject = describePolicyId(id);
  return request(K.XFRM_MSG_GETPOLICY, encodePolicyId(id, `XFRM_MSG_GETPOLICY ${subject}`), subject, { replyType: K.XFRM_MSG_NEWPOLICY });
}

/** `ip xfrm policy delete SELECTOR dir DIR [ptype] [mark] [if_id]` */
export function deletePolicyRequest(id: PolicyId): XfrmRequest {
  const subject = describePolicyId(id);
  return request(K.XFRM_MSG_DELPOLICY, encodePolicyId(id, `XFRM_MSG_DELPOLICY ${subject}`), subject);
}

/** `ip xfrm policy list` (a dump of every type, main and sub). */
export function dumpPoliciesRequest(): XfrmRequest {
  return request(K.XFRM_MSG_GETPOLICY, Buffer.alloc(0), 'dump', { flags: NLM_F_DUMP, replyType: K.XFRM_MSG_NEWPOLICY });
}

/**
 * `ip xfrm policy flush [ptype sub]`: flushes one policy type (main unless `sub`), every
 * direction including per-socket policies.
 */
export function flushPoliciesRequest(type: PolicyType = 'main'): XfrmRequest {
  const encoder = new AttributeEncoder('XFRM_MSG_FLUSHPOLICY', K.xfrmAttributeName, 64);
  // No XFRMA_POLICY_TYPE means main, as iproute2 sends it.
  if (type !== 'main') {
    encoder.struct(K.XFRMA_POLICY_TYPE, xfrm_userpolicy_type, { type: POLICY_TYPE.toNumber(type), reserved1: 0, reserved2: 0 });
  }
  const body = encoder.finish();
  return request(K.XFRM_MSG_FLUSHPOLICY, body, `ptype ${type}`);
}

/** `ip xfrm policy count` (XFRM_MSG_GETSPDINFO). */
export function spdInfoRequest(): XfrmRequest {
  return request(K.XFRM_MSG_GETSPDINFO, Buffer.alloc(4), '', { replyType: K.XFRM_MSG_NEWSPDINFO });
}

function expectType(message: NetlinkMessage, types: readonly number[], where: string): void {
  if (!types.includes(message.type)) {
    throw new NetlinkCodecError(where, `got ${K.xfrmMessageName(message.type)}, expected ${types.map(K.xfrmMessageName).join(' or ')}`);
  }
}

/** An SA from a NEWSA (dump entry, GETSA reply) or UPDSA message. */
export function parseStateMessage(message: NetlinkMessage): SecurityAssociation {
  const where = `${K.xfrmMessageName(message.type)} (seq ${message.sequence})`;
  expectType(message, [K.XFRM_MSG_NEWSA, K.XFRM_MSG_UPDSA], where);
  return decodeState(message.payload, where);
}

/** A policy from a NEWPOLICY (dump entry, GETPOLICY reply) or UPDPOLICY message. */
export function parsePolicyMessage(message: NetlinkMessage): SecurityPolicy {
  const where = `${K.xfrmMessageName(message.type)} (seq ${message.sequence})`;
  expectType(message, [K.XFRM_MSG_NEWPOLICY, K.XFRM_MSG_UPDPOLICY], where);
  return decodePolicy(message.payload, where);
}

function infoAttributes(message: NetlinkMessage, where: string, names: (type: number) => string): Map<number, RawAttribute> {
  if (message.payload.length < 4) throw new NetlinkCodecError(where, `${message.payload.length}-byte payload, the u32 flags need 4`);
  const decoder = new AttributeDecoder(message.payload.subarray(4), where, names);
  decoder.finish();
  return indexAttributes(decoder.all);
}

/** XFRM_MSG_NEWSADINFO: u32 flags, XFRMA_SAD_CNT, XFRMA_SAD_HINFO. */
export function parseSadInfo(message: NetlinkMessage): SadInfo {
  const where = `XFRM_MSG_NEWSADINFO (seq ${message.sequence})`;
  expectType(message, [K.XFRM_MSG_NEWSADINFO], where);
  const names = (type: number): string => ({ [K.XFRMA_SAD_CNT]: 'XFRMA_SAD_CNT', [K.XFRMA_SAD_HINFO]: 'XFRMA_SAD_HINFO' })[type] ?? `XFRMA_SAD attribute ${type}`;
  const attributes = infoAttributes(message, where, names);
  const hinfo = structAttribute(attributes, K.XFRMA_SAD_HINFO, xfrmu_sadhinfo, where);
  return {
    count: u32Attribute(attributes, K.XFRMA_SAD_CNT, where) ?? 0,
    hashBuckets: hinfo?.sadhcnt ?? 0,
    maxHashBuckets: hinfo?.sadhmcnt ?? 0,
  };
}

/** XFRM_MSG_NEWSPDINFO: u32 flags, XFRMA_SPD_INFO, XFRMA_SPD_HINFO (and hash thresholds, unused). */
export function parseSpdInfo(message: NetlinkMessage): SpdInfo {
  const where = `XFRM_MSG_NEWSPDINFO (seq ${message.sequence})`;
  expectType(message, [K.XFRM_MSG_NEWSPDINFO], where);
  const names = (type: number): string =>
    ({
      [K.XFRMA_SPD_INFO]: 'XFRMA_SPD_INFO',
      [K.XFRMA_SPD_HINFO]: 'XFRMA_SPD_HINFO',
      [K.XFRMA_SPD_IPV4_HTHRESH]: 'XFRMA_SPD_IPV4_HTHRESH',
      [K.XFRMA_SPD_IPV6_HTHRESH]: 'XFRMA_SPD_IPV6_HTHRESH',
    })[type] ?? `XFRMA_SPD attribute ${type}`;
  const attributes = infoAttributes(message, where, names);
  const info = structAttribute(attributes, K.XFRMA_SPD_INFO, xfrmu_spdinfo, where);
  const hinfo = structAttribute(attributes, K.XFRMA_SPD_HINFO, xfrmu_spdhinfo, where);
  return {
    inbound: info?.incnt ?? 0,
    outbound: info?.outcnt ?? 0,
    forward: info?.fwdcnt ?? 0,
    inboundSocket: info?.inscnt ?? 0,
    outboundSocket: info?.outscnt ?? 0,
    forwardSocket: info?.fwdscnt ?? 0,
    hashBuckets: hinfo?.spdhcnt ?? 0,
    maxHashBuckets: hinfo?.spdhmcnt ?? 0,
  };
}
