// The agent's node-state reporter (src/agent/node-state-reporter.ts) against a recording fake
// of the API: a resync that finds nothing new sends no request at all (no read, no write);
// a change is read back and written; the first report creates the object.
import { describe, expect, it } from 'vitest';
import { NodeStateReporter, type NodeStateFacts } from '../../src/agent/node-state-reporter.js';
import type { IpsecResources } from '../../src/kube/client.js';

function fakeApi(initial?: { status?: unknown }) {
  const calls: string[] = [];
  let stored: { status?: unknown } | undefined = initial;
  const api = {
    get: async () => {
      calls.push('get');
      return stored;
    },
    apply: async () => {
      calls.push('create');
      stored = {};
    },
    statusWriter: () => ({
      write: async (_plural: string, _name: string, _current: unknown, desired: Record<string, unknown>) => {
        calls.push('write');
        stored = { status: desired };
        return { written: true, object: stored };
      },
    }),
  };
  return { calls, api: api as unknown as IpsecResources, stored: () => stored };
}

const facts = (kernelPolicies: number): NodeStateFacts => ({
  converged: true,
  reports: [{ kind: 'IpsecPolicy', name: 'p', uid: 'uid-p', generation: 1, state: 'Applied', entries: 1 }],
  kernelStates: 0,
  kernelPolicies,
  owned: [{ target: 'policy' }],
  lastSync: new Date(),
  driftRepairs: 0,
  encapsulationSockets: [],
});

describe('the node-state reporter', () => {
  it('creates and writes once, sends nothing while nothing changes, and writes a change', async () => {
    const { calls, api } = fakeApi();
    const reporter = new NodeStateReporter(api, 'a');
    await reporter.runnable.start(new AbortController().signal);
    await reporter.report(facts(1));
    expect(calls).toEqual(['get', 'create', 'write']);
    calls.length = 0;
    for (let resync = 0; resync < 5; resync++) await reporter.report(facts(1));
    expect(calls).toEqual([]);
    await reporter.report(facts(2)); // one more foreign policy
    expect(calls).toEqual(['get', 'write']);
  });

  it('keeps the mesh reports it finds on the server while the mesh caches have not synced, and replaces them once they have', async () => {
    const published = [{ mesh: 'm', uid: 'u', expectedPeers: 1, readyPeers: 1, advertisement: { node: 'a', bootId: 'x', addresses: {}, podCIDRs: [], generations: [], inbound: [], outbound: [], peers: [], leaving: false } }];
    const { api, stored } = fakeApi({ status: { meshes: published } });
    const reporter = new NodeStateReporter(api, 'a');
    await reporter.runnable.start(new AbortController().signal);
    // A restarted agent: its first pass has no mesh view (facts without meshes).
    await reporter.report(facts(1));
    expect((stored()!.status as { meshes?: unknown }).meshes).toEqual(published);
    await reporter.report(facts(2));
    expect((stored()!.status as { meshes?: unknown }).meshes).toEqual(published);
    // Synced, and the node takes part in no mesh: the reports go.
    await reporter.report({ ...facts(2), meshes: [] });
    expect((stored()!.status as { meshes?: unknown }).meshes).toBeUndefined();
  });
});
