// The IpsecNodeState contract (src/crd/node-state.ts) against the schema the API server
// enforces (src/crd/schema.ts): every field of the types is in the schema and the other way
// round, and a complete report is valid. `satisfies Required<...>` makes the compiler check
// that the samples name every field of the types, and nothing else.
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { ipsecNodeStateSpec, ipsecNodeStateStatus, type Schema } from '../../src/crd/schema.js';
import { reportedNode, resourceStanding, type AppliedSet, type EncapsulationSocketReport, type IpsecNodeStateSpec, type IpsecNodeStateStatus, type LegacyNodeStateStatus, type NodeEntryCounts, type ResourceReport } from '../../src/crd/node-state.js';
import { appliedSetDigest } from '../../src/crd/applied-set.js';
import type { MeshRotationProgress, NodeMeshReport } from '../../src/crd/mesh-contract.js';
import type { InboundAck, MeshAdvertisement, OutboundUse, PublishedGeneration } from '../../src/mesh/types.js';

// 32 bytes of public key (not a real one: the schema checks the form only).
const PUBLIC_KEY = Buffer.alloc(32, 7).toString('base64');
const generation = { generation: 2, publicKey: PUBLIC_KEY } satisfies Required<PublishedGeneration>;
const ack = { from: 'b', family: 'inet', fromGeneration: 1, fromBootId: 'boot-b', generation: 2, spi: 0x1234 } satisfies Required<InboundAck>;
const use = { to: 'b', family: 'inet', generation: 2, toGeneration: 1, toBootId: 'boot-b', spi: 0x5678, fromBootId: 'boot-a-before' } satisfies Required<OutboundUse>;
const advertisement = {
  node: 'a',
  bootId: 'boot-a',
  addresses: { inet: '192.0.2.1', inet6: '2001:db8::1' },
  podCIDRs: ['10.244.1.0/24'],
  generations: [generation],
  inbound: [ack],
  outbound: [use],
  peers: [{ node: 'b', bootId: 'boot-b' }],
  leaving: false,
} satisfies Required<MeshAdvertisement>;
const rotation = { requestId: '3-a', state: 'Done', generation: 2, startedAt: '2026-12-02T01:00:00Z', completedAt: '2026-12-02T01:00:40Z' } satisfies Required<MeshRotationProgress>;
const meshReport = {
  mesh: 'cluster',
  uid: '0b6f6c9e-1d2a-4c4b-9a53-1f6f0f0c2d11',
  advertisement,
  rotation,
  rotationWanted: 'SoftLimit',
  expectedPeers: 1,
  readyPeers: 1,
  sequenceUsage: 0.25,
  reason: 'NoAddress',
  message: 'the Node has no InternalIP address in IPv6',
} satisfies Required<NodeMeshReport>;

const report = {
  kind: 'SecurityAssociation',
  name: 'a-to-b',
  generation: 3,
  state: 'Failed',
  reason: 'KernelRejected',
  message: 'the kernel refused the SA: Invalid argument (EINVAL)',
  entries: 1,
} satisfies Required<ResourceReport>;

const applied = appliedSetDigest([{ kind: 'IpsecPolicy', name: 'a-out', uid: '5c1e0d7a-0000-4000-8000-000000000001', generation: 1 }]) satisfies Required<AppliedSet>;

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
  applied,
  resources: [report],
  unlistedReports: 0,
  encapsulationSockets: [socket],
  meshes: [meshReport],
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
    expect(Object.keys(applied).sort()).toEqual(Object.keys(properties(properties(ipsecNodeStateStatus)['applied']!)).sort());
    const socketSchema = (properties(ipsecNodeStateStatus)['encapsulationSockets'] as { items: Schema }).items;
    expect(Object.keys(socket).sort()).toEqual(Object.keys(properties(socketSchema)).sort());
    expect(Object.keys(spec)).toEqual(Object.keys(properties(ipsecNodeStateSpec)));
    const meshSchema = (properties(ipsecNodeStateStatus)['meshes'] as { items: Schema }).items;
    expect(Object.keys(meshReport).sort()).toEqual(Object.keys(properties(meshSchema)).sort());
    expect(Object.keys(rotation).sort()).toEqual(Object.keys(properties(properties(meshSchema)['rotation']!)).sort());
    const adSchema = properties(meshSchema)['advertisement']!;
    expect(Object.keys(advertisement).sort()).toEqual(Object.keys(properties(adSchema)).sort());
    const itemsOf = (name: string) => properties((properties(adSchema)[name] as { items: Schema }).items);
    expect(Object.keys(generation).sort()).toEqual(Object.keys(itemsOf('generations')).sort());
    expect(Object.keys(ack).sort()).toEqual(Object.keys(itemsOf('inbound')).sort());
    expect(Object.keys(use).sort()).toEqual(Object.keys(itemsOf('outbound')).sort());
    expect(Object.keys(advertisement.peers[0]!).sort()).toEqual(Object.keys(itemsOf('peers')).sort());
  });

  it('refuses malformed mesh reports', () => {
    const validate = ajv.compile(ipsecNodeStateStatus);
    const withReport = (report: unknown) => ({ ...status, meshes: [report] });
    const withAd = (changes: Record<string, unknown>) => withReport({ ...meshReport, advertisement: { ...advertisement, ...changes } });
    expect(validate(withReport({ ...meshReport, advertisement: undefined }))).toBe(false);
    expect(validate(withAd({ generations: [{ generation: 2, publicKey: 'not a key' }] }))).toBe(false);
    expect(validate(withAd({ generations: [{ generation: 0, publicKey: PUBLIC_KEY }] }))).toBe(false);
    expect(validate(withAd({ inbound: [{ ...ack, spi: 255 }] }))).toBe(false);
    expect(validate(withAd({ outbound: [{ ...use, family: 'ipx' }] }))).toBe(false);
    expect(validate(withAd({ addresses: { inet: 'not an address' } }))).toBe(false);
    expect(validate(withReport({ ...meshReport, rotation: { ...rotation, state: 'Started' } }))).toBe(false);
    expect(validate(withReport({ ...meshReport, sequenceUsage: 2 }))).toBe(false);
    expect(validate(withReport({ ...meshReport, uid: 'has/slash' }))).toBe(false);
  });

  it('a complete report is valid; one with a field the schema lacks, or a state it does not know, is not', () => {
    const validate = ajv.compile(ipsecNodeStateStatus);
    expect(validate(status), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ ...status, extra: 1 })).toBe(false);
    expect(validate({ ...status, resources: [{ ...report, state: 'Pending' }] })).toBe(false);
    expect(validate({ ...status, applied: { ...applied, digest: 'ABC' } })).toBe(false);
    expect(validate({ ...status, applied: { digest: applied.digest } })).toBe(false);
    expect(ajv.compile(ipsecNodeStateSpec)(spec)).toBe(true);
  });

  it('still accepts a status of the first format (a report per resource, Applied ones too) and reads it as such', () => {
    const { applied: _applied, unlistedReports: _unlisted, resources: _resources, ...common } = status;
    const legacy = { ...common, resources: [report, { kind: 'IpsecPolicy', name: 'a-out', generation: 1, state: 'Applied', entries: 1 }] } satisfies LegacyNodeStateStatus;
    const validate = ajv.compile(ipsecNodeStateStatus);
    expect(validate(legacy), JSON.stringify(validate.errors)).toBe(true);
    expect(resourceStanding(legacy)).toEqual({ format: 'legacy', reports: legacy.resources });
    expect(resourceStanding(status)).toEqual({ format: 'digest', applied, reports: [report], unlisted: 0 });
    expect(resourceStanding(undefined)).toEqual({ format: 'legacy', reports: [] });
  });

  it('reports on the node its spec names, else the one it is named after', () => {
    expect(reportedNode({ metadata: { name: 'a' }, spec: { nodeName: 'b' } })).toBe('b');
    expect(reportedNode({ metadata: { name: 'a' } })).toBe('a');
  });
});
