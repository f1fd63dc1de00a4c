/**
 * Attribute encoder and decoder: literal bytes one field per line, nesting with lengths filled
 * on close, the first error kept, and decoding that validates the whole buffer first.
 */
import { describe, expect, it } from 'vitest';

import { AttributeDecoder, AttributeEncoder } from '../../src/netlink/attributes.js';
import { NetlinkCodecError } from '../../src/netlink/codec-error.js';
import { at, struct, u16, u32 } from '../../src/netlink/layout.js';

const names = (type: number): string => ({ 1: 'A_ONE', 2: 'A_TWO', 3: 'A_NEST' })[type] ?? `attr ${type}`;
const pair = struct('pair', 8, { a: at(0, u16), b: at(4, u32) });

describe('AttributeEncoder', () => {
  it('writes nla_len (without padding), nla_type and zeroed padding', () => {
    const bytes = new AttributeEncoder('test', names).header(Buffer.from([0xff, 0xee])).u8(1, 0x7f).u32(2, 0x01020304).string(5, 'ab').finish();
    expect(bytes.toString('hex')).toBe(
      [
        'ffee0000', // fixed header, padded to 4
        '0500', '0100', '7f000000', // A_ONE: len 5, u8, 3 bytes padding
        '0800', '0200', '04030201', // A_TWO: len 8, u32
        '0700', '0500', '616200', '00', // string "ab\0", padded
      ].join(''),
    );
  });

  it('nests by callback and fills the length on close, with NLA_F_NESTED', () => {
    const bytes = new AttributeEncoder('test', names)
      .nested(3, (e) => {
        e.u16(1, 0xabcd);
        e.nested(3, (inner) => inner.flag(2));
      })
      .finish();
    expect(bytes.toString('hex')).toBe(
      [
        '1400', '0380', // A_NEST, len 20, type 3 | NLA_F_NESTED
        '0600', '0100', 'cdab', '0000', // A_ONE u16 + padding
        '0800', '0380', // inner nest, len 8
        '0400', '0200', // empty flag attribute
      ].join(''),
    );
  });

  it('encodes struct payloads by layout, padding zeroed', () => {
    const bytes = new AttributeEncoder('test', names).struct(1, pair, { a: 0x0102, b: 0x0a0b0c0d }).finish();
    expect(bytes.toString('hex')).toBe(['0c00', '0100', '0201', '0000', '0d0c0b0a'].join(''));
  });

  it('keeps the first error and ignores later calls', () => {
    const encoder = new AttributeEncoder('XFRM_MSG_TEST', names).u8(1, 300).u32(2, -1).u32(2, 1);
    expect(encoder.error?.message).toBe('XFRM_MSG_TEST: A_ONE: 300 does not fit a u8');
    expect(encoder.length).toBe(0);
    expect(() => encoder.finish()).toThrow(NetlinkCodecError);
  });

  it('refuses attribute types outside 14 bits and payloads longer than nla_len can say', () => {
    expect(new AttributeEncoder('t').flag(0x4000).error?.message).toMatch(/outside 1\.\.16383/);
    expect(new AttributeEncoder('t', names).bytes(1, Buffer.alloc(70_000)).error?.message).toMatch(/A_ONE: payload of 70000 bytes exceeds/);
  });

  it('names the struct field that does not fit', () => {
    expect(new AttributeEncoder('t', names).struct(1, pair, { a: 70_000, b: 0 }).error?.message).toBe(
      't: A_ONE: struct pair.a: 70000 does not fit __u16 (0..65535)',
    );
  });

  it('grows past its initial capacity', () => {
    const encoder = new AttributeEncoder('t', names, 8);
    for (let i = 0; i < 100; i += 1) encoder.u32(1, i);
    const bytes = encoder.finish();
    expect(bytes.length).toBe(800);
    expect(bytes.readUInt32LE(796)).toBe(99);
  });
});

describe('AttributeDecoder', () => {
  const encoded = new AttributeEncoder('t', names)
    .u8(1, 9)
    .nested(3, (e) => e.u32(2, 77))
    .u64(4, 0x1122334455667788n)
    .finish();

  it('iterates attributes with typed getters', () => {
    const decoder = new AttributeDecoder(encoded, 'test', names);
    const seen: string[] = [];
    while (decoder.next()) {
      switch (decoder.type) {
        case 1:
          seen.push(`one ${decoder.u8()}`);
          break;
        case 3: {
          expect(decoder.current.nested).toBe(true);
          const child = decoder.nested();
          while (child.next()) seen.push(`nested two ${child.u32()}`);
          break;
        }
        case 4:
          seen.push(`u64 ${decoder.u64().toString(16)}`);
          break;
      }
    }
    decoder.finish();
    expect(seen).toEqual(['one 9', 'nested two 77', 'u64 1122334455667788']);
  });

  it('records a short payload with the attribute name and lengths', () => {
    const decoder = new AttributeDecoder(encoded, 'XFRM_MSG_X', names);
    decoder.next();
    expect(decoder.u32()).toBe(0);
    expect(decoder.error?.message).toBe('XFRM_MSG_X: A_ONE has a 1-byte payload, 4-byte value needs 4');
    expect(decoder.next()).toBe(false);
  });

  it('reads a struct and reports one that is too short', () => {
    const bytes = new AttributeEncoder('t', names).bytes(2, Buffer.alloc(6)).finish();
    const decoder = new AttributeDecoder(bytes, 'msg', names);
    decoder.next();
    expect(decoder.struct(pair)).toBeUndefined();
    expect(decoder.error?.message).toBe('msg: A_TWO has a 6-byte payload, struct pair needs 8');
  });

  it('validates the whole buffer before yielding anything', () => {
    const broken = Buffer.concat([encoded, Buffer.from([0x08, 0x00, 0x01, 0x00, 0x00])]);
    const decoder = new AttributeDecoder(broken, 'msg', names);
    expect(decoder.next()).toBe(false);
    expect(decoder.all).toEqual([]);
    expect(decoder.error?.message).toMatch(/msg: A_ONE at offset 32 has nla_len 8, but 5 bytes remain/);
  });

  it('every truncation of a valid run is either clean or a clear error', () => {
    for (let cut = 0; cut < encoded.length; cut += 1) {
      const decoder = new AttributeDecoder(encoded.subarray(0, cut), 'msg', names);
      if (decoder.error) expect(decoder.error.message).toMatch(/nla_len|too short for an nlattr header/);
      else expect(decoder.all.reduce((sum, a) => sum + 4 + a.payload.length, 0)).toBeLessThanOrEqual(cut);
    }
  });
});
