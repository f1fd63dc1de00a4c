import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { apiTime, nodeStateStatus, type NodeStateInputs } from '../../src/agent/node-state-report.js';
import { ipsecNodeStateStatus } from '../../src/crd/schema.js';
import { appliedSetDigest } from '../../src/crd/applied-set.js';
import { MAX_LISTED_REPORTS } from '../../src/crd/node-state.js';

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

  describe('bounded, whatever the number of resources', () => {
    const applied = (i: number) => ({ kind: 'IpsecPolicy' as const, name: `policy-${i}`, uid: `5c1e0d7a-0000-4000-8000-${String(i).padStart(12, '0')}`, generation: 3, state: 'Applied' as const, reason: 'Applied', message: '1 kernel entry', entries: 1 });

    it('10,000 applied resources: a count and a digest, no list', () => {
      const reports = Array.from({ length: 10_000 }, (_, i) => applied(i));
      const status = nodeStateStatus({ ...inputs, reports });
      const bytes = Buffer.byteLength(JSON.stringify(status));
      console.log(`status of 10,000 applied resources: ${bytes} bytes`);
      expect(status.resources).toEqual([]);
      expect(status.applied).toEqual(appliedSetDigest(reports));
      expect(status.applied!.resources).toBe(10_000);
      expect(bytes).toBeLessThan(1024);
      expect(valid(status), JSON.stringify(valid.errors)).toBe(true);
      // The order of the pass does not matter to the digest; a generation does.
      expect(nodeStateStatus({ ...inputs, reports: [...reports].reverse() }).applied).toEqual(status.applied);
      expect(nodeStateStatus({ ...inputs, reports: reports.map((report, i) => (i === 5 ? { ...report, generation: 4 } : report)) }).applied!.digest).not.toBe(status.applied!.digest);
    });

    it('10,000 failed with 4 KiB messages: the first 256 listed (removals first), messages cut, the rest counted', () => {
      const failed = Array.from({ length: 10_000 }, (_, i) => ({ kind: 'IpsecPolicy' as const, name: `policy-${String(i).padStart(240, 'x')}`, generation: 3, state: 'Failed' as const, reason: 'KernelRejected', message: 'E'.repeat(4096), entries: 1 }));
      const removing = { kind: 'IpsecPolicy' as const, name: 'going', generation: 1, state: 'Failed' as const, reason: 'Deleting', message: 'entries not yet removed', entries: 2 };
      const status = nodeStateStatus({ ...inputs, reports: [...failed, removing] });
      const bytes = Buffer.byteLength(JSON.stringify(status));
      console.log(`status of 10,001 failed resources (240-character names, 4 KiB messages): ${bytes} bytes`);
      expect(status.resources).toHaveLength(MAX_LISTED_REPORTS);
      expect(status.resources![0]).toEqual(removing);
      expect(status.unlistedReports).toBe(10_001 - MAX_LISTED_REPORTS);
      expect(status.conditions[0]).toMatchObject({ reason: 'ResourcesFailed', message: '10001 resource(s) not applied' });
      expect(bytes).toBeLessThan(400_000);
      expect(valid(status), JSON.stringify(valid.errors)).toBe(true);
    });
  });
});
