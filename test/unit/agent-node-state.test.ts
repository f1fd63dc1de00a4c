import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { apiTime, nodeStateStatus, type NodeStateInputs } from '../../src/agent/node-state-report.js';
import { ipsecNodeStateStatus } from '../../src/crd/schema.js';

const at = (seconds: number) => new Date(Date.UTC(2026, 11, 2, 1, 0, seconds, 250));

const inputs: NodeStateInputs = {
  converged: true,
  reports: [{ kind: 'SecurityAssociation', name: 'a-to-b', uid: 'uid-a-to-b', generation: 1, state: 'Applied', reason: 'Applied', entries: 1 }],
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

  it('keeps its times while nothing else changes, so a quiet resync writes nothing; refreshes them after the heartbeat', () => {
    const first = nodeStateStatus(inputs);
    // The next resync, 30 s later, found the same: the very same status (the writer skips equal ones).
    const quiet = nodeStateStatus({ ...inputs, lastSync: at(40), now: at(40), conditions: first.conditions, previous: first });
    expect(quiet).toEqual(first);
    expect(quiet.lastAttemptTime).toBe('2026-12-02T01:00:10Z');
    // Something moved (one more foreign policy): written, with fresh times.
    const moved = nodeStateStatus({ ...inputs, kernelPolicies: 3, lastSync: at(45), now: at(45), conditions: first.conditions, previous: first });
    expect(moved).toMatchObject({ lastAttemptTime: '2026-12-02T01:00:45Z', lastSyncTime: '2026-12-02T01:00:45Z', entries: { foreignPolicies: 2 } });
    // Nothing moved, but the heartbeat is due: fresh times.
    const beat = nodeStateStatus({ ...inputs, lastSync: at(20), now: new Date(at(10).getTime() + 300_000), conditions: first.conditions, previous: first, heartbeatSeconds: 300 });
    expect(beat.lastAttemptTime).toBe('2026-12-02T01:05:10Z');
  });

  it('writes API times with whole seconds', () => {
    expect(apiTime(at(5))).toBe('2026-12-02T01:00:05Z');
  });
});
