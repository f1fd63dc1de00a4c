import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildSecurityAssociation, buildSecurityPolicy } from '../../src/model/build.js';
import { parseManifests, formatManifestError } from '../../src/model/manifests.js';
import { desiredTables } from '../../src/model/desired.js';
import { exportEntries } from '../../src/model/export.js';
import { compareStates, comparePolicies } from '../../src/plan/compare.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import { XFRM_INFINITY } from '../../src/xfrm/types.js';
import { policySpec, saSpec, testContext, policy, sa, TEST_KEYS } from '../support/entries.js';

describe('building kernel entries from specs', () => {
  it('fills in what the kernel reports for defaults', () => {
    const entry = sa();
    expect(entry.mode).toBe('transport');
    expect(entry.selector).toMatchObject({ family: 'inet', source: { address: '0.0.0.0', prefixLength: 0 }, protocol: 0 });
    expect(entry.lifetime.hardByteLimit).toBe(XFRM_INFINITY);
    expect(entry.lifetime.hardAddExpiresSeconds).toBe(0n);
    expect(entry.replay).toEqual({ window: 0, useEsnAttribute: false });
    const withPolicy = policy();
    expect(withPolicy.templates[0]).toMatchObject({ family: 'inet', source: '0.0.0.0', destination: '0.0.0.0', mode: 'transport', level: 'required', authAlgorithmMask: 0xffffffff });
  });

  it('canonicalises algorithm aliases and addresses', () => {
    const entry = sa({
      source: 'FD00:0:0::1',
      destination: 'fd00::2',
      aead: undefined,
      encryption: { algorithm: 'aes', keyRef: { name: 'keys', key: 'aes128' } },
      authentication: { algorithm: 'sha256', keyRef: { name: 'keys', key: 'sha256' } },
    });
    expect(entry.source).toBe('fd00::1');
    expect(entry.id.family).toBe('inet6');
    expect(entry.algorithms).toMatchObject({ kind: 'cipher', cipher: { name: 'cbc(aes)' }, auth: { name: 'hmac(sha256)', truncationBits: 96 } });
  });

  it('uses the ESN replay attribute for ESN and for windows above 32', () => {
    expect(sa({ replayWindow: 32 }).replay).toEqual({ window: 32, useEsnAttribute: false });
    expect(sa({ replayWindow: 64 }).replay).toEqual({ window: 64, useEsnAttribute: true });
    const esn = sa({ replayWindow: 128, esn: true });
    expect(esn.flags).toContain('esn');
    expect(esn.replay.useEsnAttribute).toBe(true);
  });

  it.each([
    ['wrong key length', { aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'aes128' } } }, 'spec.aead.keyRef.key', /needs a key of 160, 224 or 288 bits; Secret "keys" key "aes128" holds 128 bits/, 'InvalidKey'],
    ['missing Secret', { aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'nope', key: 'x' } } }, 'spec.aead.keyRef.name', /Secret "nope" not found/, 'MissingSecret'],
    ['missing key', { aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'x' } } }, 'spec.aead.keyRef.key', /has no key "x"/, 'MissingSecret'],
    ['unknown algorithm', { aead: { algorithm: 'rot13', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128' } } }, 'spec.aead.algorithm', /unknown AEAD algorithm "rot13"/, 'InvalidSpec'],
    ['bad ICV', { aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 100, keyRef: { name: 'keys', key: 'gcm128' } } }, 'spec.aead.icvLength', /ICV of 64, 96 or 128 bits, not 100/, 'InvalidSpec'],
    ['mixed families', { destination: 'fd00::2' }, 'spec.destination', /source is IPv4 but destination is IPv6/, 'InvalidSpec'],
    ['bad address', { source: '10.0.0.300' }, 'spec.source', /not an IPv4 or IPv6 address/, 'InvalidSpec'],
    ['host bits in selector', { selector: { source: '10.0.0.1/24', destination: '10.0.1.0/24' } }, 'spec.selector.source', /bits set beyond \/24/, 'InvalidSpec'],
    ['unknown device', { selector: { source: '10.0.0.0/24', destination: '10.0.1.0/24', device: 'eth9' } }, 'spec.selector.device', /no interface "eth9"/, 'InvalidSpec'],
  ] as const)('refuses %s with the field path, a reason and no key bytes', (_name, overrides, path, message, reason) => {
    const result = buildSecurityAssociation(saSpec(overrides), testContext);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toContainEqual({ path, message: expect.stringMatching(message), reason });
    const text = JSON.stringify(result.errors);
    for (const key of Object.values(TEST_KEYS)) expect(text).not.toContain(key.toString('hex').slice(0, 8));
  });

  it('refuses a tunnel template without addresses and a block policy with templates', () => {
    const result = buildSecurityPolicy(policySpec({ action: 'block', templates: [{ protocol: 'esp', mode: 'tunnel' }] }), testContext);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map((error) => error.path)).toEqual(['spec.templates[0]', 'spec.templates']);
  });

  it('puts ICMP type and code into the port fields, as the kernel does', () => {
    const entry = policy({ selector: { source: '10.0.0.0/24', destination: '10.0.1.0/24', protocol: 'icmp', icmpType: 8, icmpCode: 0 } });
    expect(entry.id.selector).toMatchObject({ protocol: 1, sourcePort: 8, sourcePortMask: 0xffff, destinationPort: 0, destinationPortMask: 0xffff });
  });
});

describe('manifests', () => {
  const secret = `apiVersion: v1
kind: Secret
metadata: {name: keys}
data:
  gcm128: ${TEST_KEYS.gcm128!.toString('base64')}
`;
  const good = `apiVersion: ipsec.xfrm.io/v1alpha1
kind: SecurityAssociation
metadata: {name: out-sa}
spec:
  source: 10.0.0.1
  destination: 10.0.0.2
  protocol: esp
  spi: 0x100
  aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: keys, key: gcm128}}
`;

  it('reads SAs, policies and Secrets from a multi-document stream', () => {
    const set = parseManifests([{ file: 'a.yaml', text: `${secret}---\n${good}` }]);
    expect(set.errors).toEqual([]);
    expect(set.securityAssociations).toHaveLength(1);
    expect(set.securityAssociations[0]!.resource.spec.spi).toBe(0x100);
    const desired = desiredTables(set, { labels: undefined, resolveDevice: () => undefined });
    expect(desired.errors).toEqual([]);
    expect(desired.tables.states[0]!.resource).toBe('SecurityAssociation/out-sa');
  });

  it('names file, document, object and field in every error', () => {
    const bad = good.replace('protocol: esp', 'protocol: esp\n  mode: sideways').replace('name: out-sa', 'name: bad-sa');
    const set = parseManifests([{ file: 'b.yaml', text: `${good}---\n${bad}---\nkind: Deployment\n` }]);
    expect(set.errors.map(formatManifestError)).toEqual([
      'b.yaml: document 2 (SecurityAssociation/bad-sa): spec.mode: must be one of "transport", "tunnel", "beet"',
      'b.yaml: document 3: kind: unsupported kind "Deployment": expected SecurityAssociation, IpsecPolicy or Secret',
    ]);
  });

  it('reports YAML syntax errors, duplicate names and invalid base64 without echoing secrets', () => {
    const set = parseManifests([
      { file: 'c.yaml', text: `${good}---\n${good}` },
      { file: 'd.yaml', text: 'kind: [unclosed\n' },
      { file: 'e.yaml', text: 'apiVersion: v1\nkind: Secret\nmetadata: {name: k}\ndata: {a: "not base64!!"}\n' },
    ]);
    const lines = set.errors.map(formatManifestError);
    expect(lines[0]).toMatch(/^c\.yaml: document 2 \(SecurityAssociation\/out-sa\): metadata\.name: SecurityAssociation\/out-sa is also defined in c\.yaml: document 1$/);
    expect(lines[1]).toMatch(/^d\.yaml: document 1: \(yaml\): /);
    expect(lines[2]).toBe('e.yaml: document 1 (Secret/k): data["a"]: is not valid base64 (standard alphabet, with = padding; only line breaks may separate it)');
  });

  it('selects resources by nodeSelector when node labels are given', () => {
    const selected = good.replace('spec:\n', 'spec:\n  nodeSelector: {matchLabels: {role: gw}}\n');
    const set = parseManifests([{ file: 'a.yaml', text: `${secret}---\n${selected}` }]);
    const on = desiredTables(set, { labels: { role: 'gw' }, resolveDevice: () => undefined });
    const off = desiredTables(set, { labels: { role: 'worker' }, resolveDevice: () => undefined });
    expect(on.tables.states).toHaveLength(1);
    expect(off.tables.states).toHaveLength(0);
  });
});

describe('export (import command) round trip', () => {
  const states = [
    sa(),
    sa({ spi: 0x101, mode: 'tunnel', reqid: 5, replayWindow: 128, esn: true, flags: ['noecn', 'af-unspec'], mark: { value: 5, mask: 0xff } }),
    sa({
      spi: 0x102,
      aead: undefined,
      encryption: { algorithm: 'cbc(aes)', keyRef: { name: 'keys', key: 'aes128' } },
      authentication: { algorithm: 'hmac(sha256)', truncationLength: 128, keyRef: { name: 'keys', key: 'sha256' } },
      lifetime: { soft: { bytes: 1000, addExpiresSeconds: 30 }, hard: { packets: 99 } },
      encapsulation: { type: 'espinudp', sourcePort: 4500, destinationPort: 4500 },
      selector: { source: '10.1.0.0/16', destination: '10.2.0.0/16', protocol: 'tcp', destinationPort: 443 },
    }),
    sa({ spi: 0x200, protocol: 'ah', aead: undefined, authentication: { algorithm: 'hmac(sha256)', truncationLength: 128, keyRef: { name: 'keys', key: 'sha256' } } }),
    sa({ spi: 0x300, protocol: 'ipcomp', aead: undefined, compression: { algorithm: 'deflate' } }),
    sa({ source: 'fd00::1', destination: 'fd00::2', spi: 0x400, mode: 'tunnel', interfaceId: 7, outputMark: { value: 3 }, tfcPad: 16, extraFlags: ['dont-encap-dscp'] }),
  ];
  const policies = [
    { ...policy(), index: 1 },
    { ...policy({ direction: 'in', priority: 200, type: 'sub', flags: ['localok'], selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32', protocol: 'icmp', icmpType: 8 }, templates: [{ protocol: 'esp', reqid: 2, level: 'use' }] }), index: 8 },
    { ...policy({ direction: 'fwd', selector: { source: '10.1.0.0/16', destination: '10.2.0.0/16', device: 'lo' }, templates: [{ protocol: 'ipcomp', mode: 'tunnel', source: '10.0.0.1', destination: '10.0.0.2' }, { protocol: 'esp', mode: 'tunnel', source: '10.0.0.1', destination: '10.0.0.2', spi: 0x101, share: 'unique', encryptionAlgorithmMask: 0x10 }] }), index: 18 },
    { ...policy({ action: 'block', templates: [], priority: 9999, mark: { value: 1 }, interfaceId: 4 }), index: 25 },
  ];

  it('exports entries to manifests that build back into the same entries', () => {
    const exported = exportEntries(states, policies, (ifindex) => (ifindex === 1 ? 'lo' : undefined));
    const text = [exported.secret, ...exported.resources].map((document) => stringify(document)).join('---\n');
    const set = parseManifests([{ file: 'import.yaml', text }]);
    expect(set.errors).toEqual([]);
    const rebuilt = desiredTables(set, { labels: undefined, resolveDevice: (name) => (name === 'lo' ? 1 : undefined) });
    expect(rebuilt.errors).toEqual([]);
    expect(rebuilt.tables.states.map((entry) => stateKey(entry.entry.id))).toEqual(states.map((entry) => stateKey(entry.id)));
    rebuilt.tables.states.forEach(({ entry }, index) => expect(compareStates(entry, states[index]!)).toEqual({ inPlace: [], replace: [] }));
    expect(rebuilt.tables.policies.map((entry) => policyKey(entry.entry.id))).toEqual(policies.map((entry) => policyKey(entry.id)));
    rebuilt.tables.policies.forEach(({ entry }, index) => {
      expect(comparePolicies(entry, policies[index]!)).toEqual({ inPlace: [], replace: [] });
      expect(entry.index).toBe(policies[index]!.index);
    });
  });

  it('puts keys only into the Secret', () => {
    const exported = exportEntries(states, [], () => undefined);
    const resources = JSON.stringify(exported.resources);
    expect(resources).not.toContain(TEST_KEYS.gcm128!.toString('base64'));
    expect(Object.keys(exported.secret.data)).toContain('sa-esp-100-10.0.0.2.aead');
  });
});
