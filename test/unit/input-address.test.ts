// One address parser for the model and the codec (issue 8, item 8): whatever text a manifest
// holds, the model builds the very string the codec decodes from the kernel's bytes, so desired
// and observed entries converge. IPv4-mapped and -compatible IPv6 addresses were where the two
// used to part (the model printed ::ffff:c000:201, the codec ::ffff:192.0.2.1).
import { describe, expect, it } from 'vitest';
import { buildSecurityAssociation, buildSecurityPolicy } from '../../src/model/build.js';
import { parseAddress, parsePrefix } from '../../src/model/ip.js';
import { canonicalAddress } from '../../src/xfrm/address.js';
import { decodeState, encodeState } from '../../src/xfrm/state-codec.js';
import { decodePolicy, encodePolicy } from '../../src/xfrm/policy-codec.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import { policySpec, saSpec, testContext } from '../support/entries.js';

const SPELLINGS: [string, string][] = [
  ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
  ['::FFFF:C000:0201', '::ffff:192.0.2.1'],
  ['0:0:0:0:0:ffff:c000:201', '::ffff:192.0.2.1'],
  ['::ffff:0:0', '::ffff:0.0.0.0'],
  ['::192.0.2.1', '::192.0.2.1'],
  ['2001:DB8:0:0::1', '2001:db8::1'],
  ['fd00:0::01', 'fd00::1'],
  ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
  ['::', '::'],
];

describe('one canonical address form for the model and the codec', () => {
  it.each(SPELLINGS)('the model reads %s as the codec prints it (%s)', (text, canonical) => {
    expect(parseAddress(text)?.address).toBe(canonical);
    expect(canonicalAddress(text)).toBe(canonical);
    // Idempotent: the canonical text reads back as itself through either parser.
    expect(parseAddress(canonical)?.address).toBe(canonical);
    expect(canonicalAddress(canonical)).toBe(canonical);
  });

  it.each(SPELLINGS.filter(([, canonical]) => canonical !== '::'))('an SA to %s survives encode → decode with the same identity', (text) => {
    const built = buildSecurityAssociation(saSpec({ source: '2001:db8::99', destination: text }), testContext);
    if (!built.ok) throw new Error(JSON.stringify(built.errors));
    const decoded = decodeState(encodeState(built.value));
    expect(decoded.id.destination).toBe(built.value.id.destination);
    expect(stateKey(decoded.id)).toBe(stateKey(built.value.id));
    // And back: the decoded text builds the same desired entry.
    const again = buildSecurityAssociation(saSpec({ source: decoded.source, destination: decoded.id.destination }), testContext);
    expect(again.ok && stateKey(again.value.id)).toBe(stateKey(built.value.id));
  });

  it('a policy selecting ::ffff:192.0.2.0/120 survives encode → decode with the same identity', () => {
    const built = buildSecurityPolicy(policySpec({ selector: { source: '::ffff:c000:200/120', destination: '::ffff:198.51.100.0/120' }, templates: [] }), testContext);
    if (!built.ok) throw new Error(JSON.stringify(built.errors));
    expect(built.value.id.selector.source.address).toBe('::ffff:192.0.2.0');
    const decoded = decodePolicy(encodePolicy(built.value));
    expect(policyKey(decoded.id)).toBe(policyKey(built.value.id));
    expect(decoded.id.selector.destination.address).toBe('::ffff:198.51.100.0');
  });

  it('refuses what the codec refuses, with the same family rules', () => {
    for (const text of ['198.051.100.1', '1.2.3', 'fe80::1%eth0', '1::2::3', '::ffff:1.2.3.256', '12345::1']) {
      expect(parseAddress(text), text).toBeUndefined();
      expect(() => canonicalAddress(text), text).toThrow();
    }
    expect(parsePrefix('::ffff:192.0.2.1/120')).toMatch(/bits set beyond \/120/);
    expect(parsePrefix('10.0.0.0/08')).toMatch(/prefix length "08" must be 0..32/);
  });
});
