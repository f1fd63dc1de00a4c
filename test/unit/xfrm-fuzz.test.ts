/**
 * Random and mutated input never crashes a decoder: every outcome is a value or a
 * NetlinkCodecError (UnsupportedEntryError included) — never a RangeError from reading past a
 * buffer, never a TypeError. A seeded generator keeps failures reproducible.
 */
import { describe, expect, it } from 'vitest';

import { parseAcknowledgement, parseDone } from '../../src/netlink/ack.js';
import { AttributeDecoder } from '../../src/netlink/attributes.js';
import { NetlinkCodecError } from '../../src/netlink/codec-error.js';
import { parseMessages, type NetlinkMessage } from '../../src/netlink/message.js';
import { decodeEvent } from '../../src/xfrm/events.js';
import { parsePolicyMessage, parseSadInfo, parseSpdInfo, parseStateMessage } from '../../src/xfrm/messages.js';
import { decodePolicy, decodePolicyId } from '../../src/xfrm/policy-codec.js';
import { decodeState, decodeStateId } from '../../src/xfrm/state-codec.js';
import { IPROUTE2_REQUESTS, hex } from './fixtures/iproute2-requests.js';

/** xorshift32: small, seedable, good enough to spread bytes. */
function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

function randomBytes(next: () => number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 1) out[i] = next() & 0xff;
  return out;
}

/** Runs `decode` and fails the test on anything but success or a codec error. */
function survives(what: string, decode: () => unknown): void {
  try {
    decode();
  } catch (error) {
    if (error instanceof NetlinkCodecError) return;
    throw new Error(`${what}: unexpected ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`, { cause: error });
  }
}

const XFRM_TYPES = Array.from({ length: 0x28 - 0x10 + 1 }, (_, i) => 0x10 + i);

function asMessage(type: number, payload: Buffer, flags = 0): NetlinkMessage {
  return { type, flags, sequence: 1, portId: 1, payload };
}

function decodeEverything(payload: Buffer, next: () => number): void {
  survives('decodeState', () => decodeState(payload));
  survives('decodePolicy', () => decodePolicy(payload));
  survives('decodeStateId', () => decodeStateId(payload));
  survives('decodePolicyId', () => decodePolicyId(payload));
  survives('attributes', () => {
    const decoder = new AttributeDecoder(payload, 'fuzz');
    while (decoder.next()) {
      decoder.u8();
      decoder.u32();
      decoder.u64();
      decoder.string();
      decoder.nested();
    }
  });
  const type = XFRM_TYPES[next() % XFRM_TYPES.length]!;
  survives(`decodeEvent type ${type}`, () => decodeEvent(asMessage(type, payload)));
  survives('parseStateMessage', () => parseStateMessage(asMessage(0x10, payload)));
  survives('parsePolicyMessage', () => parsePolicyMessage(asMessage(0x13, payload)));
  survives('parseSadInfo', () => parseSadInfo(asMessage(0x22, payload)));
  survives('parseSpdInfo', () => parseSpdInfo(asMessage(0x24, payload)));
  survives('parseAcknowledgement', () => parseAcknowledgement(asMessage(2, payload, next() & 0x300)));
  survives('parseDone', () => parseDone(asMessage(3, payload, next() & 0x200)));
}

describe('fuzz', () => {
  it('random datagrams', () => {
    const next = random(0xc0ffee);
    for (let i = 0; i < 3000; i += 1) {
      const datagram = randomBytes(next, next() % 600);
      // Half of them get a plausible first header so the decoders behind it are reached.
      if (i % 2 === 0 && datagram.length >= 16) datagram.writeUInt32LE(16 + (next() % (datagram.length - 15)), 0);
      survives('parseMessages', () => {
        for (const message of parseMessages(datagram)) decodeEverything(message.payload, next);
      });
    }
  });

  it('random payloads of the sizes the structs have', { timeout: 60_000 }, () => {
    const next = random(0xbadc0de);
    for (const size of [0, 1, 3, 4, 20, 24, 56, 64, 168, 176, 224, 232, 280, 300, 500]) {
      for (let i = 0; i < 150; i += 1) decodeEverything(randomBytes(next, size + (next() % 8)), next);
    }
  });

  it('mutated and truncated real requests (golden bodies from iproute2)', { timeout: 60_000 }, () => {
    const next = random(42);
    const bodies = Object.values(IPROUTE2_REQUESTS).map((text) => hex(text));
    for (const body of bodies) {
      for (let i = 0; i < 60; i += 1) {
        const mutated = Buffer.from(body);
        const flips = 1 + (next() % 4);
        for (let f = 0; f < flips && mutated.length > 0; f += 1) mutated[next() % mutated.length] = next() & 0xff;
        decodeEverything(mutated, next);
        decodeEverything(body.subarray(0, next() % (body.length + 1)), next);
      }
    }
  });

  it('a garbled attribute length never reads outside the message', () => {
    const body = hex(IPROUTE2_REQUESTS['sa-natt-full']);
    for (let offset = 224; offset + 2 <= body.length; offset += 2) {
      for (const length of [0, 1, 3, 4, 5, 0xffff]) {
        const mutated = Buffer.from(body);
        mutated.writeUInt16LE(length, offset);
        survives(`length ${length} at ${offset}`, () => decodeState(mutated));
      }
    }
  });

  it('decoders report, they do not throw plain errors, on the empty input', () => {
    expect(() => decodeState(Buffer.alloc(0))).toThrow(NetlinkCodecError);
    expect(() => decodePolicy(Buffer.alloc(0))).toThrow(NetlinkCodecError);
    expect(parseMessages(Buffer.alloc(0))).toEqual([]);
  });
});
