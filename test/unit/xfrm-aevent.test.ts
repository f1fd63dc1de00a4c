/**
 * XFRM_MSG_NEWAE / XFRM_MSG_GETAE against bytes laid out by hand as the kernel's build_aevent and
 * xfrm_get_ae / xfrm_new_ae read them (struct xfrm_aevent_id: xfrm_usersa_id at 0, saddr at 24,
 * flags at 40, reqid at 44; then nlattrs). The offsets are typed here on purpose: they share
 * nothing with the codec's layout table (which test/unit/xfrm-layout.test.ts checks against
 * the header).
 */
import { describe, expect, it } from 'vitest';

import type { NetlinkMessage } from '../../src/netlink/message.js';
import { NetlinkCodecError } from '../../src/netlink/codec-error.js';
import { NLM_F_REPLACE } from '../../src/netlink/constants.js';
import * as K from '../../src/xfrm/abi/constants.js';
import { decodeSequenceReport, encodeReplayThreshold, encodeSequenceQuery, reportedSequence } from '../../src/xfrm/aevent-codec.js';
import { makeState } from '../../src/xfrm/defaults.js';
import { decodeEvent } from '../../src/xfrm/events.js';
import { getSequenceReportRequest, newStateRequest, parseSequenceReport, SEQUENCE_REPORT_PACKETS, setReplayThresholdRequest } from '../../src/xfrm/messages.js';
import { key } from './fixtures/xfrm-builders.js';
import { attribute, u32 } from './fixtures/netlink-bytes.js';

/** struct xfrm_aevent_id for 192.0.2.2 / spi / esp, source 192.0.2.1. */
function aeventId(spi: number, flags: number, reqid: number): Buffer {
  const head = Buffer.alloc(48);
  Buffer.from([192, 0, 2, 2]).copy(head, 0);
  head.writeUInt32BE(spi, 16);
  head.writeUInt16LE(2, 20); // AF_INET
  head.writeUInt8(50, 22); // IPPROTO_ESP
  Buffer.from([192, 0, 2, 1]).copy(head, 24);
  head.writeUInt32LE(flags, 40);
  head.writeUInt32LE(reqid, 44);
  return head;
}

/** struct xfrm_lifetime_cur { bytes, packets, add_time, use_time } */
function lifetimeCur(bytes: bigint, packets: bigint, addTime: bigint, useTime: bigint): Buffer {
  const out = Buffer.alloc(32);
  out.writeBigUInt64LE(bytes, 0);
  out.writeBigUInt64LE(packets, 8);
  out.writeBigUInt64LE(addTime, 16);
  out.writeBigUInt64LE(useTime, 24);
  return out;
}

/** struct xfrm_replay_state_esn with a bitmap of `words` words. */
function replayEsn(oseq: number, seq: number, oseqHi: number, seqHi: number, window: number, words: number): Buffer {
  const out = Buffer.alloc(24 + 4 * words);
  [words, oseq, seq, oseqHi, seqHi, window].forEach((value, index) => out.writeUInt32LE(value, index * 4));
  return out;
}

function message(type: number, payload: Buffer, portId = 0, sequence = 0): NetlinkMessage {
  return { type, flags: 0, sequence, portId, payload };
}

describe('NEWAE from the kernel', () => {
  it('a threshold report of a legacy SA: identity, cause, XFRMA_REPLAY_VAL and XFRMA_LTIME_VAL', () => {
    const legacy = Buffer.alloc(12);
    legacy.writeUInt32LE(70_000, 0); // oseq
    legacy.writeUInt32LE(5, 4); // seq
    legacy.writeUInt32LE(0x1f, 8); // bitmap
    const body = Buffer.concat([
      aeventId(0x5100, K.XFRM_AE_CR, 51),
      attribute(K.XFRMA_REPLAY_VAL, legacy),
      attribute(K.XFRMA_LTIME_VAL, lifetimeCur(7_000_000n, 70_000n, 1_700_000_000n, 1_700_000_005n)),
    ]);
    const report = decodeSequenceReport(body);
    expect(report).toEqual({
      id: { family: 'inet', destination: '192.0.2.2', spi: 0x5100, protocol: 'esp', mark: undefined },
      source: '192.0.2.1',
      reqid: 51,
      cause: 'threshold',
      esnFormat: false,
      replayState: { outboundSequence: 70_000, outboundSequenceHigh: 0, inboundSequence: 5, inboundSequenceHigh: 0, bitmapLength: 1 },
      current: { bytes: 7_000_000n, packets: 70_000n, addTime: 1_700_000_000n, useTime: 1_700_000_005n },
    });
    expect(reportedSequence(report, false)).toBe(70_000n);
  });

  it('a timer report of an ESN SA: the 64-bit counter from XFRMA_REPLAY_ESN_VAL, the mark, and the thresholds a GETAE asked for', () => {
    const mark = Buffer.alloc(8);
    mark.writeUInt32LE(7, 0);
    mark.writeUInt32LE(0xff, 4);
    const body = Buffer.concat([
      aeventId(0x5200, K.XFRM_AE_CE | K.XFRM_AE_RTHR | K.XFRM_AE_ETHR, 52),
      attribute(K.XFRMA_REPLAY_ESN_VAL, replayEsn(3, 0, 2, 0, 128, 4)),
      attribute(K.XFRMA_LTIME_VAL, lifetimeCur(0n, 0n, 10n, 0n)),
      attribute(K.XFRMA_MARK, mark),
      attribute(K.XFRMA_REPLAY_THRESH, u32(65_536)),
      attribute(K.XFRMA_ETIMER_THRESH, u32(10)),
    ]);
    const report = decodeSequenceReport(body);
    expect(report).toMatchObject({
      id: { spi: 0x5200, mark: { value: 7, mask: 0xff } },
      cause: 'timer',
      esnFormat: true,
      replayState: { outboundSequence: 3, outboundSequenceHigh: 2, bitmapLength: 4 },
      replayThreshold: 65_536,
      timerThreshold: 10,
    });
    expect(reportedSequence(report, true)).toBe((2n << 32n) | 3n);
    // Without the esn flag (a window above 32 alone) the high word does not count.
    expect(reportedSequence(report, false)).toBe(3n);
  });

  it('causes: CR threshold, CE timer, CU set by NEWAE, none (a GETAE answer) read', () => {
    const legacy = attribute(K.XFRMA_REPLAY_VAL, Buffer.alloc(12));
    const cause = (flags: number) => decodeSequenceReport(Buffer.concat([aeventId(1, flags, 0), legacy])).cause;
    expect([cause(K.XFRM_AE_CR), cause(K.XFRM_AE_CE), cause(K.XFRM_AE_CU), cause(K.XFRM_AE_RTHR | K.XFRM_AE_ETHR)]).toEqual(['threshold', 'timer', 'set', 'read']);
  });

  it('through decodeEvent (the monitor) as sequence-reported, with its origin; and as a GETAE answer', () => {
    const body = Buffer.concat([aeventId(0x42, K.XFRM_AE_CR, 0), attribute(K.XFRMA_REPLAY_VAL, Buffer.alloc(12))]);
    expect(decodeEvent(message(K.XFRM_MSG_NEWAE, body))).toMatchObject({ kind: 'sequence-reported', report: { id: { spi: 0x42 }, cause: 'threshold' }, origin: { portId: 0, sequence: 0 } });
    expect(parseSequenceReport(message(K.XFRM_MSG_NEWAE, body, 99, 3))).toMatchObject({ id: { spi: 0x42 } });
    expect(() => parseSequenceReport(message(K.XFRM_MSG_NEWSA, body))).toThrow(NetlinkCodecError);
  });

  it('refuses a short struct, a report without replay state, an unknown family and a short attribute', () => {
    expect(() => decodeSequenceReport(Buffer.alloc(40))).toThrow(/40-byte payload, struct xfrm_aevent_id needs 48/);
    expect(() => decodeSequenceReport(aeventId(1, 0, 0))).toThrow(/neither XFRMA_REPLAY_VAL nor XFRMA_REPLAY_ESN_VAL/);
    const badFamily = aeventId(1, 0, 0);
    badFamily.writeUInt16LE(7, 20);
    expect(() => decodeSequenceReport(Buffer.concat([badFamily, attribute(K.XFRMA_REPLAY_VAL, Buffer.alloc(12))]))).toThrow(/address family 7/);
    expect(() => decodeSequenceReport(Buffer.concat([aeventId(1, 0, 0), attribute(K.XFRMA_REPLAY_VAL, Buffer.alloc(8))]))).toThrow(/XFRMA_REPLAY_VAL has a 8-byte payload/);
  });
});

describe('GETAE and NEWAE requests', () => {
  const id = { family: 'inet' as const, destination: '192.0.2.2', spi: 0x5100, protocol: 'esp' as const, mark: undefined };

  it('GETAE: the SA id asking for both thresholds, answered by a NEWAE', () => {
    const request = getSequenceReportRequest(id);
    expect(request).toMatchObject({ type: K.XFRM_MSG_GETAE, flags: 0, replyType: K.XFRM_MSG_NEWAE });
    const expected = aeventId(0x5100, K.XFRM_AE_RTHR | K.XFRM_AE_ETHR, 0);
    expected.fill(0, 24, 40); // no source address in a request
    expect(request.body.toString('hex')).toBe(expected.toString('hex'));
    expect(encodeSequenceQuery(id).equals(request.body)).toBe(true);
  });

  it('NEWAE setting the replay threshold: NLM_F_REPLACE, flag RTHR, XFRMA_REPLAY_THRESH, and the mark when the SA has one', () => {
    const marked = { ...id, mark: { value: 7, mask: 0xff } };
    const request = setReplayThresholdRequest(marked, 65_536);
    expect(request).toMatchObject({ type: K.XFRM_MSG_NEWAE, flags: NLM_F_REPLACE });
    const head = aeventId(0x5100, K.XFRM_AE_RTHR, 0);
    head.fill(0, 24, 40);
    const mark = Buffer.alloc(8);
    mark.writeUInt32LE(7, 0);
    mark.writeUInt32LE(0xff, 4);
    expect(request.body.toString('hex')).toBe(Buffer.concat([head, attribute(K.XFRMA_MARK, mark), attribute(K.XFRMA_REPLAY_THRESH, u32(65_536))]).toString('hex'));
    expect(() => encodeReplayThreshold(id, -1)).toThrow(/replay threshold -1/);
  });

  it('every NEWSA carries XFRMA_REPLAY_THRESH = SEQUENCE_REPORT_PACKETS as its last attribute', () => {
    const sa = makeState({ id, source: '192.0.2.1', algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: key('00'.repeat(20)), icvBits: 128 } } });
    const body = newStateRequest(sa).body;
    expect(body.subarray(body.length - 8).toString('hex')).toBe(attribute(K.XFRMA_REPLAY_THRESH, u32(SEQUENCE_REPORT_PACKETS)).toString('hex'));
  });
});
