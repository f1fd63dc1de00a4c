import { describe, expect, it } from 'vitest';
import { DEFAULT_LIFETIME, makePolicy, makeSelector, makeTemplate } from '../../src/xfrm/defaults.js';
import { decodePolicy, decodePolicyByTable, encodePolicy } from '../../src/xfrm/policy-codec.js';
import { decodePolicyFast } from '../../src/xfrm/policy-fast-decode.js';
import * as K from '../../src/xfrm/abi/constants.js';
import { FWD_INDEX_AH, SUB_MARK_TUNNEL, V6_ICMP_TWO_TEMPLATES, withFirstTemplateSpi } from '../support/policy-shapes.js';

// The direct decoder of dumped policies (src/xfrm/policy-fast-decode.ts) must give exactly what
// the layout tables give, and hand everything it does not handle to them (so errors and
// unsupported entries stay as they were). The generic decoder is the reference here: it is
// checked against the kernel's headers (xfrm-layout.test.ts) and the kernel (the kernel layer).
const SHAPES = {
  'v4 out, one transport template': makePolicy({
    direction: 'out',
    selector: makeSelector({ source: '10.0.0.1/32', destination: '192.0.2.1/32' }),
    priority: 100,
    templates: [makeTemplate({ family: 'inet', protocol: 'esp', mode: 'transport', reqid: 1 })],
  }),
  'sub type, mark, ports, tunnel': withFirstTemplateSpi(SUB_MARK_TUNNEL, 0x1234),
  'v6 in, block, if_id, flags, two templates': V6_ICMP_TWO_TEMPLATES,
  'fwd, index, lifetimes, ah': { ...FWD_INDEX_AH, lifetime: { ...DEFAULT_LIFETIME, hardAddExpiresSeconds: 100n, softPacketLimit: 50n, hardByteLimit: 1n << 40n } },
  'no templates': makePolicy({ direction: 'out', selector: makeSelector({ source: '10.9.0.0/16', destination: '10.8.0.0/16' }), action: 'block' }),
};

/** A body as a dump shows it: an index the kernel chose, counters and an add time. */
function dumped(policy: (typeof SHAPES)[keyof typeof SHAPES]): Buffer {
  const body = encodePolicy(policy);
  if (policy.index === 0) body.writeUInt32LE(8 * 17 + (body[160]! & 7), 156);
  body.writeBigUInt64LE(12345n, 120);
  body.writeBigUInt64LE(1n << 33n, 128);
  body.writeBigUInt64LE(1_764_000_000n, 136);
  return body;
}

function outcome(decode: () => unknown): unknown {
  try {
    return { value: decode() };
  } catch (error) {
    return { error: (error as Error).constructor.name, message: (error as Error).message };
  }
}

describe('the direct policy decoder', () => {
  for (const [name, policy] of Object.entries(SHAPES)) {
    it(`decodes ${name} as the layout tables do`, () => {
      const body = dumped(policy);
      const fast = decodePolicyFast(body);
      expect(fast).toBeDefined();
      expect(fast).toEqual(decodePolicyByTable(body));
      expect(decodePolicy(body)).toEqual(decodePolicyByTable(body));
    });

    it(`gives the same entry or the same error for every corrupted byte and every truncation of ${name}`, () => {
      const body = dumped(policy);
      for (let at = 0; at < body.length; at++) {
        for (const value of [0, 2, 3, 10, 0xff]) {
          const corrupt = Buffer.from(body);
          corrupt[at] = value;
          expect(outcome(() => decodePolicy(corrupt, 'where')), `byte ${at} = ${value}`).toEqual(outcome(() => decodePolicyByTable(corrupt, 'where')));
        }
      }
      for (let length = 0; length < body.length; length++) {
        const short = body.subarray(0, length);
        expect(outcome(() => decodePolicy(short, 'where')), `${length} bytes`).toEqual(outcome(() => decodePolicyByTable(short, 'where')));
      }
    });
  }

  it('hands a policy with a security context to the layout tables (unsupported there)', () => {
    const body = dumped(SHAPES['v4 out, one transport template']);
    const context = Buffer.alloc(12);
    context.writeUInt16LE(12, 0);
    context.writeUInt16LE(K.XFRMA_SEC_CTX, 2);
    const labelled = Buffer.concat([body, context]);
    expect(decodePolicyFast(labelled)).toBeUndefined();
    expect(outcome(() => decodePolicy(labelled))).toEqual(outcome(() => decodePolicyByTable(labelled)));
    expect(outcome(() => decodePolicy(labelled))).toMatchObject({ error: 'UnsupportedEntryError' });
  });
});
