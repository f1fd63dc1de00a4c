/**
 * Security policies of unusual shapes, shared by the codec's golden tests, the direct decoder's
 * tests and the host-kernel client tests, so that each shape is written once. Each is what
 * `ip xfrm policy add` makes from the command line in its comment (the golden bytes in
 * test/unit/fixtures/iproute2-requests.ts were captured from those commands), minus what a test
 * varies itself (lifetimes, an SPI in a template): spread the shape and override.
 */
import { makePolicy, makeSelector, makeTemplate } from '../../src/xfrm/defaults.js';
import type { SecurityPolicy } from '../../src/xfrm/types.js';

/** `src 10.0.0.0/24 dst 10.0.1.0/24 proto tcp sport 80 dport 443 dir out ptype sub mark 5 mask 0xff
 * priority 100 tmpl src 1.1.1.1 dst 2.2.2.2 proto esp reqid 7 mode tunnel` */
export const SUB_MARK_TUNNEL: SecurityPolicy = makePolicy({
  direction: 'out',
  type: 'sub',
  selector: makeSelector({ source: '10.0.0.0/24', destination: '10.0.1.0/24', protocol: 6, sourcePort: 80, destinationPort: 443 }),
  mark: { value: 5, mask: 0xff },
  priority: 100,
  templates: [makeTemplate({ source: '1.1.1.1', destination: '2.2.2.2', protocol: 'esp', reqid: 7, mode: 'tunnel' })],
});

/** `src fd00::/64 dst fd00:1::1/128 proto ipv6-icmp type 128 code 0 dev lo dir in action block
 * if_id 9 flag localok icmp tmpl src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x100 mode tunnel reqid 3
 * level use tmpl proto comp mode transport` */
export const V6_ICMP_TWO_TEMPLATES: SecurityPolicy = makePolicy({
  direction: 'in',
  selector: makeSelector({ source: 'fd00::/64', destination: 'fd00:1::1/128', protocol: 58, icmpType: 128, icmpCode: 0, ifindex: 1 }),
  action: 'block',
  ifId: 9,
  flags: ['localok', 'icmp'],
  templates: [
    makeTemplate({ source: '10.0.0.1', destination: '10.0.0.2', protocol: 'esp', spi: 0x100, mode: 'tunnel', reqid: 3, level: 'use' }),
    makeTemplate({ family: 'inet', protocol: 'ipcomp', mode: 'transport' }),
  ],
});

/** `src 172.16.0.0/12 dst 0.0.0.0/0 dir fwd index 10 priority 4294967295 tmpl src 203.0.113.1
 * dst 203.0.113.2 proto ah mode transport reqid 11` (no lifetimes: each test sets its own) */
export const FWD_INDEX_AH: SecurityPolicy = makePolicy({
  direction: 'fwd',
  selector: makeSelector({ source: '172.16.0.0/12', destination: '0.0.0.0/0' }),
  index: 10,
  priority: 0xffff_ffff,
  templates: [makeTemplate({ source: '203.0.113.1', destination: '203.0.113.2', protocol: 'ah', mode: 'transport', reqid: 11 })],
});

/** `src 10.1.1.1/32 dst 10.2.2.2/32 proto icmp type 8 code 0 dir out` with six templates: IPComp,
 * AH, then four ESP tunnels (the most templates of any shape). */
export const V4_ICMP_SIX_TEMPLATES: SecurityPolicy = makePolicy({
  direction: 'out',
  selector: makeSelector({ source: '10.1.1.1/32', destination: '10.2.2.2/32', protocol: 1, icmpType: 8, icmpCode: 0 }),
  templates: [
    makeTemplate({ family: 'inet', protocol: 'ipcomp', mode: 'transport' }),
    makeTemplate({ family: 'inet', protocol: 'ah', mode: 'transport' }),
    makeTemplate({ source: '10.0.0.1', destination: '10.0.0.2', protocol: 'esp', mode: 'tunnel', reqid: 1 }),
    makeTemplate({ source: '10.0.0.3', destination: '10.0.0.4', protocol: 'esp', mode: 'tunnel', reqid: 2 }),
    makeTemplate({ source: '10.0.0.5', destination: '10.0.0.6', protocol: 'esp', mode: 'tunnel', reqid: 3 }),
    makeTemplate({ source: '10.0.0.7', destination: '10.0.0.8', protocol: 'esp', mode: 'tunnel', reqid: 4 }),
  ],
});

/** The same policy with the first template's SPI set. */
export function withFirstTemplateSpi(policy: SecurityPolicy, spi: number): SecurityPolicy {
  const [first, ...rest] = policy.templates;
  if (first === undefined) throw new Error('withFirstTemplateSpi: the policy has no template');
  return { ...policy, templates: [{ ...first, spi }, ...rest] };
}
