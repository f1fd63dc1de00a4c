// The agent's node-state reporter (src/agent/node-state-reporter.ts) against a recording fake
// of the API: a resync that finds nothing new sends no request at all (no read, no write);
// a change is read back and written; the first report creates the object.
import { describe, expect, it } from 'vitest';
import { NodeStateReporter, type NodeStateFacts } from '../../src/agent/node-state-reporter.js';
import type { IpsecResources } from '../../src/kube/client.js';

function fakeApi() {
  const calls: string[] = [];
  let stored: { status?: unknown } | undefined;
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
  return { calls, api: api as unknown as IpsecResources };
}

const facts = (kernelPolicies: number): NodeStateFacts => ({
  converged: true,
  reports: [{ kind: 'IpsecPolicy', name: 'p', generation: 1, state: 'Applied', entries: 1 }],
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
});
