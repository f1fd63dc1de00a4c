/**
 * Netlink message framing: one nlmsghdr followed by a payload, several per datagram.
 *
 * `parseMessages` validates the whole datagram (every header complete, every length inside the
 * datagram) before returning anything, so a truncated or garbled datagram is one clear error
 * and never a partial result.
 */
import { nlmsgAlign, NLMSG_HDRLEN } from './align.js';
import { NetlinkCodecError } from './codec-error.js';
import { nlmsghdr } from './headers.js';

export interface NetlinkHeaderFields {
  readonly type: number;
  readonly flags: number;
  readonly sequence: number;
  /** nlmsg_pid: the sender's port id (0 from the kernel, or the requester's in notifications). */
  readonly portId: number;
}

export interface NetlinkMessage extends NetlinkHeaderFields {
  /** The bytes after the header, up to nlmsg_len (without trailing alignment padding). */
  readonly payload: Buffer;
}

/** Bytes a message with this payload occupies in a datagram, alignment included. */
export function messageSpace(payloadLength: number): number {
  return nlmsgAlign(NLMSG_HDRLEN + payloadLength);
}

/**
 * Writes header + payload at `offset` of `target` (which must have messageSpace() bytes free)
 * and returns the number of bytes used, alignment padding included and zeroed.
 */
export function writeMessage(target: Buffer, offset: number, header: NetlinkHeaderFields, payload: Uint8Array): number {
  const length = NLMSG_HDRLEN + payload.length;
  const space = nlmsgAlign(length);
  if (offset + space > target.length) {
    throw new NetlinkCodecError('encoding nlmsghdr', `message of ${space} bytes does not fit at offset ${offset} of ${target.length}`);
  }
  if (length > 0xffff_ffff) throw new NetlinkCodecError('encoding nlmsghdr', `payload of ${payload.length} bytes is too long`);
  try {
    nlmsghdr.write(target, offset, {
      nlmsg_len: length,
      nlmsg_type: header.type,
      nlmsg_flags: header.flags,
      nlmsg_seq: header.sequence,
      nlmsg_pid: header.portId,
    });
  } catch (error) {
    throw new NetlinkCodecError('encoding nlmsghdr', error instanceof Error ? error.message : String(error));
  }
  target.set(payload, offset + NLMSG_HDRLEN);
  target.fill(0, offset + length, offset + space);
  return space;
}

/** One message in its own buffer. */
export function encodeMessage(header: NetlinkHeaderFields, payload: Uint8Array): Buffer {
  const buffer = Buffer.alloc(messageSpace(payload.length));
  writeMessage(buffer, 0, header, payload);
  return buffer;
}

/** Splits a received datagram into its messages, after validating every header. */
export function parseMessages(datagram: Buffer): NetlinkMessage[] {
  const bounds: Array<{ offset: number; length: number }> = [];
  let offset = 0;
  while (offset < datagram.length) {
    const remaining = datagram.length - offset;
    if (remaining < NLMSG_HDRLEN) {
      throw new NetlinkCodecError(
        'netlink datagram',
        `${remaining} trailing bytes at offset ${offset} are too short for an nlmsghdr (${NLMSG_HDRLEN}); datagram is ${datagram.length} bytes`,
      );
    }
    const length = datagram.readUInt32LE(offset);
    if (length < NLMSG_HDRLEN) {
      throw new NetlinkCodecError('netlink datagram', `nlmsg_len ${length} at offset ${offset} is smaller than the header (${NLMSG_HDRLEN})`);
    }
    if (length > remaining) {
      throw new NetlinkCodecError(
        'netlink datagram',
        `nlmsg_len ${length} at offset ${offset} runs past the end of the ${datagram.length}-byte datagram (${remaining} bytes left): truncated`,
      );
    }
    bounds.push({ offset, length });
    offset += Math.min(nlmsgAlign(length), remaining);
  }
  return bounds.map(({ offset: start, length }) => {
    const header = nlmsghdr.read(datagram, start);
    return {
      type: header.nlmsg_type,
      flags: header.nlmsg_flags,
      sequence: header.nlmsg_seq,
      portId: header.nlmsg_pid,
      payload: datagram.subarray(start + NLMSG_HDRLEN, start + length),
    };
  });
}
