import { describe, expect, it } from 'vitest';
import { plan, Stage, type DesiredTables, type ObservedTables, type Plan } from '../../src/plan/planner.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import type { OwnershipRecord } from '../../src/ownership/records.js';
import { INTENT_CLOCK_SLACK_SECONDS } from '../../src/ownership/settle.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';
import { policy, sa } from '../support/entries.js';
import { MemoryOwnership, keyOf, observe, presentRecords } from '../support/ownership.js';

const stamp = <T extends SecurityAssociation | SecurityPolicy>(entry: T): T => (entry.observed ? entry : observe(entry));

/** Records that own these entries as the kernel shows them; `creating`: intents to add exactly them. */
function owned(entries: (SecurityAssociation | SecurityPolicy)[], phase: 'present' | 'creating' = 'present'): OwnershipRecord[] {
  const stamped = entries.map(stamp);
  if (phase === 'present') return presentRecords(stamped);
  const view = new MemoryOwnership();
  return stamped.map((entry) => ({ key: keyOf(entry), target: 'templates' in entry ? 'policy' : 'state', resource: 'Test/owned', phase: 'creating', intents: [{ fingerprint: view.intentFingerprint(entry), notBefore: 0 }] }));
}

function run(desired: Partial<DesiredTables>, observed: Partial<ObservedTables> = {}, records: OwnershipRecord[] = []): Plan {
  return plan({
    desired: { states: desired.states ?? [], policies: desired.policies ?? [] },
    observed: { states: (observed.states ?? []).map(stamp), policies: (observed.policies ?? []).map(stamp) },
    ownership: new MemoryOwnership(records),
  });
}

const summary = (result: Plan) => result.steps.map((step) => `${step.op} ${step.target} ${step.resource}`);

describe('planner', () => {
  it('plans nothing when the kernel already holds exactly what is desired', () => {
    const entries = [sa(), policy()];
    const result = run(
      { states: [{ resource: 'SecurityAssociation/a', entry: entries[0] as SecurityAssociation }], policies: [{ resource: 'IpsecPolicy/p', entry: entries[1] as SecurityPolicy }] },
      { states: [entries[0] as SecurityAssociation], policies: [{ ...(entries[1] as SecurityPolicy), index: 1234 }] },
      owned([entries[0]!, { ...(entries[1] as SecurityPolicy), index: 1234 }]),
    );
    expect(result.steps).toEqual([]);
    expect(result.conflicts).toEqual([]);
  });

  it('owns an entry only in the incarnation its record names: a policy re-created by someone else (new index) is foreign', () => {
    const ours = observe(policy(), { index: 1025 });
    const theirs = observe(policy({ templates: [{ protocol: 'esp', reqid: 9 }] }), { index: 2049 });
    const desired = { policies: [{ resource: 'IpsecPolicy/p', entry: policy() }] };
    const result = run(desired, { policies: [theirs] }, owned([ours]));
    expect(result.steps).toEqual([]);
    expect(result.conflicts).toMatchObject([{ resource: 'IpsecPolicy/p', reason: expect.stringMatching(/not created by ipsec-operator/) }]);
    expect(result.ledger.remove).toEqual([keyOf(ours)]);
    // Pruned: the foreign policy is not deleted either.
    expect(run({}, { policies: [theirs] }, owned([ours])).steps).toEqual([]);
  });

  it('owns an SA only with the add time and the unchangeable content its record names', () => {
    const ours = observe(sa(), { addTime: 1_700_000_000 });
    const sameSecond = observe(sa({ aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128b' } } }), { addTime: 1_700_000_000 });
    const later = observe(sa(), { addTime: 1_700_000_005 });
    expect(run({}, { states: [ours] }, owned([ours])).steps.map((step) => step.op)).toEqual(['delete']);
    expect(run({}, { states: [sameSecond] }, owned([ours])).steps).toEqual([]);
    expect(run({}, { states: [later] }, owned([ours])).steps).toEqual([]);
    // A hand UPDSA of what UPDSA may change (lifetime) keeps it ours: drift, repaired in place.
    const updated = { ...ours, lifetime: { ...ours.lifetime, hardAddExpiresSeconds: 60n } };
    expect(run({ states: [{ resource: 'SecurityAssociation/a', entry: sa() }] }, { states: [updated] }, owned([ours])).steps.map((step) => step.op)).toEqual(['update']);
  });

  it("an intent claims only an entry added no earlier than it was written, by the kernel's coarse clock", () => {
    const entry = observe(sa(), { addTime: 1_700_000_000 });
    const view = new MemoryOwnership();
    const intent = (notBefore: number): OwnershipRecord[] => [{ key: keyOf(entry), target: 'state', resource: 'Test/owned', phase: 'creating', intents: [{ fingerprint: view.intentFingerprint(entry), notBefore }] }];
    expect(run({}, { states: [entry] }, intent(1_700_000_000)).ledger.set).toMatchObject([{ phase: 'present', incarnation: { target: 'state', addTime: 1_700_000_000 } }]);
    // The kernel's add_time is its last tick's second: an entry added just after the intent's
    // second turned can carry the second before (or, with late ticks, two before).
    expect(run({}, { states: [entry] }, intent(1_700_000_000 + INTENT_CLOCK_SLACK_SECONDS)).ledger.set).toMatchObject([{ phase: 'present' }]);
    expect(run({}, { states: [entry] }, intent(1_700_000_001 + INTENT_CLOCK_SLACK_SECONDS)).ledger.remove).toEqual([keyOf(entry)]);
  });

  it("refuses to delete or update an SA of ours when the kernel's masked-mark lookup could hit a foreign SA", () => {
    const ours = observe(sa({ mark: { value: 1, mask: 0xff } }));
    // Mark 0/0 answers every lookup; 1/0x1 answers a request for 1/0xff.
    for (const mark of [undefined, { value: 0, mask: 0 }, { value: 1, mask: 0x1 }]) {
      const foreign = observe(sa({ ...(mark ? { mark } : {}), reqid: 7 }));
      const pruned = run({}, { states: [ours, foreign] }, owned([ours]));
      expect(pruned.steps).toEqual([]);
      expect(pruned.conflicts).toMatchObject([{ reason: expect.stringMatching(/could remove a foreign SA/) }]);
      const updated = run({ states: [{ resource: 'SecurityAssociation/a', entry: sa({ mark: { value: 1, mask: 0xff }, lifetime: { hard: { addExpiresSeconds: 60 } } }) }] }, { states: [ours, foreign] }, owned([ours]));
      expect(updated.steps).toEqual([]);
      expect(updated.conflicts).toHaveLength(1);
    }
    // A foreign SA whose mark the request cannot match (2/0xff) is no obstacle.
    const apart = observe(sa({ mark: { value: 2, mask: 0xff }, reqid: 7 }));
    expect(run({}, { states: [ours, apart] }, owned([ours])).steps.map((step) => step.op)).toEqual(['delete']);
  });

  it('does not plan an SA whose add the kernel would refuse because a foreign SA answers its lookup', () => {
    const foreign = observe(sa({ mark: { value: 0, mask: 0 }, reqid: 7 }));
    const result = run({ states: [{ resource: 'SecurityAssociation/a', entry: sa({ mark: { value: 1, mask: 0xff } }) }] }, { states: [foreign] });
    expect(result.steps).toEqual([]);
    expect(result.conflicts).toMatchObject([{ resource: 'SecurityAssociation/a', reason: expect.stringMatching(/mark under mask/) }]);
  });

  it('names both resources when two of the input ask for one identity', () => {
    const result = run({ policies: [{ resource: 'IpsecPolicy/first', entry: policy() }, { resource: 'IpsecPolicy/second', entry: policy({ priority: 5 }) }] });
    expect(result.conflicts).toMatchObject([{ resource: 'IpsecPolicy/second', otherResource: 'IpsecPolicy/first' }]);
  });

  it('creates make-before-break: inbound SAs, in/fwd policies, outbound SAs, outbound policies', () => {
    const inboundSa = sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x200, reqid: 2 });
    const outboundSa = sa({ spi: 0x100, reqid: 1 });
    const result = run({
      states: [
        { resource: 'SecurityAssociation/out', entry: outboundSa },
        { resource: 'SecurityAssociation/in', entry: inboundSa },
      ],
      policies: [
        { resource: 'IpsecPolicy/out', entry: policy({ direction: 'out', templates: [{ protocol: 'esp', reqid: 1 }] }) },
        {
          resource: 'IpsecPolicy/in',
          entry: policy({ direction: 'in', selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] }),
        },
        {
          resource: 'IpsecPolicy/fwd',
          entry: policy({ direction: 'fwd', selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] }),
        },
      ],
    });
    expect(summary(result)).toEqual([
      'create state SecurityAssociation/in',
      'create policy IpsecPolicy/in',
      'create policy IpsecPolicy/fwd',
      'create state SecurityAssociation/out',
      'create policy IpsecPolicy/out',
    ]);
    expect(result.steps.map((step) => step.stage)).toEqual([
      Stage.InboundStates,
      Stage.InboundPolicies,
      Stage.InboundPolicies,
      Stage.OutboundStates,
      Stage.OutboundPolicies,
    ]);
  });

  it('deletes owned entries no longer desired in the reverse order, after creations', () => {
    const oldIn = sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x201, reqid: 2, direction: 'in' });
    const oldOut = sa({ spi: 0x101 });
    const oldOutPolicy = policy({ priority: 5 });
    const oldInPolicy = policy({ direction: 'in', selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32' } });
    const replacement = sa({ spi: 0x102 });
    const result = run(
      { states: [{ resource: 'SecurityAssociation/new', entry: replacement }] },
      { states: [oldIn, oldOut], policies: [oldOutPolicy, oldInPolicy] },
      owned([oldIn, oldOut, oldOutPolicy, oldInPolicy]),
    );
    expect(result.steps.map((step) => `${step.op} ${step.target} ${step.stage}`)).toEqual([
      `create state ${Stage.OutboundStates}`,
      `delete policy ${Stage.DeleteOutboundPolicies}`,
      `delete state ${Stage.DeleteOutboundStates}`,
      `delete policy ${Stage.DeleteInboundPolicies}`,
      `delete state ${Stage.DeleteInboundStates}`,
    ]);
    expect(result.steps.filter((step) => step.op === 'delete').every((step) => step.resource === 'Test/owned')).toBe(true);
  });

  it('never touches foreign entries: not deleted, and a desired entry with their identity is a conflict', () => {
    const foreign = sa({ spi: 0x999 });
    const foreignPolicy = policy({ selector: { source: '192.168.0.0/24', destination: '192.168.1.0/24' } });
    const clash = sa({ spi: 0x999, reqid: 7 });
    const result = run({ states: [{ resource: 'SecurityAssociation/clash', entry: clash }] }, { states: [foreign], policies: [foreignPolicy] });
    expect(result.steps).toEqual([]);
    expect(result.conflicts).toHaveLength(1);
    expect(result.conflicts[0]).toMatchObject({ resource: 'SecurityAssociation/clash', target: 'state' });
    expect(result.conflicts[0]!.reason).toMatch(/not created by ipsec-operator/);
  });

  it('updates lifetimes in place but replaces an SA whose key changed, naming the change without the key', () => {
    const observed = sa();
    const longer = sa({ lifetime: { hard: { addExpiresSeconds: 3600 } } });
    const rekeyed = sa({ aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128b' } } });
    const update = run({ states: [{ resource: 'SecurityAssociation/a', entry: longer }] }, { states: [observed] }, owned([observed]));
    expect(update.steps).toHaveLength(1);
    expect(update.steps[0]).toMatchObject({ op: 'update', changes: ['lifetime'] });
    const replace = run({ states: [{ resource: 'SecurityAssociation/a', entry: rekeyed }] }, { states: [observed] }, owned([observed]));
    expect(replace.steps).toHaveLength(1);
    expect(replace.steps[0]).toMatchObject({ op: 'replace', changes: ['aead key'] });
    expect(JSON.stringify(replace, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value))).not.toMatch(/2222|IiIi/);
  });

  it.each([
    ['mode', { mode: 'tunnel' as const }, 'mode'],
    ['reqid', { reqid: 9 }, 'reqid'],
    ['replay window', { replayWindow: 64 }, 'replay window'],
    ['flags', { flags: ['noecn' as const] }, 'flags'],
    ['algorithm', { aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 96, keyRef: { name: 'keys', key: 'gcm128' } } }, 'aead algorithm'],
    ['encapsulation type', { encapsulation: { type: 'espinudp' as const, sourcePort: 4500, destinationPort: 4500 } }, 'encapsulation type'],
  ])('replaces an SA whose %s changed (UPDSA would silently ignore it)', (_name, overrides, change) => {
    const observed = sa();
    const result = run({ states: [{ resource: 'SecurityAssociation/a', entry: sa(overrides) }] }, { states: [observed] }, owned([observed]));
    expect(result.steps[0]).toMatchObject({ op: 'replace' });
    expect(result.steps[0]).toHaveProperty("changes", expect.arrayContaining([change]));
  });

  it('updates policies in place (priority, action, templates) and replaces only for an explicit new index', () => {
    const observed = { ...policy(), index: 1025 };
    const changed = policy({ priority: 100, templates: [{ protocol: 'esp', reqid: 2 }] });
    const result = run({ policies: [{ resource: 'IpsecPolicy/p', entry: changed }] }, { policies: [observed] }, owned([observed]));
    expect(result.steps).toHaveLength(1);
    expect(result.steps[0]).toMatchObject({ op: 'update', changes: ['priority', 'templates'] });
    const reindexed = run({ policies: [{ resource: 'IpsecPolicy/p', entry: policy({ index: 2049 }) }] }, { policies: [observed] }, owned([observed]));
    expect(reindexed.steps[0]).toMatchObject({ op: 'replace', changes: ['index'] });
  });

  it('repairs an owned entry deleted by someone else, and forgets records of entries nobody wants', () => {
    const gone = sa();
    const unwanted = sa({ spi: 0x555 });
    const result = run({ states: [{ resource: 'SecurityAssociation/a', entry: gone }] }, {}, owned([gone, unwanted]));
    expect(summary(result)).toEqual(['create state SecurityAssociation/a']);
    expect(result.ledger.remove).toEqual([stateKey(gone.id), stateKey(unwanted.id)]);
  });

  it('after a crash, a `creating` record owns the entry only if the kernel holds exactly what was being added', () => {
    const ours = sa();
    const theirs = sa({ aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128b' } } });
    const records = owned([ours], 'creating');
    const adopted = run({}, { states: [ours] }, records);
    expect(summary(adopted)).toEqual(['delete state Test/owned']);
    const notOurs = run({}, { states: [theirs] }, records);
    expect(notOurs.steps).toEqual([]);
    expect(notOurs.ledger.remove).toEqual([stateKey(ours.id)]);
  });

  it('reports two resources asking for the same SA identity as a conflict', () => {
    const result = run({
      states: [
        { resource: 'SecurityAssociation/first', entry: sa() },
        { resource: 'SecurityAssociation/second', entry: sa({ reqid: 4 }) },
      ],
    });
    expect(summary(result)).toEqual(['create state SecurityAssociation/first']);
    expect(result.conflicts.map((conflict) => conflict.resource)).toEqual(['SecurityAssociation/second']);
  });

  it('treats SAs with different marks as different identities, and if_id as no part of SA identity', () => {
    const plain = sa();
    const marked = sa({ mark: { value: 7 } });
    expect(stateKey(plain.id)).not.toBe(stateKey(marked.id));
    expect(stateKey(sa({ interfaceId: 5 }).id)).toBe(stateKey(plain.id));
  });
});
