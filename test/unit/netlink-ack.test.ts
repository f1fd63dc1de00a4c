/**
 * NLMSG_ERROR and NLMSG_DONE with extended-ack TLVs, built byte by byte as the kernel's
 * netlink_ack() lays them out (capped and uncapped), and the error type made from them.
 */
import { describe, expect, it } from 'vitest';

import { parseAcknowledgement, parseDone } from '../../src/netlink/ack.js';
import { NetlinkCodecError } from '../../src/netlink/codec-error.js';
import { NetlinkError, NetlinkTimeoutError, isExists, isNotFound } from '../../src/netlink/error.js';
import type { NetlinkMessage } from '../../src/netlink/message.js';
import { attribute as tlv, u32 } from './fixtures/netlink-bytes.js';

/** struct nlmsgerr: int error, then the request's nlmsghdr. */
function nlmsgerr(errno: number, requestLength: number, requestType: number, requestSeq: number): Buffer {
  const out = Buffer.alloc(20);
  out.writeInt32LE(-errno, 0);
  out.writeUInt32LE(requestLength, 4);
  out.writeUInt16LE(requestType, 8);
  out.writeUInt16LE(0x5, 10);
  out.writeUInt32LE(requestSeq, 12);
  out.writeUInt32LE(0, 16);
  return out;
}

function message(type: number, flags: number, payload: Buffer, sequence = 42): NetlinkMessage {
  return { type, flags, sequence, portId: 1234, payload };
}

const REASON = 'Requested AEAD algorithm not found';

describe('parseAcknowledgement', () => {
  it('a plain ack: errno 0 and the request header', () => {
    const ack = parseAcknowledgement(message(2, 0x100, nlmsgerr(0, 276, 0x13, 42)));
    expect(ack).toMatchObject({ errno: 0, request: { length: 276, type: 0x13, sequence: 42 } });
    expect(ack.extendedAck.message).toBeUndefined();
  });

  it('capped (NETLINK_CAP_ACK): TLVs right after struct nlmsgerr', () => {
    const payload = Buffer.concat([nlmsgerr(38, 336, 0x10, 42), tlv(1, Buffer.from(`${REASON}\0`)), tlv(2, u32(240))]);
    const ack = parseAcknowledgement(message(2, 0x100 | 0x200, payload));
    expect(ack.errno).toBe(38);
    expect(ack.extendedAck).toMatchObject({ message: REASON, offset: 240 });
  });

  it('uncapped: the request is echoed, TLVs follow the echo', () => {
    const echo = Buffer.alloc(100, 0x5a); // the original request's payload (84 bytes + header rounding)
    const request = nlmsgerr(22, 16 + 99, 0x13, 42);
    const payload = Buffer.concat([request, echo.subarray(0, 100), tlv(1, Buffer.from('Invalid policy direction\0')), tlv(5, u32(7))]);
    const ack = parseAcknowledgement(message(2, 0x200, payload));
    expect(ack.errno).toBe(22);
    expect(ack.extendedAck).toMatchObject({ message: 'Invalid policy direction', missingType: 7 });
  });

  it('ignores TLVs without NLM_F_ACK_TLVS', () => {
    const payload = Buffer.concat([nlmsgerr(2, 88, 0x14, 42), tlv(1, Buffer.from('x\0'))]);
    expect(parseAcknowledgement(message(2, 0x100, payload)).extendedAck.message).toBeUndefined();
  });

  it('a short payload is a codec error with the lengths', () => {
    expect(() => parseAcknowledgement(message(2, 0, Buffer.alloc(12)))).toThrow(/12-byte payload, struct nlmsgerr needs 20/);
  });

  it('garbled TLVs are a codec error naming them', () => {
    const payload = Buffer.concat([nlmsgerr(2, 88, 0x14, 42), Buffer.from([0xff, 0x00, 0x01, 0x00])]);
    expect(() => parseAcknowledgement(message(2, 0x300, payload))).toThrow(NetlinkCodecError);
    expect(() => parseAcknowledgement(message(2, 0x300, payload))).toThrow(/NLMSGERR_ATTR_MSG at offset 0 has nla_len 255/);
  });
});

describe('parseDone', () => {
  it('an empty or zero DONE ends a dump normally', () => {
    expect(parseDone(message(3, 2, Buffer.alloc(0))).errno).toBe(0);
    expect(parseDone(message(3, 2, Buffer.alloc(4))).errno).toBe(0);
  });

  it('a DONE carrying an error and its reason', () => {
    const payload = Buffer.concat([Buffer.from([0xea, 0xff, 0xff, 0xff]), tlv(1, Buffer.from('Invalid filter\0'))]);
    expect(parseDone(message(3, 0x202, payload))).toMatchObject({ errno: 22, extendedAck: { message: 'Invalid filter' } });
  });
});

describe('NetlinkError', () => {
  it('carries operation, errno, code, the kernel reason and offset, sequence', () => {
    const error = new NetlinkError({
      operation: 'XFRM_MSG_NEWSA esp spi 0x00001000 dst 10.0.0.2',
      errno: 38,
      sequence: 9,
      extendedAck: { message: REASON, offset: 240, missingType: undefined, missingNestOffset: undefined, cookie: undefined },
    });
    expect(error.message).toBe(`XFRM_MSG_NEWSA esp spi 0x00001000 dst 10.0.0.2: ENOSYS (Function not implemented): ${REASON}`);
    expect({ errno: error.errno, code: error.code, kernelMessage: error.kernelMessage, kernelOffset: error.kernelOffset, sequence: error.sequence }).toEqual({
      errno: 38,
      code: 'ENOSYS',
      kernelMessage: REASON,
      kernelOffset: 240,
      sequence: 9,
    });
    expect(error.is('ENOSYS')).toBe(true);
  });

  it('isNotFound covers ENOENT (policies) and ESRCH (SAs); isExists EEXIST', () => {
    const of = (errno: number): NetlinkError => new NetlinkError({ operation: 'op', errno, sequence: 1 });
    expect([2, 3, 17, 22].map((errno) => isNotFound(of(errno)))).toEqual([true, true, false, false]);
    expect([2, 17].map((errno) => isExists(of(errno)))).toEqual([false, true]);
    expect(isNotFound(new Error('ENOENT'))).toBe(false);
    expect(isNotFound({ errno: -3 })).toBe(true);
  });

  it('a timeout says the outcome is unknown', () => {
    const error = new NetlinkTimeoutError('XFRM_MSG_GETSA', 5, 100);
    expect(error.code).toBe('ETIMEDOUT');
    expect(error.message).toBe('XFRM_MSG_GETSA: ETIMEDOUT (Connection timed out): no reply within 100 ms (seq 5); the kernel may or may not have applied it');
  });
});
