import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { apiTime, nodeStateStatus, type NodeStateInputs } from '../../src/agent/node-state-report.js';
import { ipsecNodeStateStatus } from '../../src/crd/schema.js';

const at = (seconds: number) => new Date(Date.UTC(2026, 11, 2, 1, 0, seconds, 250));

const inputs: NodeStateInputs = {
  converged: true,
  reports: [{ kind: 'SecurityAssociation', name: 'a-to-b', generation: 1, state: 'Applied', reason: 'Applied', entries: 1 }],
  kernelStates: 3,
  kernelPolicies: 2,
  owned: [{ target: 'state' }, { target: 'state' }, { target: 'policy' }],
  lastSync: at(10),
  conditions: [],
  now: at(10),
  agentVersion: '0.1.0',
  kernelRelease: '6.1.0-41-amd64',
  algorithms: { aead: ['rfc4106(gcm(aes))'] },
  driftRepairs: 0,
  encapsulationSockets: [],
};

const ajv = new Ajv({ allErrors: true, strict: false });
for (const keyword of ['x-kubernetes-list-type', 'x-kubernetes-list-map-keys']) ajv.addKeyword(keyword);
const valid = ajv.compile(ipsecNodeStateStatus);

describe('the node state an agent reports', () => {
  it('counts owned and foreign entries and says Ready=True when everything selected is applied', () => {
    const status = nodeStateStatus(inputs);
    expect(status.entries).toEqual({ ownedStates: 2, ownedPolicies: 1, foreignStates: 1, foreignPolicies: 1 });
    expect(status.conditions).toEqual([{ type: 'Ready', status: 'True', reason: 'Synced', message: 'the kernel holds every selected resource', lastTransitionTime: '2026-12-02T01:00:10Z' }]);
    expect(status.lastSyncTime).toBe('2026-12-02T01:00:10Z');
    expect(valid(status), JSON.stringify(valid.errors)).toBe(true);
  });

  it('says why it is not Ready, and moves lastTransitionTime only when the status changes', () => {
    const failed = nodeStateStatus({ ...inputs, reports: [{ kind: 'IpsecPolicy', name: 'a-out', state: 'Failed', reason: 'KernelRejected' }], now: at(20) });
    expect(failed.conditions[0]).toMatchObject({ status: 'False', reason: 'ResourcesFailed', message: '1 resource(s) not applied', lastTransitionTime: '2026-12-02T01:00:20Z' });
    const notConverged = nodeStateStatus({ ...inputs, converged: false, conditions: failed.conditions, now: at(30) });
    expect(notConverged.conditions[0]).toMatchObject({ status: 'False', reason: 'NotConverged', lastTransitionTime: '2026-12-02T01:00:20Z' });
  });

  it('never reports a negative foreign count (records whose entries are being restored), which the schema would refuse', () => {
    const status = nodeStateStatus({ ...inputs, kernelStates: 0, kernelPolicies: 0, lastSync: undefined });
    expect(status.entries).toMatchObject({ foreignStates: 0, foreignPolicies: 0 });
    expect(status).not.toHaveProperty('lastSyncTime');
    expect(valid(status), JSON.stringify(valid.errors)).toBe(true);
  });

  it('writes API times with whole seconds', () => {
    expect(apiTime(at(5))).toBe('2026-12-02T01:00:05Z');
  });
});
