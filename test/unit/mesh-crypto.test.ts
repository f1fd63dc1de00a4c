import { describe, expect, it } from 'vitest';
import { inspect } from 'node:util';

import { hkdfSha256 } from '../../src/mesh/hkdf.js';
import { generateX25519KeyPair, x25519PublicKey, x25519SharedSecret } from '../../src/mesh/x25519.js';
import { KeyMaterial } from '../../src/xfrm/key-material.js';

const hex = (value: string): Buffer => Buffer.from(value.replace(/\s+/g, ''), 'hex');
const range = (from: number, to: number): Buffer => Buffer.from(Array.from({ length: to - from + 1 }, (_, i) => from + i));

describe('HKDF-SHA256 against RFC 5869 appendix A', () => {
  it('A.1: basic test case', () => {
    const okm = hkdfSha256(hex('0b'.repeat(22)), hex('000102030405060708090a0b0c'), hex('f0f1f2f3f4f5f6f7f8f9'), 42);
    expect(okm.toString('hex')).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  it('A.2: longer inputs and outputs', () => {
    const okm = hkdfSha256(range(0x00, 0x4f), range(0x60, 0xaf), range(0xb0, 0xff), 82);
    expect(okm.toString('hex')).toBe(
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87',
    );
  });

  it('A.3: zero-length salt and info', () => {
    const okm = hkdfSha256(hex('0b'.repeat(22)), Buffer.alloc(0), Buffer.alloc(0), 42);
    expect(okm.toString('hex')).toBe('8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8');
  });

  it('refuses output lengths outside 1..255*32', () => {
    expect(() => hkdfSha256(hex('00'), hex('00'), hex('00'), 0)).toThrow(/output length/);
    expect(() => hkdfSha256(hex('00'), hex('00'), hex('00'), 255 * 32 + 1)).toThrow(/output length/);
  });
});

describe('X25519 against RFC 7748', () => {
  const scalarMult = (scalar: string, u: string): string => x25519SharedSecret(KeyMaterial.fromBytes(hex(scalar)), hex(u)).reveal().toString('hex');

  it('section 5.2, first vector', () => {
    expect(scalarMult('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4', 'e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c')).toBe(
      'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552',
    );
  });

  it('section 5.2, second vector (the u-coordinate has its top bit set: it must be masked)', () => {
    expect(scalarMult('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d', 'e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493')).toBe(
      '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957',
    );
  });

  it('section 5.2, one iteration from k = u = 9', () => {
    const nine = `09${'00'.repeat(31)}`;
    expect(scalarMult(nine, nine)).toBe('422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079');
  });

  it('section 6.1: both public keys and the shared secret', () => {
    const alice = KeyMaterial.fromBytes(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
    const bob = KeyMaterial.fromBytes(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
    const alicePublic = x25519PublicKey(alice);
    const bobPublic = x25519PublicKey(bob);
    expect(alicePublic.toString('hex')).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(bobPublic.toString('hex')).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(x25519SharedSecret(alice, bobPublic).reveal().toString('hex')).toBe(shared);
    expect(x25519SharedSecret(bob, alicePublic).reveal().toString('hex')).toBe(shared);
  });

  it('refuses a low-order public key (all-zero secret) and wrong lengths, without printing keys', () => {
    const { privateKey } = generateX25519KeyPair();
    expect(() => x25519SharedSecret(privateKey, Buffer.alloc(32))).toThrow(/low-order/);
    expect(() => x25519SharedSecret(privateKey, Buffer.alloc(31, 1))).toThrow(/32 bytes, got 31/);
    expect(() => x25519SharedSecret(KeyMaterial.fromBytes(Buffer.alloc(16, 1)), Buffer.alloc(32, 9))).toThrow(/32 bytes, got 16/);
  });

  it('generates fresh pairs whose private half does not print', () => {
    const a = generateX25519KeyPair();
    const b = generateX25519KeyPair();
    expect(a.publicKey).toHaveLength(32);
    expect(a.publicKey.equals(b.publicKey)).toBe(false);
    expect(x25519PublicKey(a.privateKey).equals(a.publicKey)).toBe(true);
    const printed = `${a.privateKey} ${JSON.stringify({ k: a.privateKey })} ${inspect(a.privateKey)}`;
    expect(printed).not.toContain(a.privateKey.reveal().toString('hex'));
    expect(printed).not.toContain(a.privateKey.reveal().toString('base64'));
  });
});
