import { describe, expect, it } from 'vitest';
import { desiredPolicyKey, desiredStateKey, policyKey, stateKey } from '../../src/plan/identity.js';
import type { PolicyId, StateId } from '../../src/xfrm/types.js';

// Identity keys are written into every ownership ledger: their text must not change, however
// they are built (a ledger written by an older version must still name the same entries).
describe('identity keys', () => {
  const policyId: PolicyId = {
    direction: 'out',
    type: 'main',
    selector: {
      family: 'inet',
      source: { address: '10.0.0.1', prefixLength: 32 },
      destination: { address: '192.0.2.0', prefixLength: 24 },
      protocol: 6,
      sourcePort: 0,
      sourcePortMask: 0,
      destinationPort: 443,
      destinationPortMask: 0xffff,
      ifindex: 0,
      user: 0,
    },
    mark: { value: 0x10, mask: 0xff },
    ifId: 7,
  };
  const stateId: StateId = { family: 'inet6', destination: '2001:db8::1', spi: 0x1000, protocol: 'esp', mark: undefined };

  it('keep the text ledgers hold', () => {
    expect(policyKey(policyId)).toBe('policy out main inet 10.0.0.1/32 192.0.2.0/24 6 0/0 443/ffff 0 0 mark 10/ff if_id 7');
    expect(policyKey({ ...policyId, selector: { ...policyId.selector, family: undefined }, mark: undefined, ifId: undefined })).toBe(
      'policy out main unspec 10.0.0.1/32 192.0.2.0/24 6 0/0 443/ffff 0 0 mark - if_id 0',
    );
    expect(stateKey(stateId)).toBe('sa inet6 2001:db8::1 esp 1000 mark -');
    expect(stateKey({ ...stateId, mark: { value: 1, mask: 0xffffffff } })).toBe('sa inet6 2001:db8::1 esp 1000 mark 1/ffffffff');
  });

  it('are the same when remembered for desired identities, on every call', () => {
    expect(desiredPolicyKey(policyId)).toBe(policyKey(policyId));
    expect(desiredPolicyKey(policyId)).toBe(policyKey(policyId));
    expect(desiredStateKey(stateId)).toBe(stateKey(stateId));
    expect(desiredStateKey(stateId)).toBe(stateKey(stateId));
  });
});
