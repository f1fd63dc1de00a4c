/**
 * Multicast notifications laid out as the kernel's xfrm_notify_sa / xfrm_notify_policy /
 * build_expire / build_polexpire / build_acquire / xfrm_notify_*_flush build them, decoded into
 * XfrmEvents. Bodies of SAs and policies come from the (golden-tested) encoders; the framing
 * around them is built by hand here.
 */
import { describe, expect, it } from 'vitest';

import { NetlinkCodecError } from '../../src/netlink/codec-error.js';
import type { NetlinkMessage } from '../../src/netlink/message.js';
import * as K from '../../src/xfrm/abi/constants.js';
import { makePolicy, makeSelector, makeState, makeTemplate } from '../../src/xfrm/defaults.js';
import { decodeEvent, isOwnEvent } from '../../src/xfrm/events.js';
import { encodePolicy, encodePolicyId } from '../../src/xfrm/policy-codec.js';
import { encodeState, encodeStateId } from '../../src/xfrm/state-codec.js';
import { key } from './fixtures/xfrm-builders.js';
import { attribute } from './fixtures/netlink-bytes.js';

const SA = makeState({
  id: { family: 'inet', destination: '192.0.2.2', spi: 0x1234, protocol: 'esp', mark: { value: 1, mask: 1 } },
  source: '192.0.2.1',
  mode: 'tunnel',
  reqid: 9,
  algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: key('00'.repeat(20)), icvBits: 128 } },
});

const POLICY = makePolicy({
  direction: 'out',
  type: 'sub',
  selector: makeSelector({ source: '10.0.0.0/24', destination: '10.0.1.0/24' }),
  mark: { value: 5, mask: 0xff },
  ifId: 3,
  index: 0x41,
  templates: [makeTemplate({ source: '192.0.2.1', destination: '192.0.2.2', protocol: 'esp', mode: 'tunnel', reqid: 9 })],
});

function message(type: number, payload: Buffer, portId = 777, sequence = 12): NetlinkMessage {
  return { type, flags: 0, sequence, portId, payload };
}

/** Splits an encoded body into its fixed struct and its attributes. */
function parts(body: Buffer, headSize: number): { head: Buffer; attributes: Buffer } {
  return { head: body.subarray(0, headSize), attributes: body.subarray((headSize + 3) & ~3) };
}

const decodedSa = { ...SA, observed: expect.anything() };

describe('SA events', () => {
  it('NEWSA and UPDSA carry the SA like a dump entry', () => {
    for (const [type, kind] of [
      [K.XFRM_MSG_NEWSA, 'state-added'],
      [K.XFRM_MSG_UPDSA, 'state-updated'],
    ] as const) {
      expect(decodeEvent(message(type, encodeState(SA)))).toEqual({ kind, state: decodedSa, origin: { portId: 777, sequence: 12 } });
    }
  });

  it('DELSA: xfrm_usersa_id, then XFRMA_SA with the full info, then the SA attributes', () => {
    const { head, attributes } = parts(encodeState(SA), 224);
    const payload = Buffer.concat([encodeStateId(SA.id).subarray(0, 24), attribute(K.XFRMA_SA, head), attributes]);
    expect(decodeEvent(message(K.XFRM_MSG_DELSA, payload))).toEqual({ kind: 'state-deleted', state: decodedSa, origin: { portId: 777, sequence: 12 } });
  });

  it('DELSA without XFRMA_SA is an error', () => {
    expect(() => decodeEvent(message(K.XFRM_MSG_DELSA, encodeStateId(SA.id)))).toThrow(/XFRM_MSG_DELSA without XFRMA_SA/);
  });

  it('EXPIRE: xfrm_user_expire (the SA info and a hard flag) and only XFRMA_MARK after it, as build_expire sends it with port 0: no algorithms, no key', () => {
    const { head } = parts(encodeState(SA), 224);
    const expire = Buffer.alloc(232);
    head.copy(expire);
    expire[224] = 1; // hard
    const mark = Buffer.alloc(8);
    mark.writeUInt32LE(1, 0);
    mark.writeUInt32LE(1, 4);
    const event = decodeEvent(message(K.XFRM_MSG_EXPIRE, Buffer.concat([expire, attribute(K.XFRMA_MARK, mark)]), 0, 0));
    expect(event).toMatchObject({ kind: 'state-expired', hard: true, state: { id: SA.id, source: SA.source, reqid: 9, mode: 'tunnel' }, origin: { portId: 0, sequence: 0 } });
    expect(event && 'state' in event && 'algorithms' in event.state).toBe(false);
    expect(event && isOwnEvent(event, 777)).toBe(false);
    // A soft expiry the same way.
    expire[224] = 0;
    expect(decodeEvent(message(K.XFRM_MSG_EXPIRE, Buffer.concat([expire, attribute(K.XFRMA_MARK, mark)]), 0, 0))).toMatchObject({ kind: 'state-expired', hard: false, state: { id: SA.id } });
  });

  it('FLUSHSA: the protocol, or any', () => {
    expect(decodeEvent(message(K.XFRM_MSG_FLUSHSA, Buffer.from([K.IPPROTO_AH, 0, 0, 0])))).toMatchObject({ kind: 'states-flushed', protocol: 'ah' });
    expect(decodeEvent(message(K.XFRM_MSG_FLUSHSA, Buffer.from([0, 0, 0, 0])))).toMatchObject({ kind: 'states-flushed', protocol: 'any' });
    expect(decodeEvent(message(K.XFRM_MSG_FLUSHSA, Buffer.from([255, 0, 0, 0])))).toMatchObject({ kind: 'states-flushed', protocol: 'any' });
  });

  it('a Mobile IPv6 SA event is skipped (undefined), not an error', () => {
    const body = Buffer.from(encodeState(SA));
    body[76] = K.IPPROTO_ROUTING;
    expect(decodeEvent(message(K.XFRM_MSG_NEWSA, body))).toBeUndefined();
  });
});

describe('policy events', () => {
  const decodedPolicy = { ...POLICY, observed: expect.anything() };

  it('NEWPOLICY and UPDPOLICY', () => {
    expect(decodeEvent(message(K.XFRM_MSG_NEWPOLICY, encodePolicy(POLICY)))).toEqual({ kind: 'policy-added', policy: decodedPolicy, origin: { portId: 777, sequence: 12 } });
    expect(decodeEvent(message(K.XFRM_MSG_UPDPOLICY, encodePolicy(POLICY)))).toMatchObject({ kind: 'policy-updated' });
  });

  it('DELPOLICY: xfrm_userpolicy_id, XFRMA_POLICY with the full info, then the policy attributes', () => {
    const { head, attributes } = parts(encodePolicy(POLICY), 168);
    const id = encodePolicyId(POLICY.id).subarray(0, 64);
    expect(decodeEvent(message(K.XFRM_MSG_DELPOLICY, Buffer.concat([id, attribute(K.XFRMA_POLICY, head), attributes])))).toEqual({
      kind: 'policy-deleted',
      policy: decodedPolicy,
      origin: { portId: 777, sequence: 12 },
    });
  });

  it('DELPOLICY by index (selector zero in the id) still decodes the full policy', () => {
    const { head, attributes } = parts(encodePolicy(POLICY), 168);
    const id = Buffer.alloc(64);
    id.writeUInt32LE(POLICY.index, 56);
    id[60] = K.XFRM_POLICY_OUT;
    expect(decodeEvent(message(K.XFRM_MSG_DELPOLICY, Buffer.concat([id, attribute(K.XFRMA_POLICY, head), attributes])))).toMatchObject({
      kind: 'policy-deleted',
      policy: { index: 0x41, id: POLICY.id },
    });
  });

  it('FLUSHPOLICY: no fixed part; XFRMA_POLICY_TYPE only from kernels with sub-policies', () => {
    expect(decodeEvent(message(K.XFRM_MSG_FLUSHPOLICY, Buffer.alloc(0)))).toMatchObject({ kind: 'policies-flushed', type: 'main' });
    const subType = attribute(K.XFRMA_POLICY_TYPE, Buffer.from([1, 0, 0, 0, 0, 0]));
    expect(decodeEvent(message(K.XFRM_MSG_FLUSHPOLICY, subType))).toMatchObject({ kind: 'policies-flushed', type: 'sub' });
  });

  it('POLEXPIRE: xfrm_user_polexpire', () => {
    const { head, attributes } = parts(encodePolicy(POLICY), 168);
    const expire = Buffer.alloc(176);
    head.copy(expire);
    expect(decodeEvent(message(K.XFRM_MSG_POLEXPIRE, Buffer.concat([expire, attributes])))).toMatchObject({ kind: 'policy-expired', hard: false, policy: { id: POLICY.id } });
  });

  it('per-socket policy events are skipped', () => {
    const body = Buffer.from(encodePolicy(POLICY));
    body[160] = K.XFRM_POLICY_MAX + K.XFRM_POLICY_OUT;
    expect(decodeEvent(message(K.XFRM_MSG_NEWPOLICY, body))).toBeUndefined();
  });

  it('GETDEFAULT multicast: the default policy changed', () => {
    expect(decodeEvent(message(K.XFRM_MSG_GETDEFAULT, Buffer.from([1, 2, 0, 0]), 0, 0))).toEqual({
      kind: 'default-policy-changed',
      in: 'block',
      forward: 'accept',
      out: 'unspecified',
      origin: { portId: 0, sequence: 0 },
    });
  });
});

describe('ACQUIRE', () => {
  it('the missing SA: protocol and addresses in the template family, the flow, the policy, the acquire sequence', () => {
    const acquire = Buffer.alloc(280);
    Buffer.from([192, 0, 2, 2]).copy(acquire, 0); // id.daddr
    acquire.writeUInt32BE(0, 16); // id.spi
    acquire[20] = K.IPPROTO_ESP; // id.proto
    Buffer.from([192, 0, 2, 1]).copy(acquire, 24); // saddr
    const flow = encodePolicyId(makePolicy({ direction: 'out', selector: makeSelector({ source: '10.0.0.5', destination: '10.0.1.7', protocol: 6, destinationPort: 22 }) }).id);
    flow.copy(acquire, 40, 0, 56); // sel
    const { head, attributes } = parts(encodePolicy(POLICY), 168);
    head.copy(acquire, 96); // policy
    acquire.writeUInt32LE(0xdead, 276); // seq
    const event = decodeEvent(message(K.XFRM_MSG_ACQUIRE, Buffer.concat([acquire, attributes]), 0, 0));
    expect(event).toMatchObject({
      kind: 'acquire',
      protocol: 'esp',
      source: '192.0.2.1',
      destination: '192.0.2.2',
      selector: { source: { address: '10.0.0.5', prefixLength: 32 }, destinationPort: 22 },
      policy: { id: POLICY.id, templates: POLICY.templates },
      sequence: 0xdead,
    });
  });
});

describe('robustness', () => {
  it('message types outside the union are ignored', () => {
    for (const type of [K.XFRM_MSG_REPORT, K.XFRM_MSG_MAPPING, K.XFRM_MSG_MIGRATE, 0x3, 0x99]) {
      expect(decodeEvent(message(type, Buffer.alloc(8)))).toBeUndefined();
    }
  });

  it('a truncated event is a codec error naming the message and the lengths', () => {
    expect(() => decodeEvent(message(K.XFRM_MSG_NEWPOLICY, Buffer.alloc(100)))).toThrow(NetlinkCodecError);
    expect(() => decodeEvent(message(K.XFRM_MSG_NEWPOLICY, Buffer.alloc(100)))).toThrow(
      'XFRM_MSG_NEWPOLICY event (port 777, seq 12): 100-byte payload, struct xfrm_userpolicy_info needs 168',
    );
    expect(() => decodeEvent(message(K.XFRM_MSG_EXPIRE, Buffer.alloc(230)))).toThrow(/struct xfrm_user_expire needs 232/);
  });

  it('isOwnEvent compares the origin with our port (never for port 0 or overruns)', () => {
    const event = decodeEvent(message(K.XFRM_MSG_NEWPOLICY, encodePolicy(POLICY), 4242))!;
    expect([isOwnEvent(event, 4242), isOwnEvent(event, 1), isOwnEvent({ kind: 'overrun', reason: 'ENOBUFS' }, 4242)]).toEqual([true, false, false]);
  });
});
