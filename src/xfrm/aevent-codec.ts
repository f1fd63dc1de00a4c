/**
 * XFRM async events (AEVENTS): XFRM_MSG_NEWAE and XFRM_MSG_GETAE, `struct xfrm_aevent_id` and
 * its attributes, to and from the model. Pure.
 *
 * What the kernel does (net/xfrm/xfrm_replay.c, xfrm_user.c; checked in the VM,
 * test/kernel/vm/sequence-events.test.ts):
 * - While anyone listens on XFRMNLGRP_AEVENTS in a namespace, every SA of it reports its replay
 *   state with a NEWAE when its outbound or inbound counter has moved by the SA's replay
 *   threshold since the last report (cause XFRM_AE_CR), and when its event timer fires and the
 *   counters moved since (XFRM_AE_CE). After an idle timer the next packet reports at once.
 * - The threshold starts at the sysctl net.core.xfrm_aevent_rseqth (default 2: a report every
 *   other packet) and the timer at net.core.xfrm_aevent_etime (100 ms units, default 10);
 *   XFRMA_REPLAY_THRESH / XFRMA_ETIMER_THRESH in a NEWSA, or a NEWAE with NLM_F_REPLACE, set
 *   them per SA. XFRMA_ETIMER_THRESH is taken in jiffies there but reported in 100 ms units.
 * - A report carries the SA's identity, XFRMA_REPLAY_VAL (legacy 32-bit state) or
 *   XFRMA_REPLAY_ESN_VAL (ESN or a window above 32), XFRMA_LTIME_VAL (struct
 *   xfrm_lifetime_cur, whose add_time tells one incarnation of an SA from the next), the mark,
 *   and the thresholds only when a GETAE asked for them (XFRM_AE_RTHR / XFRM_AE_ETHR).
 */
import { AttributeEncoder } from '../netlink/attributes.js';
import { NetlinkCodecError } from '../netlink/codec-error.js';
import * as K from './abi/constants.js';
import { xfrm_aevent_id, xfrm_lifetime_cur, xfrm_mark, xfrm_replay_state, xfrm_replay_state_esn } from './abi/structs.js';
import { addressBytes, decodeLifetimeCurrent } from './selector.js';
import { formatAddress } from './address.js';
import { isU32, markAttribute, splitBody, structAttribute, u32Attribute } from './body.js';
import { FAMILY, PROTOCOL } from './enums.js';
import type { LifetimeCurrent, ReplayState, StateId } from './types.js';
import { describeStateId } from './state-codec.js';

/** Why the kernel sent a report. */
export type SequenceReportCause = 'threshold' | 'timer' | 'set' | 'read';

/** One NEWAE: an SA's replay state at one moment. */
export interface SequenceReport {
  readonly id: StateId;
  readonly source: string;
  readonly reqid: number;
  readonly cause: SequenceReportCause;
  /** Which attribute carried the state: ESN format (XFRMA_REPLAY_ESN_VAL) or legacy. */
  readonly esnFormat: boolean;
  readonly replayState: ReplayState;
  /** Counters and add time (XFRMA_LTIME_VAL); absent if the kernel left it out. */
  readonly current: LifetimeCurrent | undefined;
  /** XFRMA_REPLAY_THRESH, in packets (only in answers to a GETAE that asked for it). */
  readonly replayThreshold?: number;
  /** XFRMA_ETIMER_THRESH, in 100 ms units (likewise). */
  readonly timerThreshold?: number;
}

function causeOf(flags: number): SequenceReportCause {
  if (flags & K.XFRM_AE_CR) return 'threshold';
  if (flags & K.XFRM_AE_CE) return 'timer';
  if (flags & K.XFRM_AE_CU) return 'set';
  return 'read';
}

/** Decodes the body of a XFRM_MSG_NEWAE (a notification or the answer to a GETAE). */
export function decodeSequenceReport(payload: Buffer, where = 'XFRM_MSG_NEWAE'): SequenceReport {
  const { head, attributes } = splitBody(payload, xfrm_aevent_id, where);
  const family = FAMILY.lookup(head.sa_id.family);
  if (!family) throw new NetlinkCodecError(where, `address family ${head.sa_id.family} is neither inet nor inet6`);
  const protocol = PROTOCOL.lookup(head.sa_id.proto);
  if (!protocol) throw new NetlinkCodecError(where, `protocol ${head.sa_id.proto} is not esp, ah or ipcomp`);
  const id: StateId = { family, destination: formatAddress(family, head.sa_id.daddr), spi: head.sa_id.spi, protocol, mark: markAttribute(attributes, where) };
  const esn = structAttribute(attributes, K.XFRMA_REPLAY_ESN_VAL, xfrm_replay_state_esn, where);
  const legacy = structAttribute(attributes, K.XFRMA_REPLAY_VAL, xfrm_replay_state, where);
  let replayState: ReplayState;
  if (esn) {
    replayState = { outboundSequence: esn.oseq, outboundSequenceHigh: esn.oseq_hi, inboundSequence: esn.seq, inboundSequenceHigh: esn.seq_hi, bitmapLength: esn.bmp_len };
  } else if (legacy) {
    replayState = { outboundSequence: legacy.oseq, outboundSequenceHigh: 0, inboundSequence: legacy.seq, inboundSequenceHigh: 0, bitmapLength: 1 };
  } else {
    throw new NetlinkCodecError(where, 'neither XFRMA_REPLAY_VAL nor XFRMA_REPLAY_ESN_VAL');
  }
  const lifetime = structAttribute(attributes, K.XFRMA_LTIME_VAL, xfrm_lifetime_cur, where);
  const replayThreshold = u32Attribute(attributes, K.XFRMA_REPLAY_THRESH, where);
  const timerThreshold = u32Attribute(attributes, K.XFRMA_ETIMER_THRESH, where);
  return {
    id,
    source: formatAddress(family, head.saddr),
    reqid: head.reqid,
    cause: causeOf(head.flags),
    esnFormat: esn !== undefined,
    replayState,
    current: lifetime ? decodeLifetimeCurrent(lifetime) : undefined,
    ...(replayThreshold === undefined ? {} : { replayThreshold }),
    ...(timerThreshold === undefined ? {} : { timerThreshold }),
  };
}

/** `struct xfrm_aevent_id` (+ XFRMA_MARK) naming one SA, with `flags`, and any extra attributes. */
function encodeAeventId(id: StateId, flags: number, where: string, extra?: (encoder: AttributeEncoder) => void): Buffer {
  if (!isU32(id.spi)) throw new NetlinkCodecError(where, `SPI ${id.spi} is not a 32-bit value`);
  const encoder = new AttributeEncoder(where, K.xfrmAttributeName);
  const head = encoder.attempt('xfrm_aevent_id', () =>
    xfrm_aevent_id.encode({
      sa_id: { daddr: addressBytes(id.family, id.destination, 'destination', where), spi: id.spi, family: FAMILY.toNumber(id.family), proto: PROTOCOL.toNumber(id.protocol) },
      saddr: Buffer.alloc(16),
      flags,
      reqid: 0,
    }),
  );
  if (head) encoder.header(head);
  if (id.mark) encoder.struct(K.XFRMA_MARK, xfrm_mark, { v: id.mark.value, m: id.mark.mask });
  extra?.(encoder);
  return encoder.finish();
}

/** The body of a GETAE for one SA; the answer reports both thresholds too. */
export function encodeSequenceQuery(id: StateId, where = `XFRM_MSG_GETAE ${describeStateId(id)}`): Buffer {
  return encodeAeventId(id, K.XFRM_AE_RTHR | K.XFRM_AE_ETHR, where);
}

/**
 * The body of a NEWAE (sent with NLM_F_REPLACE) that sets one SA's replay threshold and nothing
 * else: the kernel then reports the SA every `packets` packets (and on its timer).
 */
export function encodeReplayThreshold(id: StateId, packets: number, where = `XFRM_MSG_NEWAE ${describeStateId(id)}`): Buffer {
  if (!isU32(packets)) throw new NetlinkCodecError(where, `replay threshold ${packets} is not a 32-bit value`);
  return encodeAeventId(id, K.XFRM_AE_RTHR, where, (encoder) => encoder.u32(K.XFRMA_REPLAY_THRESH, packets));
}

/** The XFRMA_REPLAY_THRESH attribute alone, to append to a NEWSA body. */
export function replayThresholdAttribute(packets: number, where: string): Buffer {
  if (!isU32(packets)) throw new NetlinkCodecError(where, `replay threshold ${packets} is not a 32-bit value`);
  return new AttributeEncoder(where, K.xfrmAttributeName).u32(K.XFRMA_REPLAY_THRESH, packets).finish();
}

/** The outbound sequence number of a report: 64-bit when the SA counts with ESN (`esn` flag). */
export function reportedSequence(report: Pick<SequenceReport, 'replayState'>, esn: boolean): bigint {
  const low = BigInt(report.replayState.outboundSequence);
  return esn ? (BigInt(report.replayState.outboundSequenceHigh) << 32n) | low : low;
}
