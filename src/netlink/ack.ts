/**
 * Acknowledgements: NLMSG_ERROR (an errno, 0 for success, and the request's header) and the
 * errno some NLMSG_DONE carry, each with the extended-ack TLVs the kernel adds when
 * NETLINK_EXT_ACK is on (NLMSGERR_ATTR_MSG: why, NLMSGERR_ATTR_OFFS: where in the request).
 */
import { nlmsgAlign, NLMSG_HDRLEN } from './align.js';
import { AttributeDecoder } from './attributes.js';
import { NetlinkCodecError } from './codec-error.js';
import {
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_COOKIE,
  NLMSGERR_ATTR_MISS_NEST,
  NLMSGERR_ATTR_MISS_TYPE,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  NLMSGERR_SIZE,
} from './constants.js';
import { nlmsgerr } from './headers.js';
import type { NetlinkHeaderFields, NetlinkMessage } from './message.js';

export interface ExtendedAck {
  /** NLMSGERR_ATTR_MSG: the kernel's reason, e.g. "Requested AEAD algorithm not found". */
  readonly message: string | undefined;
  /** NLMSGERR_ATTR_OFFS: byte offset of the offending attribute from the start of the request's nlmsghdr. */
  readonly offset: number | undefined;
  /** NLMSGERR_ATTR_MISS_TYPE: type of a required attribute that was missing. */
  readonly missingType: number | undefined;
  /** NLMSGERR_ATTR_MISS_NEST: offset of the nest that lacked it. */
  readonly missingNestOffset: number | undefined;
  readonly cookie: Buffer | undefined;
}

export const NO_EXTENDED_ACK: ExtendedAck = Object.freeze({
  message: undefined,
  offset: undefined,
  missingType: undefined,
  missingNestOffset: undefined,
  cookie: undefined,
});

export interface Acknowledgement {
  /** Positive errno; 0 means success. */
  readonly errno: number;
  /** The header of the request this answers (its sequence number matches the request). */
  readonly request: NetlinkHeaderFields & { readonly length: number };
  readonly extendedAck: ExtendedAck;
}

const TLV_NAMES = (type: number): string =>
  ({
    [NLMSGERR_ATTR_MSG]: 'NLMSGERR_ATTR_MSG',
    [NLMSGERR_ATTR_OFFS]: 'NLMSGERR_ATTR_OFFS',
    [NLMSGERR_ATTR_COOKIE]: 'NLMSGERR_ATTR_COOKIE',
    [NLMSGERR_ATTR_MISS_TYPE]: 'NLMSGERR_ATTR_MISS_TYPE',
    [NLMSGERR_ATTR_MISS_NEST]: 'NLMSGERR_ATTR_MISS_NEST',
  })[type] ?? `NLMSGERR attribute ${type}`;

/** Reads the extended-ack TLVs of an error or done message. */
export function parseExtendedAck(tlvs: Buffer, where: string): ExtendedAck {
  const decoder = new AttributeDecoder(tlvs, where, TLV_NAMES);
  let message: string | undefined;
  let offset: number | undefined;
  let missingType: number | undefined;
  let missingNestOffset: number | undefined;
  let cookie: Buffer | undefined;
  while (decoder.next()) {
    switch (decoder.type) {
      case NLMSGERR_ATTR_MSG:
        message = decoder.string();
        break;
      case NLMSGERR_ATTR_OFFS:
        offset = decoder.u32();
        break;
      case NLMSGERR_ATTR_MISS_TYPE:
        missingType = decoder.u32();
        break;
      case NLMSGERR_ATTR_MISS_NEST:
        missingNestOffset = decoder.u32();
        break;
      case NLMSGERR_ATTR_COOKIE:
        cookie = decoder.bytes();
        break;
      default:
        break; // NLMSGERR_ATTR_POLICY and future TLVs: not needed to explain a refusal
    }
  }
  decoder.finish();
  return { message, offset, missingType, missingNestOffset, cookie };
}

/** Decodes an NLMSG_ERROR message (error or success acknowledgement). */
export function parseAcknowledgement(message: NetlinkMessage): Acknowledgement {
  const where = `NLMSG_ERROR (seq ${message.sequence})`;
  if (message.type !== NLMSG_ERROR) throw new NetlinkCodecError(where, `message type ${message.type} is not NLMSG_ERROR`);
  const payload = message.payload;
  if (payload.length < NLMSGERR_SIZE) {
    throw new NetlinkCodecError(where, `${payload.length}-byte payload, struct nlmsgerr needs ${NLMSGERR_SIZE}`);
  }
  const raw = nlmsgerr.read(payload, 0);
  const request = {
    length: raw.msg.nlmsg_len,
    type: raw.msg.nlmsg_type,
    flags: raw.msg.nlmsg_flags,
    sequence: raw.msg.nlmsg_seq,
    portId: raw.msg.nlmsg_pid,
  };
  const errno = raw.error === 0 ? 0 : -raw.error; // never -0
  if (errno < 0) throw new NetlinkCodecError(where, `positive error field ${raw.error}: not an errno`);
  // Without NLM_F_CAPPED the kernel echoes the whole request after the header (errors only,
  // when NETLINK_CAP_ACK is off); the TLVs follow the echo.
  let tlvStart = NLMSGERR_SIZE;
  if ((message.flags & NLM_F_CAPPED) === 0 && errno !== 0) {
    const echoed = Math.max(request.length - NLMSG_HDRLEN, 0);
    tlvStart = 4 + nlmsgAlign(NLMSG_HDRLEN + echoed);
    if (tlvStart > payload.length) {
      // An echo longer than what arrived: older kernels never add TLVs after a cut echo.
      tlvStart = payload.length;
    }
  }
  const extendedAck =
    (message.flags & NLM_F_ACK_TLVS) !== 0 ? parseExtendedAck(payload.subarray(tlvStart), `extended ack of ${where}`) : NO_EXTENDED_ACK;
  return { errno, request, extendedAck };
}

/**
 * Decodes an NLMSG_DONE: an int error (0 normally; negative when the dump failed) and, with
 * NLM_F_ACK_TLVS, extended-ack TLVs. Old kernels may send an empty payload.
 */
export function parseDone(message: NetlinkMessage): { readonly errno: number; readonly extendedAck: ExtendedAck } {
  const where = `NLMSG_DONE (seq ${message.sequence})`;
  if (message.type !== NLMSG_DONE) throw new NetlinkCodecError(where, `message type ${message.type} is not NLMSG_DONE`);
  if (message.payload.length < 4) return { errno: 0, extendedAck: NO_EXTENDED_ACK };
  const raw = message.payload.readInt32LE(0);
  const errno = raw === 0 ? 0 : -raw;
  const extendedAck =
    (message.flags & NLM_F_ACK_TLVS) !== 0 ? parseExtendedAck(message.payload.subarray(4), `extended ack of ${where}`) : NO_EXTENDED_ACK;
  return { errno: Math.max(errno, 0), extendedAck };
}
