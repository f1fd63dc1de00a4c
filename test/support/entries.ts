/**
 * Builders of desired entries for tests: from resource specs through the real model, so that
 * tests exercise the same defaults the CLI and agent use. Keys come from an in-memory Secret.
 */
import { buildSecurityAssociation, buildSecurityPolicy, type BuildContext } from '../../src/model/build.js';
import type { IpsecPolicySpec, SecurityAssociationSpec } from '../../src/crd/types.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';

export const TEST_KEYS: Record<string, Buffer> = {
  gcm128: Buffer.alloc(20, 0x11),
  gcm128b: Buffer.alloc(20, 0x22),
  aes128: Buffer.alloc(16, 0x33),
  sha256: Buffer.alloc(32, 0x44),
};

export const testContext: BuildContext = {
  keys: {
    lookup(name, key) {
      if (name !== 'keys') return 'missing-secret';
      return TEST_KEYS[key] ?? 'missing-key';
    },
  },
  resolveDevice: (name) => (name === 'lo' ? 1 : undefined),
};

export function saSpec(overrides: Partial<SecurityAssociationSpec> = {}): SecurityAssociationSpec {
  return {
    source: '10.0.0.1',
    destination: '10.0.0.2',
    protocol: 'esp',
    spi: 0x100,
    reqid: 1,
    aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128' } },
    ...overrides,
  };
}

export function policySpec(overrides: Partial<IpsecPolicySpec> = {}): IpsecPolicySpec {
  return {
    selector: { source: '10.0.0.1/32', destination: '10.0.0.2/32' },
    direction: 'out',
    templates: [{ protocol: 'esp', reqid: 1 }],
    ...overrides,
  };
}

export function sa(overrides: Partial<SecurityAssociationSpec> = {}): SecurityAssociation {
  const result = buildSecurityAssociation(saSpec(overrides), testContext);
  if (!result.ok) throw new Error(`test SA invalid: ${JSON.stringify(result.errors)}`);
  return result.value;
}

export function policy(overrides: Partial<IpsecPolicySpec> = {}): SecurityPolicy {
  const result = buildSecurityPolicy(policySpec(overrides), testContext);
  if (!result.ok) throw new Error(`test policy invalid: ${JSON.stringify(result.errors)}`);
  return result.value;
}
