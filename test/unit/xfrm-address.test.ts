import { describe, expect, it } from 'vitest';

import { AddressError, canonicalAddress, formatAddress, parseAddress, parsePrefix } from '../../src/xfrm/address.js';

describe('canonical addresses (what `ip` prints)', () => {
  // Left: input; right: canonical text. IPv6 cases follow RFC 5952 section 4 and glibc's
  // inet_ntop for embedded IPv4 (checked against `ip xfrm policy` output on this machine).
  const cases: Array<[string, string]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group is not shortened (4.2.2)
    ['2001:0:0:1:0:0:1:1', '2001::1:0:0:1:1'], // tie: the first run (4.2.3)
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['fe80::0001', 'fe80::1'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['::ffff:0102:0304', '::ffff:1.2.3.4'],
    ['::1.2.3.4', '::1.2.3.4'],
    ['::0.0.1.0', '::100'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
  ];
  for (const [input, expected] of cases) {
    it(`${input} → ${expected}`, () => {
      expect(canonicalAddress(input)).toBe(expected);
    });
  }

  const invalid = ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', ':::', '1::2::3', '12345::', 'g::1', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '::1.2.3.4:5', '1.2.3.4::'];
  for (const input of invalid) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      expect(() => parseAddress(input)).toThrow(AddressError);
    });
  }

  it('formats raw bytes by family', () => {
    expect(formatAddress('inet', Buffer.from([192, 0, 2, 1, 9, 9]))).toBe('192.0.2.1');
    expect(() => formatAddress('inet6', Buffer.alloc(4))).toThrow(/needs 16 bytes/);
  });

  it('parses prefixes, full length when bare', () => {
    expect(parsePrefix('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefixLength: 8 });
    expect(parsePrefix('fd00:0::1')).toEqual({ address: 'fd00::1', prefixLength: 128 });
    expect(() => parsePrefix('10.0.0.0/33')).toThrow(/0\.\.32/);
    expect(() => parsePrefix('fd00::/129')).toThrow(/0\.\.128/);
  });

  it('round-trips every 16-bit group position through parse and format', () => {
    for (let position = 0; position < 8; position += 1) {
      for (const value of [0, 1, 0xffff]) {
        const bytes = Buffer.alloc(16);
        bytes.writeUInt16BE(value, position * 2);
        const text = formatAddress('inet6', bytes);
        expect(parseAddress(text).bytes.equals(bytes)).toBe(true);
      }
    }
  });
});

describe('IPv4 text through its bounded cache', () => {
  it('formats every address right, across the cache being emptied and refilled', () => {
    // 10,000 distinct addresses (more than the cache holds), twice over.
    const bytes = Buffer.alloc(4);
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 10_000; i++) {
        const value = (i * 2_654_435_761) >>> 0; // spread over the whole space
        bytes.writeUInt32BE(value);
        expect(formatAddress('inet', bytes)).toBe(`${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`);
      }
    }
  });
});
