// The IpsecMesh durations as the schema admits them (a subset of Go's time.ParseDuration).
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/crd/mesh-object.js';
import { IPSEC_KINDS, ipsecObjectPath } from '../../src/kube/client.js';

describe('parseDuration', () => {
  it.each([
    ['24h', 86_400_000],
    ['90m', 5_400_000],
    ['1h30m', 5_400_000],
    ['30s', 30_000],
    ['500ms', 500],
    ['1.5h', 5_400_000],
    ['1m30s250ms', 90_250],
  ])('reads %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '1d', '10', 'h', '-1h', '1h ', '1.h'])('refuses %j', (text) => expect(() => parseDuration(text)).toThrow(RangeError));
});

describe('the IpsecMesh plural', () => {
  it('is one of the operator resources', () => {
    expect(IPSEC_KINDS.ipsecmeshes).toBe('IpsecMesh');
    expect(ipsecObjectPath('ipsecmeshes', 'm')).toBe('/apis/ipsec.xfrm.io/v1alpha1/ipsecmeshes/m');
  });
});
