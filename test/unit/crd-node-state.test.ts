// The IpsecNodeState contract (src/crd/node-state.ts) against the schema the API server
// enforces (src/crd/schema.ts): every field of the types is in the schema and the other way
// round, and a complete report is valid. `satisfies Required<...>` makes the compiler check
// that the samples name every field of the types, and nothing else.
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { ipsecNodeStateSpec, ipsecNodeStateStatus, type Schema } from '../../src/crd/schema.js';
import { reportedNode, type EncapsulationSocketReport, type IpsecNodeStateSpec, type IpsecNodeStateStatus, type NodeEntryCounts, type ResourceReport } from '../../src/crd/node-state.js';

const report = {
  kind: 'SecurityAssociation',
  name: 'a-to-b',
  generation: 3,
  state: 'Failed',
  reason: 'KernelRejected',
  message: 'the kernel refused the SA: Invalid argument (EINVAL)',
  entries: 1,
} satisfies Required<ResourceReport>;

const entries = { ownedStates: 2, ownedPolicies: 6, foreignStates: 1, foreignPolicies: 1 } satisfies Required<NodeEntryCounts>;

const socket = {
  address: '198.51.100.2',
  port: 4500,
  encapsulation: 'espinudp',
  state: 'Held',
  message: 'held by the agent',
  resources: ['a-to-b'],
} satisfies Required<EncapsulationSocketReport>;

const status = {
  lastSyncTime: '2026-12-02T01:00:00Z',
  lastAttemptTime: '2026-12-02T01:00:30Z',
  agentVersion: '0.1.0',
  kernelRelease: '6.1.0-41-amd64',
  algorithms: { aead: ['rfc4106(gcm(aes))'], encryption: ['cbc(aes)'] },
  entries,
  driftRepairs: 4,
  resources: [report, { kind: 'IpsecPolicy', name: 'a-out', state: 'Applied' }],
  encapsulationSockets: [socket],
  conditions: [{ type: 'Ready', status: 'False', reason: 'ResourcesFailed', message: '1 resource(s) not applied', lastTransitionTime: '2026-12-02T01:00:30Z' }],
} satisfies Required<IpsecNodeStateStatus>;

const spec = { nodeName: 'a' } satisfies Required<IpsecNodeStateSpec>;

const ajv = new Ajv({ allErrors: true, strict: false });
for (const keyword of ['x-kubernetes-list-type', 'x-kubernetes-list-map-keys']) ajv.addKeyword(keyword);

function properties(schema: Schema): Record<string, Schema> {
  return (schema as { properties: Record<string, Schema> }).properties;
}

describe('the IpsecNodeState contract', () => {
  it('names exactly the fields of the schema, nested ones included', () => {
    expect(Object.keys(status).sort()).toEqual(Object.keys(properties(ipsecNodeStateStatus)).sort());
    expect(Object.keys(entries).sort()).toEqual(Object.keys(properties(properties(ipsecNodeStateStatus)['entries']!)).sort());
    const reportSchema = (properties(ipsecNodeStateStatus)['resources'] as { items: Schema }).items;
    expect(Object.keys(report).sort()).toEqual(Object.keys(properties(reportSchema)).sort());
    const socketSchema = (properties(ipsecNodeStateStatus)['encapsulationSockets'] as { items: Schema }).items;
    expect(Object.keys(socket).sort()).toEqual(Object.keys(properties(socketSchema)).sort());
    expect(Object.keys(spec)).toEqual(Object.keys(properties(ipsecNodeStateSpec)));
  });

  it('a complete report is valid; one with a field the schema lacks, or a state it does not know, is not', () => {
    const validate = ajv.compile(ipsecNodeStateStatus);
    expect(validate(status), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ ...status, extra: 1 })).toBe(false);
    expect(validate({ ...status, resources: [{ ...report, state: 'Pending' }] })).toBe(false);
    expect(ajv.compile(ipsecNodeStateSpec)(spec)).toBe(true);
  });

  it('reports on the node its spec names, else the one it is named after', () => {
    expect(reportedNode({ metadata: { name: 'a' }, spec: { nodeName: 'b' } })).toBe('b');
    expect(reportedNode({ metadata: { name: 'a' } })).toBe('a');
  });
});
