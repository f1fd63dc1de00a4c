import { describe, expect, it } from 'vitest';

import { NetlinkCodecError, UnsupportedEntryError } from '../../src/netlink/codec-error.js';
import { XFRMA_ALG_AUTH, XFRMA_ALG_AUTH_TRUNC, XFRMA_SA_DIR } from '../../src/xfrm/abi/constants.js';
import { DEFAULT_LIFETIME, makeState } from '../../src/xfrm/defaults.js';
import { deleteStateRequest, flushStatesRequest, getStateRequest, newStateRequest, updateStateRequest } from '../../src/xfrm/messages.js';
import { decodeState, decodeStateId, encodeState, encodeStateId, validateState } from '../../src/xfrm/state-codec.js';
import { XFRM_INFINITY, type SecurityAssociation } from '../../src/xfrm/types.js';
import { IPROUTE2_REQUESTS, hex } from './fixtures/iproute2-requests.js';
import { UNSPEC_SELECTOR, breakdown, key } from './fixtures/xfrm-builders.js';

const V4 = { family: 'inet', destination: '192.0.2.2', protocol: 'esp', mark: undefined } as const;
const GCM_KEY = key('000102030405060708090a0b0c0d0e0f10111213');

/** The SA each captured `ip xfrm state add` asked for, written as model values. */
const GOLDEN_STATES: Record<string, SecurityAssociation> = {
  'sa-aead-gcm-v4': makeState({
    id: { ...V4, spi: 0x1001 },
    source: '192.0.2.1',
    reqid: 1,
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: GCM_KEY, icvBits: 128 } },
  }),
  'sa-cbc-hmac-v6-tunnel': makeState({
    id: { family: 'inet6', destination: '2001:db8::2', spi: 0x2002, protocol: 'esp', mark: { value: 0x10, mask: 0xff } },
    source: '2001:db8::1',
    reqid: 2,
    mode: 'tunnel',
    algorithms: {
      kind: 'cipher',
      cipher: { name: 'cbc(aes)', key: key('202122232425262728292a2b2c2d2e2f') },
      auth: { name: 'hmac(sha256)', key: key('303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f'), truncationBits: 128 },
    },
    replay: { window: 32, useEsnAttribute: false },
    flags: ['noecn'],
    selector: { ...UNSPEC_SELECTOR, family: 'inet6', source: { address: 'fd00::', prefixLength: 64 }, destination: { address: 'fd01::', prefixLength: 64 } },
    lifetime: { ...DEFAULT_LIFETIME, softAddExpiresSeconds: 3600n, hardAddExpiresSeconds: 7200n, softByteLimit: 1_000_000n },
  }),
  'sa-esn-128': makeState({
    id: { ...V4, spi: 0x3003 },
    source: '192.0.2.1',
    reqid: 3,
    mode: 'tunnel',
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: key('505152535455565758595a5b5c5d5e5f60616263'), icvBits: 128 } },
    replay: { window: 128, useEsnAttribute: true },
    flags: ['esn'],
  }),
  'sa-window-64-no-esn': makeState({
    id: { ...V4, spi: 0x3004 },
    source: '192.0.2.1',
    mode: 'tunnel',
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: key('505152535455565758595a5b5c5d5e5f60616263'), icvBits: 128 } },
    replay: { window: 64, useEsnAttribute: true },
  }),
  'sa-mixed-v4-outer-v6-inner': makeState({
    id: { family: 'inet', destination: '10.0.0.2', spi: 0x4004, protocol: 'esp', mark: undefined },
    source: '10.0.0.1',
    reqid: 4,
    mode: 'tunnel',
    selector: { ...UNSPEC_SELECTOR, family: 'inet6', source: { address: 'fd00::', prefixLength: 64 }, destination: { address: 'fd01::', prefixLength: 64 } },
    algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: key('707172737475767778797a7b7c7d7e7f80818283'), icvBits: 128 } },
  }),
  'sa-ah': makeState({
    id: { ...V4, spi: 0x5005, protocol: 'ah' },
    source: '192.0.2.1',
    reqid: 5,
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'auth', auth: { name: 'hmac(sha1)', key: key('909192939495969798999a9b9c9d9e9fa0a1a2a3'), truncationBits: 96 } },
  }),
  'sa-ipcomp': makeState({
    id: { ...V4, spi: 0x6006, protocol: 'ipcomp' },
    source: '192.0.2.1',
    reqid: 6,
    mode: 'tunnel',
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'compression', compression: { name: 'deflate' } },
  }),
  'sa-natt-full': makeState({
    id: { family: 'inet', destination: '10.0.0.2', spi: 0x7007, protocol: 'esp', mark: { value: 7, mask: 0xf } },
    source: '10.0.0.1',
    reqid: 7,
    mode: 'tunnel',
    algorithms: {
      kind: 'cipher',
      cipher: { name: 'cbc(aes)', key: key('00112233445566778899aabbccddeeff') },
      auth: { name: 'hmac(sha256)', key: key('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'), truncationBits: 128 },
    },
    encapsulation: { type: 'espinudp', sourcePort: 4500, destinationPort: 4501, originalAddress: '0.0.0.0' },
    replay: { window: 64, useEsnAttribute: true },
    flags: ['esn'],
    extraFlags: ['dont-encap-dscp'],
    ifId: 4,
    tfcPad: 100,
    outputMark: { value: 9, mask: 0xff },
    selector: {
      ...UNSPEC_SELECTOR,
      family: 'inet',
      source: { address: '192.168.0.0', prefixLength: 16 },
      destination: { address: '192.168.1.0', prefixLength: 24 },
      protocol: 17,
      sourcePort: 500,
      sourcePortMask: 0xffff,
      destinationPort: 4500,
      destinationPortMask: 0xffff,
    },
    lifetime: { ...DEFAULT_LIFETIME, hardPacketLimit: 100_000n },
  }),
  'sa-chacha': makeState({
    id: { ...V4, spi: 0x8008 },
    source: '192.0.2.1',
    selector: UNSPEC_SELECTOR,
    algorithms: {
      kind: 'aead',
      aead: { name: 'rfc7539esp(chacha20,poly1305)', key: key('a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3'), icvBits: 128 },
    },
  }),
  'sa-ccm': makeState({
    id: { ...V4, spi: 0x9009 },
    source: '192.0.2.1',
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'aead', aead: { name: 'rfc4309(ccm(aes))', key: key('d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2'), icvBits: 128 } },
  }),
  'sa-gmac': makeState({
    id: { ...V4, spi: 0xa00a },
    source: '192.0.2.1',
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'aead', aead: { name: 'rfc4543(gcm(aes))', key: key('e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3'), icvBits: 128 } },
  }),
  'sa-beet-flags-dev': makeState({
    id: { ...V4, spi: 0xb00b },
    source: '192.0.2.1',
    mode: 'beet',
    algorithms: { kind: 'cipher', cipher: { name: 'cbc(aes)', key: key('000102030405060708090a0b0c0d0e0f') }, auth: undefined },
    flags: ['decap-dscp', 'nopmtudisc', 'wildrecv', 'icmp', 'af-unspec', 'align4'],
    extraFlags: ['dont-encap-dscp', 'oseq-may-wrap'],
    selector: {
      ...UNSPEC_SELECTOR,
      family: 'inet',
      source: { address: '10.9.0.0', prefixLength: 16 },
      destination: { address: '10.8.0.0', prefixLength: 16 },
      ifindex: 1, // `dev lo` in a fresh namespace
    },
  }),
  'sa-espintcp-v6': makeState({
    id: { family: 'inet6', destination: '2001:db8::2', spi: 0xc00c, protocol: 'esp', mark: undefined },
    source: '2001:db8::1',
    selector: UNSPEC_SELECTOR,
    algorithms: { kind: 'aead', aead: { name: 'rfc4106(gcm(aes))', key: GCM_KEY, icvBits: 128 } },
    encapsulation: { type: 'espintcp', sourcePort: 4500, destinationPort: 4500, originalAddress: '2001:db8::99' },
  }),
};

/** Round trips ignore what only the kernel fills in. */
function withoutObserved(sa: SecurityAssociation): SecurityAssociation {
  return { ...sa, observed: undefined };
}

describe('SA encoding matches iproute2 byte for byte', () => {
  for (const [name, sa] of Object.entries(GOLDEN_STATES)) {
    it(name, () => {
      const expected = hex(IPROUTE2_REQUESTS[name as keyof typeof IPROUTE2_REQUESTS]);
      expect(breakdown(encodeState(sa), 224)).toEqual(breakdown(expected, 224));
      expect(encodeState(sa).equals(expected)).toBe(true);
    });
  }

  it('NEWSA and UPDSA send the same body under their own message type', () => {
    const sa = GOLDEN_STATES['sa-natt-full']!;
    const add = newStateRequest(sa);
    const update = updateStateRequest(sa);
    expect([add.type, update.type]).toEqual([0x10, 0x1a]);
    expect(add.body.equals(update.body)).toBe(true);
    expect(add.operation).toBe('XFRM_MSG_NEWSA esp spi 0x00007007 dst 10.0.0.2 mark 0x7/0xf');
  });

  it('never puts key bytes into the operation text', () => {
    const request = newStateRequest(GOLDEN_STATES['sa-cbc-hmac-v6-tunnel']!);
    expect(request.operation).not.toMatch(/2021222324|3031323334/);
  });
});

describe('SA ids and flushes match iproute2', () => {
  it('GETSA/DELSA carry struct xfrm_usersa_id (iproute2 adds XFRMA_SRCADDR, which the kernel ignores for esp/ah/ipcomp)', () => {
    const id = { ...V4, spi: 0x1001 };
    const captured = hex(IPROUTE2_REQUESTS['sa-delete']);
    expect(deleteStateRequest(id).body.toString('hex')).toBe(captured.subarray(0, 24).toString('hex'));
    const withMark = hex(IPROUTE2_REQUESTS['sa-get-mark']);
    const get = getStateRequest({ ...id, mark: { value: 7, mask: 0xf } });
    expect(get.body.subarray(0, 24).equals(withMark.subarray(0, 24))).toBe(true);
    // iproute2: usersa_id, XFRMA_SRCADDR (20 bytes), XFRMA_MARK; ours: usersa_id, XFRMA_MARK.
    expect(get.body.subarray(24).equals(withMark.subarray(44))).toBe(true);
  });

  it('FLUSHSA: proto 0 (every SA) by default, a protocol number otherwise', () => {
    expect(flushStatesRequest().body.equals(hex(IPROUTE2_REQUESTS['flush-sa']))).toBe(true);
    expect(flushStatesRequest('ah').body.equals(hex(IPROUTE2_REQUESTS['flush-sa-ah']))).toBe(true);
  });

  it('decodes an id back', () => {
    const id = { family: 'inet6', destination: 'fd00::5', spi: 0xdeadbeef, protocol: 'ipcomp', mark: { value: 1, mask: 3 } } as const;
    expect(decodeStateId(encodeStateId({ ...id, spi: 0xbeef }))).toEqual({ ...id, spi: 0xbeef });
  });
});

describe('SA decoding', () => {
  for (const [name, sa] of Object.entries(GOLDEN_STATES)) {
    it(`decodes what iproute2 sent for ${name}`, () => {
      const decoded = decodeState(hex(IPROUTE2_REQUESTS[name as keyof typeof IPROUTE2_REQUESTS]));
      expect(withoutObserved(decoded)).toEqual(sa);
      // A request carries no replay state; an ESN request carries XFRMA_REPLAY_ESN_VAL.
      expect(decoded.observed?.replayState !== undefined).toBe(sa.replay.useEsnAttribute);
    });
  }

  it('keeps ALG_AUTH_TRUNC when the kernel reports both ALG_AUTH and ALG_AUTH_TRUNC', () => {
    const sa = GOLDEN_STATES['sa-cbc-hmac-v6-tunnel']!;
    const body = encodeState(sa);
    // What a dump adds: XFRMA_ALG_AUTH (xfrm_algo: name, key length, key) with another key.
    const name = Buffer.alloc(64);
    name.write('hmac(sha256)');
    const plainKey = Buffer.alloc(32, 0xee);
    const head = Buffer.concat([name, Buffer.from([0, 1, 0, 0])]);
    const payload = Buffer.concat([head, plainKey]);
    const attribute = Buffer.alloc(4 + payload.length);
    attribute.writeUInt16LE(4 + payload.length, 0);
    attribute.writeUInt16LE(XFRMA_ALG_AUTH, 2);
    payload.copy(attribute, 4);
    const decoded = decodeState(Buffer.concat([body, attribute]));
    expect(decoded.algorithms).toEqual(sa.algorithms);
    expect(XFRMA_ALG_AUTH_TRUNC).toBe(20);
  });

  it('reads only ALG_AUTH as truncation 0 (the kernel default)', () => {
    const name = Buffer.alloc(64);
    name.write('hmac(sha1)');
    const payload = Buffer.concat([name, Buffer.from([160, 0, 0, 0]), Buffer.alloc(20, 0xab)]);
    const sa = GOLDEN_STATES['sa-ah']!;
    const info = encodeState(sa).subarray(0, 224);
    const attribute = Buffer.alloc(4 + payload.length);
    attribute.writeUInt16LE(4 + payload.length, 0);
    attribute.writeUInt16LE(XFRMA_ALG_AUTH, 2);
    payload.copy(attribute, 4);
    const decoded = decodeState(Buffer.concat([info, attribute]));
    expect(decoded.algorithms.kind).toBe('auth');
    if (decoded.algorithms.kind === 'auth') {
      expect(decoded.algorithms.auth.truncationBits).toBe(0);
      expect(decoded.algorithms.auth.key.reveal().equals(Buffer.alloc(20, 0xab))).toBe(true);
    }
  });

  it('reads the ESN replay state and bitmap length the kernel reports', () => {
    const sa = GOLDEN_STATES['sa-esn-128']!;
    const body = Buffer.from(encodeState(sa));
    // Patch XFRMA_REPLAY_ESN_VAL's oseq/seq/oseq_hi/seq_hi as a live SA would report them.
    const offset = body.indexOf(Buffer.from([0x1c, 0x00, 0x17, 0x00])) + 4;
    body.writeUInt32LE(10, offset + 4);
    body.writeUInt32LE(20, offset + 8);
    body.writeUInt32LE(1, offset + 12);
    body.writeUInt32LE(2, offset + 16);
    expect(decodeState(body).observed?.replayState).toEqual({
      outboundSequence: 10,
      inboundSequence: 20,
      outboundSequenceHigh: 1,
      inboundSequenceHigh: 2,
      bitmapLength: 4,
    });
  });

  it('a too-short key is an error naming the attribute and the lengths', () => {
    const body = encodeState(GOLDEN_STATES['sa-aead-gcm-v4']!);
    const cut = body.subarray(0, body.length - 4);
    cut.writeUInt16LE(cut.readUInt16LE(224) - 4, 224);
    expect(() => decodeState(Buffer.from(cut))).toThrow(/XFRMA_ALG_AEAD announces a 160-bit key \(20 bytes\) but its payload has 16 bytes/);
  });

  it('a truncated xfrm_usersa_info is an error with the lengths', () => {
    expect(() => decodeState(Buffer.alloc(100))).toThrow(/100-byte payload, struct xfrm_usersa_info needs 224/);
  });

  it('Mobile IPv6 states are outside the model (UnsupportedEntryError), not garbage', () => {
    const info = Buffer.from(encodeState(GOLDEN_STATES['sa-ipcomp']!).subarray(0, 224));
    info[76] = 43; // xfrm_usersa_info.id.proto = IPPROTO_ROUTING
    expect(() => decodeState(info)).toThrow(UnsupportedEntryError);
  });
});

describe('SA round trips', () => {
  const variants: SecurityAssociation[] = [];
  for (const base of Object.values(GOLDEN_STATES)) {
    variants.push(base);
    variants.push({ ...base, direction: 'in', selector: { ...base.selector, family: base.id.family, source: { address: base.id.family === 'inet' ? '0.0.0.0' : '::', prefixLength: 0 }, destination: { address: base.id.family === 'inet' ? '0.0.0.0' : '::', prefixLength: 0 } } });
    variants.push({ ...base, ifId: 0xffff_ffff, id: { ...base.id, mark: { value: 0xffff_ffff, mask: 0 } }, lifetime: { ...DEFAULT_LIFETIME, hardUseExpiresSeconds: 1n, softUseExpiresSeconds: XFRM_INFINITY - 1n } });
    if (base.id.protocol === 'esp') variants.push({ ...base, careOfAddress: base.id.family === 'inet' ? '203.0.113.9' : 'fe80::1', outputMark: { value: 1, mask: 0xffff_ffff } });
  }
  variants.push({ ...GOLDEN_STATES['sa-esn-128']!, replay: { window: 4096, useEsnAttribute: true } });
  variants.push({ ...GOLDEN_STATES['sa-esn-128']!, replay: { window: 0, useEsnAttribute: true }, flags: ['esn'], direction: 'out' });
  variants.push({ ...GOLDEN_STATES['sa-esn-128']!, replay: { window: 33, useEsnAttribute: true }, flags: [] });

  it(`encode → decode gives back each of ${variants.length} SAs`, () => {
    for (const sa of variants) {
      const decoded = decodeState(encodeState(sa));
      expect(withoutObserved(decoded)).toEqual(sa);
      // Keys compare by value (KeyMaterial.equals), not only structurally.
      if (sa.algorithms.kind === 'aead' && decoded.algorithms.kind === 'aead') {
        expect(decoded.algorithms.aead.key.equals(sa.algorithms.aead.key)).toBe(true);
      }
    }
  });

  it('an SA direction travels as XFRMA_SA_DIR (33), a u8', () => {
    const body = encodeState({ ...GOLDEN_STATES['sa-aead-gcm-v4']!, direction: 'out' });
    expect(body.subarray(body.length - 8).toString('hex')).toBe('0500210002000000');
    expect(XFRMA_SA_DIR).toBe(0x21);
  });

  it('replay windows: ≤ 32 in the u8 of xfrm_usersa_info, above 32 in XFRMA_REPLAY_ESN_VAL with bmp_len = ceil(window/32)', () => {
    const base = GOLDEN_STATES['sa-aead-gcm-v4']!;
    for (const [window, bmpLen] of [
      [33, 2],
      [64, 2],
      [65, 3],
      [4096, 128],
    ] as const) {
      const body = encodeState({ ...base, replay: { window, useEsnAttribute: window > 32 } });
      expect(body[215]).toBe(0); // xfrm_usersa_info.replay_window must be 0 with the ESN attribute
      const at = body.indexOf(Buffer.from([0x1c, 0x00, 0x17, 0x00]));
      expect(at).toBeGreaterThan(0);
      expect(body.readUInt32LE(at + 4)).toBe(bmpLen);
      expect(body.readUInt32LE(at + 24)).toBe(window);
    }
    const legacy = encodeState({ ...base, replay: { window: 32, useEsnAttribute: false } });
    expect(legacy[215]).toBe(32);
    expect(legacy.indexOf(Buffer.from([0x1c, 0x00, 0x17, 0x00]))).toBe(-1);
  });
});

describe('SA validation before sending', () => {
  const base = GOLDEN_STATES['sa-aead-gcm-v4']!;
  const cases: Array<[string, SecurityAssociation, RegExp]> = [
    ['AH with an AEAD', { ...base, id: { ...base.id, protocol: 'ah' } }, /ah SAs take auth algorithms, not aead/],
    ['IPComp with a large CPI', { ...GOLDEN_STATES['sa-ipcomp']!, id: { ...GOLDEN_STATES['sa-ipcomp']!.id, spi: 0x10000 } }, /16-bit CPI/],
    ['window above 4096', { ...base, replay: { window: 4097, useEsnAttribute: true } }, /replay window 4097 is not 0\.\.4096/],
    ['ESN without a window', { ...base, flags: ['esn'] }, /esn flag needs a replay window/],
    ['ESN on IPComp', { ...GOLDEN_STATES['sa-ipcomp']!, replay: { window: 64, useEsnAttribute: true } }, /only supported for esp and ah/],
    ['tfcpad in transport mode', { ...base, tfcPad: 10 }, /TFC padding is only for esp in tunnel mode/],
    ['beet with AH', { ...GOLDEN_STATES['sa-ah']!, mode: 'beet' }, /beet is only supported with esp/],
    ['ro mode for esp', { ...base, mode: 'ro' }, /Mobile IPv6/],
    ['SPI above 32 bits', { ...base, id: { ...base.id, spi: 2 ** 32 } }, /not a 32-bit value/],
    ['negative reqid', { ...base, reqid: -1 }, /reqid -1/],
  ];
  for (const [name, sa, message] of cases) {
    it(`refuses ${name}`, () => {
      expect(validateState(sa)).toMatch(message);
      expect(() => encodeState(sa)).toThrow(NetlinkCodecError);
      expect(() => encodeState(sa)).toThrow(message);
    });
  }

  it('names the field of a malformed address', () => {
    expect(() => encodeState({ ...base, source: '2001:db8::1' })).toThrow(/source 2001:db8::1 is not inet/);
    expect(() => encodeState({ ...base, id: { ...base.id, destination: '300.1.1.1' } })).toThrow(/destination: "300.1.1.1" is not an IPv4 or IPv6 address/);
  });

  it('names the field of a too-long algorithm name', () => {
    const name = 'x'.repeat(64);
    expect(() => encodeState({ ...base, algorithms: { kind: 'aead', aead: { name, key: GCM_KEY, icvBits: 128 } } })).toThrow(
      /XFRMA_ALG_AEAD: .*alg_name.*64 bytes, char\[64\] holds at most 63/,
    );
  });

  it('a selector prefix longer than its family allows', () => {
    expect(() => encodeState({ ...base, selector: { ...base.selector, family: 'inet', source: { address: '10.0.0.0', prefixLength: 33 } } })).toThrow(
      /selector source prefix length 33 is not 0\.\.32/,
    );
  });
});
