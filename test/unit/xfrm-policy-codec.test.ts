import { describe, expect, it } from 'vitest';

import { NetlinkCodecError, UnsupportedEntryError } from '../../src/netlink/codec-error.js';
import { DEFAULT_LIFETIME, makePolicy, makeSelector, makeTemplate } from '../../src/xfrm/defaults.js';
import {
  deletePolicyRequest,
  dumpPoliciesRequest,
  flushPoliciesRequest,
  getPolicyRequest,
  newPolicyRequest,
  updatePolicyRequest,
} from '../../src/xfrm/messages.js';
import { decodePolicy, decodePolicyId, encodePolicy, encodePolicyId, validatePolicy } from '../../src/xfrm/policy-codec.js';
import type { SecurityPolicy } from '../../src/xfrm/types.js';
import { IPROUTE2_REQUESTS, hex } from './fixtures/iproute2-requests.js';
import { breakdown } from './fixtures/xfrm-builders.js';
import { FWD_INDEX_AH, SUB_MARK_TUNNEL, V4_ICMP_SIX_TEMPLATES, V6_ICMP_TWO_TEMPLATES } from '../support/policy-shapes.js';

const GOLDEN_POLICIES: Record<string, SecurityPolicy> = {
  'pol-sub-mark-tunnel': SUB_MARK_TUNNEL,
  'pol-v6-icmp-two-tmpl': V6_ICMP_TWO_TEMPLATES,
  'pol-fwd-index-limits': { ...FWD_INDEX_AH, lifetime: { ...DEFAULT_LIFETIME, hardAddExpiresSeconds: 100n, softPacketLimit: 50n } },
  'pol-v4-icmp-six-tmpl': V4_ICMP_SIX_TEMPLATES,
};

describe('policy encoding matches iproute2 byte for byte', () => {
  for (const [name, policy] of Object.entries(GOLDEN_POLICIES)) {
    it(name, () => {
      const expected = hex(IPROUTE2_REQUESTS[name as keyof typeof IPROUTE2_REQUESTS]);
      expect(breakdown(encodePolicy(policy), 168)).toEqual(breakdown(expected, 168));
      expect(encodePolicy(policy).equals(expected)).toBe(true);
    });
  }

  it('DELPOLICY carries xfrm_userpolicy_id, ptype, mark', () => {
    const request = deletePolicyRequest(SUB_MARK_TUNNEL.id);
    expect(request.type).toBe(0x14);
    expect(breakdown(request.body, 64)).toEqual(breakdown(hex(IPROUTE2_REQUESTS['pol-delete-sub-mark']), 64));
  });

  it('GETPOLICY carries xfrm_userpolicy_id and if_id', () => {
    const request = getPolicyRequest(V6_ICMP_TWO_TEMPLATES.id);
    expect(request.type).toBe(0x15);
    expect(request.replyType).toBe(0x13);
    expect(request.body.equals(hex(IPROUTE2_REQUESTS['pol-get-if-id']))).toBe(true);
  });

  it('FLUSHPOLICY: empty for main, XFRMA_POLICY_TYPE for sub', () => {
    expect(flushPoliciesRequest().body.equals(hex(IPROUTE2_REQUESTS['flush-pol']))).toBe(true);
    expect(flushPoliciesRequest('sub').body.equals(hex(IPROUTE2_REQUESTS['flush-pol-sub']))).toBe(true);
  });

  it('NEWPOLICY and UPDPOLICY share one body; a dump is the header alone with NLM_F_DUMP', () => {
    const add = newPolicyRequest(SUB_MARK_TUNNEL);
    const update = updatePolicyRequest(SUB_MARK_TUNNEL);
    expect([add.type, update.type]).toEqual([0x13, 0x19]);
    expect(add.body.equals(update.body)).toBe(true);
    expect(add.operation).toBe('XFRM_MSG_NEWPOLICY dir out ptype sub 10.0.0.0/24 -> 10.0.1.0/24 proto 6 sport 80 dport 443 mark 0x5/0xff');
    const dump = dumpPoliciesRequest();
    expect({ type: dump.type, flags: dump.flags, length: dump.body.length }).toEqual({ type: 0x15, flags: 0x300, length: 0 });
  });
});

describe('policy decoding', () => {
  for (const [name, policy] of Object.entries(GOLDEN_POLICIES)) {
    it(`decodes what iproute2 sent for ${name}`, () => {
      const decoded = decodePolicy(hex(IPROUTE2_REQUESTS[name as keyof typeof IPROUTE2_REQUESTS]));
      expect({ ...decoded, observed: undefined }).toEqual(policy);
      expect(decoded.observed?.current).toEqual({ bytes: 0n, packets: 0n, addTime: 0n, useTime: 0n });
    });
  }

  it('decodes a policy id (the head of a DELPOLICY event)', () => {
    expect(decodePolicyId(encodePolicyId(SUB_MARK_TUNNEL.id))).toEqual({ id: SUB_MARK_TUNNEL.id, index: 0 });
  });

  it('per-socket policies (dir 3..5) are outside the model', () => {
    const body = Buffer.from(encodePolicy(SUB_MARK_TUNNEL));
    body[160] = 4; // xfrm_userpolicy_info.dir = XFRM_POLICY_OUT + XFRM_POLICY_MAX
    expect(() => decodePolicy(body)).toThrow(UnsupportedEntryError);
    expect(() => decodePolicy(body)).toThrow(/per-socket policy \(dir 4\)/);
  });

  it('labelled policies (XFRMA_SEC_CTX) are outside the model: no request of ours can reach them', () => {
    // struct xfrm_user_sec_ctx { u16 len, exttype; u8 ctx_alg, ctx_doi; u16 ctx_len } + context,
    // as an attribute of type 8 (written by hand here, independent of the codec's attribute writer).
    const context = Buffer.from('system_u:object_r:ipsec_spd_t:s0', 'latin1');
    const secCtx = Buffer.alloc(8 + context.length);
    secCtx.writeUInt16LE(secCtx.length, 0);
    secCtx.writeUInt16LE(8, 2);
    secCtx.writeUInt8(1, 4);
    secCtx.writeUInt8(1, 5);
    secCtx.writeUInt16LE(context.length, 6);
    context.copy(secCtx, 8);
    const attribute = Buffer.alloc(4 + Math.ceil(secCtx.length / 4) * 4);
    attribute.writeUInt16LE(4 + secCtx.length, 0);
    attribute.writeUInt16LE(8, 2);
    secCtx.copy(attribute, 4);
    const body = Buffer.concat([Buffer.from(encodePolicy(SUB_MARK_TUNNEL)), attribute]);
    expect(() => decodePolicy(body)).toThrow(UnsupportedEntryError);
    expect(() => decodePolicy(body)).toThrow(/security context/);
    // Without it, the same bytes decode.
    expect(decodePolicy(Buffer.from(encodePolicy(SUB_MARK_TUNNEL))).id).toEqual(SUB_MARK_TUNNEL.id);
  });

  it('an XFRMA_TMPL that is not a whole number of templates is an error with the lengths', () => {
    const full = encodePolicy(SUB_MARK_TUNNEL);
    const at = full.indexOf(Buffer.from([0x44, 0x00, 0x05, 0x00]));
    // Keep the attribute well-formed but drop the template's last 4 bytes.
    const body = Buffer.concat([full.subarray(0, at), Buffer.from([0x40, 0x00, 0x05, 0x00]), full.subarray(at + 4, at + 64), full.subarray(at + 68)]);
    expect(() => decodePolicy(body)).toThrow(/XFRMA_TMPL has 60 bytes, not a multiple of struct xfrm_user_tmpl \(64\)/);
  });

  it('an attribute running past the message is an error naming it', () => {
    const body = Buffer.from(encodePolicy(SUB_MARK_TUNNEL));
    body.writeUInt16LE(0x200, body.indexOf(Buffer.from([0x0c, 0x00, 0x15, 0x00])));
    expect(() => decodePolicy(body)).toThrow(/XFRMA_MARK at offset \d+ has nla_len 512, but 12 bytes remain/);
  });
});

describe('policy round trips', () => {
  const shapes: SecurityPolicy[] = [];
  for (const base of Object.values(GOLDEN_POLICIES)) {
    shapes.push(base);
    shapes.push({ ...base, id: { ...base.id, mark: undefined, ifId: undefined, type: 'main' } });
    shapes.push({ ...base, action: 'block', priority: 1, flags: ['icmp'], share: 'unique', templates: [] });
  }
  for (const share of ['any', 'session', 'user', 'unique'] as const) {
    for (const mode of ['transport', 'tunnel', 'beet', 'ro', 'in_trigger'] as const) {
      shapes.push(
        makePolicy({
          direction: 'fwd',
          selector: makeSelector({ source: '2001:db8::/32', destination: '2001:db8:1::/48', protocol: 17, sourcePort: 53 }),
          templates: [
            makeTemplate({
              source: '2001:db8::1',
              destination: '2001:db8::2',
              protocol: 'esp',
              mode,
              share,
              spi: 0xffff_ffff,
              reqid: 0xffff_ffff,
              authAlgorithmMask: 1,
              encryptionAlgorithmMask: 2,
              compressionAlgorithmMask: 0,
            }),
          ],
        }),
      );
    }
  }

  it(`encode → decode gives back each of ${shapes.length} policies`, () => {
    for (const policy of shapes) {
      expect({ ...decodePolicy(encodePolicy(policy)), observed: undefined }).toEqual(policy);
    }
  });

  it('zeroes all padding (policy identity compares selector bytes)', () => {
    const body = encodePolicy(SUB_MARK_TUNNEL);
    // xfrm_selector: 3 bytes after proto (45..47); xfrm_userpolicy_info: 4 bytes after share (164..167).
    expect(body.subarray(45, 48).toString('hex')).toBe('000000');
    expect(body.subarray(164, 168).toString('hex')).toBe('00000000');
    // xfrm_user_tmpl (after the 12-byte POLICY_TYPE attribute and the TMPL header): id tail, family tail, optional tail.
    const tmpl = body.subarray(168 + 12 + 4);
    expect([tmpl.subarray(21, 24), tmpl.subarray(26, 28), tmpl.subarray(51, 52)].map((b) => b.toString('hex'))).toEqual(['000000', '0000', '00']);
  });
});

describe('policy validation before sending', () => {
  const cases: Array<[string, SecurityPolicy, RegExp]> = [
    ['an index of another direction', { ...SUB_MARK_TUNNEL, index: 8 }, /index 8 encodes direction 0, but the policy is dir out \(1\)/],
    ['seven templates', { ...SUB_MARK_TUNNEL, templates: new Array(7).fill(SUB_MARK_TUNNEL.templates[0]) }, /7 templates, the kernel allows at most 6/],
    ['a selector without family', { ...SUB_MARK_TUNNEL, id: { ...SUB_MARK_TUNNEL.id, selector: { ...SUB_MARK_TUNNEL.id.selector, family: undefined } } }, /needs a family/],
    ['a negative priority', { ...SUB_MARK_TUNNEL, priority: -1 }, /priority -1/],
    ['a mark above 32 bits', { ...SUB_MARK_TUNNEL, id: { ...SUB_MARK_TUNNEL.id, mark: { value: 2 ** 32, mask: 1 } } }, /mark 4294967296\/1/],
  ];
  for (const [name, policy, message] of cases) {
    it(`refuses ${name}`, () => {
      expect(validatePolicy(policy)).toMatch(message);
      expect(() => encodePolicy(policy)).toThrow(NetlinkCodecError);
    });
  }

  it('names the template and field of a bad address', () => {
    const template = makeTemplate({ source: '10.0.0.1', destination: 'fd00::2', protocol: 'esp', family: 'inet' });
    expect(() => encodePolicy({ ...SUB_MARK_TUNNEL, templates: [SUB_MARK_TUNNEL.templates[0]!, template] })).toThrow(
      /XFRMA_TMPL: template 1 destination fd00::2 is not inet/,
    );
  });

  it('ports above 16 bits', () => {
    const selector = { ...SUB_MARK_TUNNEL.id.selector, destinationPort: 70000 };
    expect(() => encodePolicyId({ ...SUB_MARK_TUNNEL.id, selector })).toThrow(/destination port 70000 is not 0\.\.65535/);
  });
});
