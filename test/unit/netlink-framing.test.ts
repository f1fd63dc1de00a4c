/**
 * Netlink framing: nlmsghdr, several messages per datagram, and the validation that turns a
 * truncated or garbled datagram into one clear error. Expected bytes are written out field by
 * field, sharing no code with the encoder.
 */
import { describe, expect, it } from 'vitest';

import { NetlinkCodecError } from '../../src/netlink/codec-error.js';
import { encodeMessage, messageSpace, parseMessages, writeMessage } from '../../src/netlink/message.js';

/** A naive nlmsghdr + payload + padding, built by hand. */
function naiveMessage(type: number, flags: number, seq: number, pid: number, payload: number[]): Buffer {
  const length = 16 + payload.length;
  const padded = Math.ceil(length / 4) * 4;
  const out = Buffer.alloc(padded);
  out.writeUInt32LE(length, 0); // nlmsg_len
  out.writeUInt16LE(type, 4); // nlmsg_type
  out.writeUInt16LE(flags, 6); // nlmsg_flags
  out.writeUInt32LE(seq, 8); // nlmsg_seq
  out.writeUInt32LE(pid, 12); // nlmsg_pid
  Buffer.from(payload).copy(out, 16);
  return out;
}

describe('nlmsghdr', () => {
  it('encodes header fields little-endian, payload, and zeroed alignment padding', () => {
    const bytes = encodeMessage({ type: 0x13, flags: 0x0005, sequence: 0x01020304, portId: 0 }, Buffer.from([0xaa, 0xbb, 0xcc]));
    expect(bytes.toString('hex')).toBe(
      [
        '13000000', // nlmsg_len = 19
        '1300', // nlmsg_type
        '0500', // nlmsg_flags: REQUEST | ACK
        '04030201', // nlmsg_seq
        '00000000', // nlmsg_pid
        'aabbcc', // payload
        '00', // padding to 4
      ].join(''),
    );
    expect(messageSpace(3)).toBe(20);
  });

  it('writeMessage refuses to overrun its buffer', () => {
    expect(() => writeMessage(Buffer.alloc(16), 0, { type: 1, flags: 0, sequence: 0, portId: 0 }, Buffer.alloc(1))).toThrow(NetlinkCodecError);
  });

  it('reports a header field that does not fit', () => {
    expect(() => encodeMessage({ type: 0x10000, flags: 0, sequence: 0, portId: 0 }, Buffer.alloc(0))).toThrow(/nlmsg_type: 65536 does not fit __u16/);
  });
});

describe('parseMessages', () => {
  const first = naiveMessage(0x10, 0x2, 7, 4242, [1, 2, 3, 4, 5]);
  const second = naiveMessage(0x3, 0x2, 7, 4242, [0, 0, 0, 0]);
  const third = naiveMessage(0x2, 0x100, 8, 4242, new Array(20).fill(0));
  const datagram = Buffer.concat([first, second, third]);

  it('splits a datagram into its messages with payloads cut at nlmsg_len', () => {
    const messages = parseMessages(datagram);
    expect(messages.map((m) => [m.type, m.flags, m.sequence, m.portId, m.payload.toString('hex')])).toEqual([
      [0x10, 0x2, 7, 4242, '0102030405'],
      [0x3, 0x2, 7, 4242, '00000000'],
      [0x2, 0x100, 8, 4242, '00'.repeat(20)],
    ]);
  });

  it('accepts a last message without trailing padding', () => {
    const unpadded = Buffer.concat([first, naiveMessage(0x10, 0, 1, 0, [9]).subarray(0, 17)]);
    expect(parseMessages(unpadded).map((m) => m.payload.toString('hex'))).toEqual(['0102030405', '09']);
  });

  it('an empty datagram has no messages', () => {
    expect(parseMessages(Buffer.alloc(0))).toEqual([]);
  });

  // Cut the datagram at every length: either every message up to the cut is complete (its
  // alignment padding may be cut), or the error says exactly what is wrong and where.
  it('every truncation is either complete messages or a clear error', () => {
    const complete = new Set<number>([0]);
    let start = 0;
    for (const message of [first, second, third]) {
      const length = message.readUInt32LE(0);
      for (let end = start + length; end <= start + message.length; end += 1) complete.add(end);
      start += message.length;
    }
    for (let cut = 0; cut <= datagram.length; cut += 1) {
      const part = datagram.subarray(0, cut);
      if (complete.has(cut)) {
        expect(() => parseMessages(part)).not.toThrow();
        continue;
      }
      expect(() => parseMessages(part)).toThrow(NetlinkCodecError);
      expect(() => parseMessages(part)).toThrow(/too short for an nlmsghdr|runs past the end of the \d+-byte datagram/);
    }
  });

  it('nlmsg_len smaller than the header is an error', () => {
    const bad = Buffer.from(first);
    bad.writeUInt32LE(8, 0);
    expect(() => parseMessages(bad)).toThrow(/nlmsg_len 8 at offset 0 is smaller than the header \(16\)/);
  });

  it('nlmsg_len beyond the datagram names both sizes', () => {
    const bad = Buffer.from(datagram);
    bad.writeUInt32LE(500, first.length);
    expect(() => parseMessages(bad)).toThrow(`nlmsg_len 500 at offset ${first.length} runs past the end of the ${datagram.length}-byte datagram`);
  });

  it('returns nothing at all when any message is bad (validates before decoding)', () => {
    const bad = Buffer.concat([first, Buffer.alloc(3)]);
    expect(() => parseMessages(bad)).toThrow(/3 trailing bytes at offset 24/);
  });
});
