import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { renderCrds } from '../../src/crd/schema.js';
import { validateSpec } from '../../src/crd/validate.js';
import { saSpec, policySpec } from '../support/entries.js';

describe('CustomResourceDefinitions', () => {
  it.each(renderCrds().map((crd) => [(crd['metadata'] as { name: string }).name, crd] as const))(
    'deploy/crds/%s.yaml is current (regenerate with `npm run crds`)',
    (name, crd) => {
      const onDisk: unknown = parse(readFileSync(new URL(`../../deploy/crds/${name}.yaml`, import.meta.url), 'utf8'));
      expect(onDisk).toEqual(crd);
    },
  );

  it('accepts the specs the test builders use', () => {
    expect(validateSpec('SecurityAssociation', saSpec())).toEqual([]);
    expect(validateSpec('IpsecPolicy', policySpec())).toEqual([]);
  });

  it.each([
    ['esp with both aead and encryption', 'SecurityAssociation', saSpec({ encryption: { algorithm: 'cbc(aes)', keyRef: { name: 'k', key: 'k' } } }), 'spec', 'esp needs exactly one of aead or encryption'],
    ['ipcomp CPI too large', 'SecurityAssociation', saSpec({ protocol: 'ipcomp', aead: undefined, compression: { algorithm: 'deflate' }, spi: 0x10000 }), 'spec', 'an ipcomp CPI must be below 0x10000'],
    ['ah with encryption', 'SecurityAssociation', saSpec({ protocol: 'ah' }), 'spec', 'aead is only for esp'],
    ['esn without window', 'SecurityAssociation', saSpec({ esn: true }), 'spec', 'esn needs a replayWindow above 0'],
    ['spi zero', 'SecurityAssociation', saSpec({ spi: 0 }), 'spec.spi', 'must be >= 1'],
    ['unknown field', 'SecurityAssociation', { ...saSpec(), key: 'abc' }, 'spec', 'unknown field "key"'],
    ['replay window too big', 'SecurityAssociation', saSpec({ replayWindow: 5000 }), 'spec.replayWindow', 'must be <= 4096'],
    ['tunnel template without addresses', 'IpsecPolicy', policySpec({ templates: [{ protocol: 'esp', mode: 'tunnel' }] }), 'spec.templates[0]', 'a tunnel template needs source and destination'],
    ['seven templates', 'IpsecPolicy', policySpec({ templates: Array.from({ length: 7 }, () => ({ protocol: 'esp' as const })) }), 'spec.templates', 'must NOT have more than 6 items'],
    ['ports without protocol', 'IpsecPolicy', policySpec({ selector: { source: '10.0.0.0/8', destination: '10.0.0.0/8', destinationPort: 80 } }), 'spec.selector', 'ports need a protocol with ports (tcp, udp, sctp, udplite, dccp)'],
    ['icmp type with tcp', 'IpsecPolicy', policySpec({ selector: { source: '10.0.0.0/8', destination: '10.0.0.0/8', protocol: 'tcp', icmpType: 8 } }), 'spec.selector', 'icmpType and icmpCode need protocol icmp or ipv6-icmp'],
    ['block with templates', 'IpsecPolicy', policySpec({ action: 'block' }), 'spec', 'a block policy takes no templates'],
    ['bad direction', 'IpsecPolicy', policySpec({ direction: 'sideways' as 'in' }), 'spec.direction', 'must be one of "in", "out", "fwd"'],
  ] as const)('rejects %s', (_name, kind, spec, path, message) => {
    expect(validateSpec(kind, spec)).toContainEqual({ path, message });
  });
});
