/**
 * The shape-aware canonical writers (src/ownership/canonical.ts) must write exactly the bytes
 * the generic canonical JSON wrote for the same view of an entry: ledgers on disk hold SA
 * incarnations hashed the old way, and an SA that stopped matching its record would turn
 * foreign. The reference here is this file's own sorted-key JSON over the views as
 * fingerprint.ts built them before (it shares no code with the writers), plus fingerprints
 * recorded from that implementation.
 */
import { describe, expect, it } from 'vitest';
import { writePolicyIntent, writeStableState } from '../../src/ownership/canonical.js';
import { intentFingerprint, incarnationOf, stableStateFingerprint } from '../../src/ownership/fingerprint.js';
import { KeyMaterial } from '../../src/xfrm/key-material.js';
import { decodePolicy, encodePolicy } from '../../src/xfrm/policy-codec.js';
import { decodeState, encodeState } from '../../src/xfrm/state-codec.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';
import { policy, sa } from '../support/entries.js';

function referenceJson(value: unknown): string {
  if (value instanceof KeyMaterial) return `"${value.reveal().toString('hex')}"`;
  if (typeof value === 'bigint') return `"${value}"`;
  if (Array.isArray(value)) return `[${value.map(referenceJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const names = Object.keys(value).filter((name) => (value as Record<string, unknown>)[name] !== undefined);
    names.sort();
    return `{${names.map((name) => `${JSON.stringify(name)}:${referenceJson((value as Record<string, unknown>)[name])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The views fingerprint.ts hashed before the writers existed. */
const oldStableView = (s: SecurityAssociation) => ({
  id: { ...s.id, mark: s.id.mark ?? null },
  source: s.source,
  mode: s.mode,
  reqid: s.reqid,
  selector: s.selector,
  algorithms: s.algorithms,
  replay: { window: s.replay.window, useEsnAttribute: s.replay.useEsnAttribute },
  flags: [...s.flags].sort(),
  extraFlags: [...s.extraFlags].sort(),
  tfcPad: s.tfcPad ?? 0,
  encapsulationType: s.encapsulation?.type ?? null,
});
const oldPolicyView = (p: SecurityPolicy) => ({
  id: { ...p.id, mark: p.id.mark ?? null, ifId: p.id.ifId ?? 0 },
  action: p.action,
  priority: p.priority,
  flags: [...p.flags].sort(),
  lifetime: p.lifetime,
  templates: p.templates,
});

const STATES: Record<string, SecurityAssociation> = {
  aead: sa(),
  'marked tunnel in UDP': sa({ mark: { value: 5, mask: 0xff }, mode: 'tunnel', encapsulation: { type: 'espinudp', sourcePort: 4500, destinationPort: 4500 } } as never),
  'cipher + auth, flags, tfc, esn': sa({
    aead: undefined,
    encryption: { algorithm: 'cbc(aes)', keyRef: { name: 'keys', key: 'aes128' } },
    authentication: { algorithm: 'hmac(sha256)', truncationLength: 128, keyRef: { name: 'keys', key: 'sha256' } },
    flags: ['wildrecv', 'noecn'],
    extraFlags: ['oseq-may-wrap', 'dont-encap-dscp'],
    mode: 'tunnel',
    tfcPad: 32,
    esn: true,
    replayWindow: 128,
    selector: { source: '10.1.0.0/16', destination: '10.2.0.0/24', protocol: 'tcp', destinationPort: 443 },
  } as never),
  'compression, v6': sa({ aead: undefined, compression: { algorithm: 'deflate' }, protocol: 'ipcomp', source: 'fd00::1', destination: 'fd00::2', spi: 0x1234 } as never),
};

const POLICIES: Record<string, SecurityPolicy> = {
  out: policy(),
  'in, marked, priority': policy({ mark: { value: 1, mask: 0xffffffff }, priority: 7, direction: 'in' } as never),
  'fwd, flags, if_id, lifetime, two templates': policy({
    direction: 'fwd',
    flags: ['icmp', 'localok'],
    interfaceId: 9,
    lifetime: { hard: { addExpiresSeconds: 3600, packets: 1000 } },
    selector: { source: 'fd00::/64', destination: 'fd01::1', protocol: 'udp', sourcePort: 53 },
    templates: [
      { protocol: 'esp', reqid: 3, mode: 'tunnel', source: 'fd00::1', destination: 'fd01::1', level: 'use' },
      { protocol: 'ah', spi: 0x99, share: 'unique' },
    ],
  } as never),
};

describe('canonical writers', () => {
  for (const [name, entry] of Object.entries(STATES)) {
    it(`write an SA's stable part as the generic form did: ${name}`, () => {
      expect(writeStableState(entry)).toBe(referenceJson(oldStableView(entry)));
      // As a dump gives it back (decoded objects, counters and all).
      const dumped = decodeState(encodeState(entry));
      expect(writeStableState(dumped)).toBe(referenceJson(oldStableView(dumped)));
      expect(writeStableState(dumped)).toBe(writeStableState(entry));
    });
  }
  for (const [name, entry] of Object.entries(POLICIES)) {
    it(`write a policy intent as the generic form did: ${name}`, () => {
      expect(writePolicyIntent(entry)).toBe(referenceJson(oldPolicyView(entry)));
      const dumped = decodePolicy(encodePolicy(entry));
      expect(writePolicyIntent(dumped)).toBe(referenceJson(oldPolicyView(dumped)));
    });
  }

  it('keep the fingerprints recorded by the generic implementation', () => {
    const salt = '00112233445566778899aabbccddeeff';
    expect(stableStateFingerprint(salt, STATES.aead!)).toBe('24ff8dde7d5ffa58698f10432c5630d2272672688ca529deeb01277b99a1c9c4');
    expect(intentFingerprint(salt, STATES['marked tunnel in UDP']!)).toBe('51482921fa3d0dd0cd555870c77c72a8483f451db5cab4dd16d910fcc4b9d2b6');
    expect(intentFingerprint(salt, POLICIES.out!)).toBe('401fe4f21f6d3017d1b1b3c3474d0d33eab40365a6e1191aa6deab6dd4e5a846');
    expect(intentFingerprint(salt, POLICIES['in, marked, priority']!)).toBe('752568fc5789a74fea185df9ee7dd77b26edef8e0dd777c4e531e9de28e84a3f');
  });

  it('tell entries apart by every field they describe, and by salt', () => {
    const salt = '00112233445566778899aabbccddeeff';
    const base = intentFingerprint(salt, POLICIES.out!);
    expect(intentFingerprint(salt, { ...POLICIES.out!, priority: POLICIES.out!.priority + 1 })).not.toBe(base);
    expect(intentFingerprint('ffeeddccbbaa99887766554433221100', POLICIES.out!)).not.toBe(base);
    const other = sa({ aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128b' } } } as never);
    expect(stableStateFingerprint(salt, other)).not.toBe(stableStateFingerprint(salt, STATES.aead!));
    // What UPDSA may change is not part of an SA's incarnation.
    const dumped = decodeState(encodeState(STATES.aead!));
    expect(incarnationOf(salt, { ...dumped, outputMark: { value: 1, mask: 1 } })).toEqual(incarnationOf(salt, dumped));
  });

  it('never write key bytes in the clear outside the hash input', () => {
    // The canonical text holds the key (it is hashed with the salt, never stored); the
    // fingerprint does not.
    const fingerprint = stableStateFingerprint('00112233445566778899aabbccddeeff', STATES.aead!);
    expect(fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(fingerprint).not.toContain('1111111111');
  });
});
