/**
 * Kernel features known, not guessed: the feature table, the refusal of fields the kernel would
 * drop (before planning, reason KernelUnsupported) and the verifying pass that stops when the
 * kernel acknowledged a change and did not keep it (KernelDidNotKeep), never planning it
 * forever. The kernel here is a small fake of this file's own that drops what a named kernel
 * drops (direction before 6.10; a care-of address UPDSA does not copy), so the engine meets
 * exactly the silent loss the real 6.1 kernel shows in test/kernel/vm/kernel-features.test.ts.
 */
import { observe } from '../support/ownership.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reconcileNode } from '../../src/agent/node-reconciler.js';
import type { KernelChange, KernelOutcome } from '../../src/apply/applier.js';
import type { SecurityAssociationSpec } from '../../src/crd/types.js';
import { converge, kernelUnsupported, notKept, type KernelTables } from '../../src/engine/converge.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { compareStates } from '../../src/plan/compare.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import type { DesiredTables, ObservedTables } from '../../src/plan/planner.js';
import { KERNEL_FEATURES, kernelFeatures, parseKernelRelease, unsupportedFields, type KernelFeatures } from '../../src/xfrm/kernel-features.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';
import { sa, saSpec, TEST_KEYS } from '../support/entries.js';
import { XfrmClient } from '../../src/xfrm/client.js';
import { stateDirectionProbeRequest } from '../../src/xfrm/messages.js';
import { ScriptedTransport, ackPayload } from './fixtures/scripted-transport.js';
import { judge, viewFacts, type ClusterView } from '../../src/controller/analysis.js';
import { appliedSetDigest } from '../../src/crd/applied-set.js';

const DEBIAN_61 = '6.1.0-57-amd64';
const DEBIAN_612 = '6.12.117+deb12-amd64';

/**
 * SAs and policies by identity, like the kernel; what it keeps of an SA is `keep`'s business.
 * UPDSA copies only lifetimes, encapsulation and a care-of address the SA already has
 * (xfrm_state_update), unless `copyCareOf` says the kernel ignores that too.
 */
class DroppingKernel implements KernelTables {
  readonly states = new Map<string, SecurityAssociation>();
  readonly policies = new Map<string, SecurityPolicy>();
  readonly log: string[] = [];

  constructor(
    readonly features: KernelFeatures | undefined,
    readonly keep: (sa: SecurityAssociation) => SecurityAssociation = (sa) => sa,
    readonly copyCareOf = true,
  ) {}

  async dump(): Promise<ObservedTables> {
    return { states: [...this.states.values()], policies: [...this.policies.values()] };
  }

  async apply(changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]> {
    return changes.map((change): KernelOutcome => {
      this.log.push(change.op);
      switch (change.op) {
        case 'add-state':
          this.states.set(stateKey(change.state.id), observe(this.keep(change.state), { addTime: Math.floor(Date.now() / 1000) }));
          return { ok: true };
        case 'update-state': {
          const current = this.states.get(stateKey(change.state.id))!;
          const careOfAddress = this.copyCareOf && current.careOfAddress !== undefined && change.state.careOfAddress !== undefined ? change.state.careOfAddress : current.careOfAddress;
          this.states.set(stateKey(change.state.id), { ...current, lifetime: change.state.lifetime, encapsulation: change.state.encapsulation, careOfAddress });
          return { ok: true };
        }
        case 'delete-state':
          this.states.delete(stateKey(change.id));
          return { ok: true };
        case 'add-policy':
        case 'update-policy':
          this.policies.set(policyKey(change.policy.id), observe({ ...change.policy, index: change.policy.index || 8 }, { addTime: Math.floor(Date.now() / 1000) }));
          return { ok: true };
        case 'delete-policy':
          this.policies.delete(policyKey(change.id));
          return { ok: true };
      }
    });
  }
}

/** What Debian 12's 6.1 does with an SA sent with a direction: installs it without one. */
const withoutDirection = (state: SecurityAssociation): SecurityAssociation => ({ ...state, direction: undefined });

let directory: string;
let ledger: Ledger;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ipsecop-features-'));
  ledger = await Ledger.open(join(directory, 'ledger.json'));
});
afterEach(async () => {
  await ledger.close();
  await rm(directory, { recursive: true, force: true });
});

const outbound = sa({ direction: 'out' });
const plain = sa({ spi: 0x300, destination: '10.0.0.3' });
const tables = (...states: { resource: string; entry: SecurityAssociation }[]): DesiredTables => ({ states, policies: [] });

describe('the kernel feature table', () => {
  it('reads the version from a release string', () => {
    expect(parseKernelRelease(DEBIAN_61)).toEqual([6, 1]);
    expect(parseKernelRelease(DEBIAN_612)).toEqual([6, 12]);
    expect(parseKernelRelease('6.18.44-fc-v973')).toEqual([6, 18]);
    expect(parseKernelRelease('unknown')).toBeUndefined();
  });

  it.each([
    [DEBIAN_61, []],
    ['6.9.12', []],
    ['6.10.0', ['sa-direction']],
    [DEBIAN_612, ['sa-direction', 'nat-keepalive']],
    ['6.13.1', ['sa-direction', 'nat-keepalive', 'sa-pcpu']],
    ['6.14.0', ['sa-direction', 'nat-keepalive', 'sa-pcpu', 'iptfs']],
    ['7.0.0', ['sa-direction', 'nat-keepalive', 'sa-pcpu', 'iptfs']],
    ['not-a-release', []],
  ])('kernel %s keeps %j', (release, expected) => {
    expect([...kernelFeatures(release).supported].sort()).toEqual([...expected].sort());
  });

  it('lets the probe overrule the release (a backport, or a kernel that lost it)', () => {
    const backported = kernelFeatures(DEBIAN_61, { 'sa-direction': true });
    expect(backported.supported.has('sa-direction')).toBe(true);
    expect(backported.learnedBy).toMatchObject({ 'sa-direction': 'probe', 'nat-keepalive': 'release' });
    expect(kernelFeatures(DEBIAN_612, { 'sa-direction': false }).supported.has('sa-direction')).toBe(false);
  });

  it('ties every feature the model can express to a spec field, each release to its attribute', () => {
    expect(KERNEL_FEATURES.map((spec) => [spec.feature, spec.since.join('.'), spec.field?.path])).toEqual([
      ['sa-direction', '6.10', 'spec.direction'],
      ['nat-keepalive', '6.11', undefined],
      ['sa-pcpu', '6.13', undefined],
      ['iptfs', '6.14', undefined],
    ]);
  });

  it('names the field, the attribute, the release that brought it and the running kernel', () => {
    const [field, ...rest] = unsupportedFields(outbound, kernelFeatures(DEBIAN_61));
    expect(rest).toEqual([]);
    expect(field).toMatchObject({ feature: 'sa-direction', path: 'spec.direction' });
    expect(field!.message).toBe(
      `kernel ${DEBIAN_61} does not keep spec.direction (XFRMA_SA_DIR (33) needs Linux 6.10 or later; an older kernel installs the SA without it): remove the field or run a newer kernel`,
    );
    expect(unsupportedFields(plain, kernelFeatures(DEBIAN_61))).toEqual([]);
    expect(unsupportedFields(outbound, kernelFeatures(DEBIAN_612))).toEqual([]);
  });

  it('finds the desired entries a kernel would drop fields of, and nothing when the features are unknown', () => {
    const desired = tables({ resource: 'SecurityAssociation/out', entry: outbound }, { resource: 'SecurityAssociation/plain', entry: plain });
    expect(kernelUnsupported(desired, kernelFeatures(DEBIAN_61))).toEqual([
      { resource: 'SecurityAssociation/out', key: stateKey(outbound.id), path: 'spec.direction', message: expect.stringContaining(DEBIAN_61) },
    ]);
    expect(kernelUnsupported(desired, kernelFeatures(DEBIAN_612))).toEqual([]);
    expect(kernelUnsupported(desired, undefined)).toEqual([]);
  });
});

describe('comparing only what the kernel reports back: the care-of address', () => {
  const at = (careOfAddress: string | undefined) => ({ ...plain, careOfAddress });
  it.each([
    ['changed on an SA that has one: UPDSA copies it', at('203.0.113.1'), at('203.0.113.2'), { inPlace: ['care-of address'], replace: [] }],
    ['added: UPDSA ignores it, so a replace', at('203.0.113.1'), at(undefined), { inPlace: [], replace: ['care-of address'] }],
    ['removed: UPDSA ignores it, so a replace', at(undefined), at('203.0.113.1'), { inPlace: [], replace: ['care-of address'] }],
    ['equal', at('203.0.113.1'), at('203.0.113.1'), { inPlace: [], replace: [] }],
  ])('%s', (_, desired, observed, expected) => {
    expect(compareStates(desired, observed)).toEqual(expected);
  });
});

describe('refusal before planning (KernelUnsupported)', () => {
  it('refuses the whole apply (CLI) on 6.1: nothing is sent, nothing recorded', async () => {
    const kernel = new DroppingKernel(kernelFeatures(DEBIAN_61), withoutDirection);
    const result = await converge(kernel, ledger, { desired: tables({ resource: 'SecurityAssociation/out', entry: outbound }, { resource: 'SecurityAssociation/plain', entry: plain }), prune: true, dryRun: false });
    expect(result.outcome).toBe('unsupported');
    expect(result.unsupported.map((entry) => entry.resource)).toEqual(['SecurityAssociation/out']);
    expect(kernel.log).toEqual([]);
    expect(ledger.records().size).toBe(0);
  });

  it('applies the same SA with its direction on 6.12, and a second pass is a no-op', async () => {
    const kernel = new DroppingKernel(kernelFeatures(DEBIAN_612));
    const desired = tables({ resource: 'SecurityAssociation/out', entry: outbound });
    const first = await converge(kernel, ledger, { desired, prune: true, dryRun: false });
    expect(first.outcome).toBe('applied');
    expect(kernel.states.get(stateKey(outbound.id))?.direction).toBe('out');
    const second = await converge(kernel, ledger, { desired, prune: true, dryRun: false });
    expect(second).toMatchObject({ outcome: 'applied', unsupported: [] });
    expect(second.plan.steps).toEqual([]);
  });

  it('sets the resource aside in the agent, applies the rest and keeps its existing entries', async () => {
    // The entry was installed by an earlier run whose direction the kernel did keep; now the
    // node runs a kernel without direction support. Nothing of that resource is pruned.
    const kernel = new DroppingKernel(kernelFeatures(DEBIAN_612));
    const resource = (name: string, spec: Partial<SecurityAssociationSpec>, second: number) => ({
      apiVersion: 'ipsec.xfrm.io/v1alpha1' as const,
      kind: 'SecurityAssociation' as const,
      metadata: { name, generation: 1, creationTimestamp: `2026-01-01T00:00:0${second}Z` },
      spec: saSpec(spec),
    });
    const inputs = {
      resources: [resource('out', { direction: 'out' }, 1), resource('plain', { spi: 0x300, destination: '10.0.0.3' }, 2)],
      secrets: new Map([['keys', new Map(Object.entries(TEST_KEYS))]]),
      nodeLabels: {},
      resolveDevice: () => undefined,
    };
    await reconcileNode({ ...inputs, resources: [inputs.resources[0]!] }, kernel, ledger);
    expect(kernel.states.size).toBe(1);

    const older = new DroppingKernel(kernelFeatures(DEBIAN_61), withoutDirection);
    for (const [key, state] of kernel.states) older.states.set(key, state);
    const result = await reconcileNode(inputs, older, ledger);
    const byName = Object.fromEntries(result.reports.map((report) => [report.name, report]));
    expect(byName['out']).toMatchObject({ state: 'Failed', reason: 'KernelUnsupported', entries: 1 });
    expect(byName['out']!.message).toMatch(/^spec\.direction: kernel 6\.1\.0-57-amd64 does not keep spec\.direction/);
    expect(byName['plain']).toMatchObject({ state: 'Applied', entries: 1 });
    expect(older.log).toEqual(['add-state']); // only the plain SA: the set-aside one is neither replaced nor pruned
    expect(older.states.size).toBe(2);
  });
});

describe('the verifying pass stops on what the kernel did not keep (KernelDidNotKeep)', () => {
  it('stops after one create when a kernel of unknown features drops the direction, instead of replacing it on every pass', async () => {
    const kernel = new DroppingKernel(undefined, withoutDirection);
    const desired = tables({ resource: 'SecurityAssociation/out', entry: outbound });
    const result = await converge(kernel, ledger, { desired, prune: true, dryRun: false });
    expect(result.outcome).toBe('not-kept');
    if (result.outcome !== 'not-kept') return;
    expect(result.notKept).toEqual([
      { resource: 'SecurityAssociation/out', key: stateKey(outbound.id), fields: ['direction'], message: expect.stringMatching(/^SecurityAssociation\/out: the kernel did not keep direction of sa esp spi 0x00000100 10\.0\.0\.1 -> 10\.0\.0\.2/) },
    ]);
    expect(kernel.log).toEqual(['add-state']);
  });

  it('stops an update UPDSA acknowledged and ignored (same key, same changes), and says which field', async () => {
    const withCareOf = { ...plain, careOfAddress: '203.0.113.1' };
    const kernel = new DroppingKernel(undefined, (state) => state, false);
    const desired = (entry: SecurityAssociation) => tables({ resource: 'SecurityAssociation/plain', entry });
    expect((await converge(kernel, ledger, { desired: desired(withCareOf), prune: true, dryRun: false })).outcome).toBe('applied');
    const moved = { ...plain, careOfAddress: '203.0.113.2' };
    const result = await converge(kernel, ledger, { desired: desired(moved), prune: true, dryRun: false });
    expect(result.outcome).toBe('not-kept');
    if (result.outcome !== 'not-kept') return;
    expect(result.report.applied.map((step) => step.op)).toEqual(['update']);
    expect(result.notKept.map((entry) => entry.fields)).toEqual([['care-of address']]);
    expect(result.notKept[0]!.message).toContain('the kernel did not keep care-of address of sa esp spi 0x00000300');
  });

  it('reports the agent resource as KernelDidNotKeep, not converged, and applies nothing more in that pass', async () => {
    const kernel = new DroppingKernel(undefined, withoutDirection);
    const result = await reconcileNode(
      {
        resources: [{ apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'SecurityAssociation', metadata: { name: 'out', generation: 1 }, spec: saSpec({ direction: 'out' }) }],
        secrets: new Map([['keys', new Map(Object.entries(TEST_KEYS))]]),
        nodeLabels: {},
        resolveDevice: () => undefined,
      },
      kernel,
      ledger,
    );
    expect(result.reports).toEqual([expect.objectContaining({ name: 'out', state: 'Failed', reason: 'KernelDidNotKeep' })]);
    expect(result.converged).toBe(false);
    expect(kernel.log).toEqual(['add-state']);
  });

  it('keeps the resource set aside on later passes until it changes (the agent does not replace it on every resync)', async () => {
    const kernel = new DroppingKernel(undefined, withoutDirection);
    const notKeptMemory = new Map<string, { generation: number; message: string }>();
    const inputsAt = (generation: number) => ({
      resources: [{ apiVersion: 'ipsec.xfrm.io/v1alpha1' as const, kind: 'SecurityAssociation' as const, metadata: { name: 'out', generation }, spec: saSpec({ direction: 'out' }) }],
      secrets: new Map([['keys', new Map(Object.entries(TEST_KEYS))]]),
      nodeLabels: {},
      resolveDevice: () => undefined,
      notKept: notKeptMemory,
    });
    await reconcileNode(inputsAt(1), kernel, ledger);
    expect(kernel.log).toEqual(['add-state']);
    expect([...notKeptMemory.keys()]).toEqual(['SecurityAssociation/out']);
    for (let pass = 0; pass < 3; pass++) {
      const again = await reconcileNode(inputsAt(1), kernel, ledger);
      expect(again.reports).toEqual([expect.objectContaining({ name: 'out', state: 'Failed', reason: 'KernelDidNotKeep', entries: 1 })]);
    }
    expect(kernel.log).toEqual(['add-state']); // neither replaced nor pruned on the resyncs
    const changed = await reconcileNode(inputsAt(2), kernel, ledger); // a new generation is tried again, once
    expect(changed.reports[0]).toMatchObject({ reason: 'KernelDidNotKeep' });
    expect(kernel.log).toEqual(['add-state', 'delete-state', 'add-state']);
    expect(notKeptMemory.get('SecurityAssociation/out')?.generation).toBe(2);
  });

  it('finds nothing when the kernel kept what it was sent, and matches entries by target and key', () => {
    const create = { op: 'create', target: 'state', key: 'k', resource: 'r', stage: 1, entry: plain } as const;
    const replace = { op: 'replace', target: 'state', key: 'k', resource: 'r', stage: 1, entry: plain, previous: plain, changes: ['direction'] } as const;
    expect(notKept([create], { steps: [], conflicts: [] } as never)).toEqual([]);
    expect(notKept([{ ...create, key: 'other' }], { steps: [replace], conflicts: [] } as never)).toEqual([]);
    expect(notKept([{ ...create, target: 'policy' } as never], { steps: [replace], conflicts: [] } as never)).toEqual([]);
    expect(notKept([create], { steps: [replace], conflicts: [] } as never).map((entry) => entry.fields)).toEqual([['direction']]);
  });
});

describe('the SA-direction probe', () => {
  it('is a GETSA of SPI 0 carrying direction 0 (outside 1..2), byte for byte', () => {
    const request = stateDirectionProbeRequest();
    expect(request.type).toBe(0x12); // XFRM_MSG_GETSA
    expect(request.flags).toBe(0);
    const expected = Buffer.alloc(24 + 8);
    expected.writeUInt16LE(2, 20); // xfrm_usersa_id.family AF_INET (daddr 0, spi 0)
    expected.writeUInt8(50, 22); // proto esp
    expected.writeUInt16LE(5, 24); // nla_len: header + u8
    expected.writeUInt16LE(33, 26); // XFRMA_SA_DIR, value 0, padding
    expect(request.body.toString('hex')).toBe(expected.toString('hex'));
  });

  it.each([
    ['ERANGE (6.10+: out of range)', 34, true],
    ['EINVAL (6.10+: refused while parsing)', 22, true],
    ['ESRCH (older: attribute skipped, no such SA)', 3, false],
  ])('reads %s', async (_, errno, kept) => {
    const transport = new ScriptedTransport((request) => [[{ type: 2, sequence: request.sequence, payload: ackPayload(request, errno), flags: 0x100 }]]);
    const client = new XfrmClient(transport);
    try {
      expect(await client.keepsStateDirection()).toBe(kept);
    } finally {
      client.close();
    }
  });

  it('rejects an answer that says neither (EPERM), naming the probe', async () => {
    const transport = new ScriptedTransport((request) => [[{ type: 2, sequence: request.sequence, payload: ackPayload(request, 1), flags: 0x100 }]]);
    const client = new XfrmClient(transport);
    try {
      await expect(client.keepsStateDirection()).rejects.toThrow(/probe of XFRMA_SA_DIR: EPERM/);
    } finally {
      client.close();
    }
  });
});

describe('the controller passes the node reasons through to the resource', () => {
  const resource = { apiVersion: 'ipsec.xfrm.io/v1alpha1' as const, kind: 'SecurityAssociation' as const, metadata: { name: 'out', generation: 1 }, spec: saSpec({ direction: 'out' }) };
  const viewWith = (reason: string, message: string): ClusterView => ({
    resources: [resource],
    nodes: new Map([['a', {}]]),
    secrets: new Map([['keys', new Map(Object.entries(TEST_KEYS))]]),
    reports: new Map([['a', { node: 'a', standing: { format: 'digest', applied: appliedSetDigest([]), unlisted: 0, reports: [{ kind: 'SecurityAssociation', name: 'out', generation: 1, state: 'Failed', reason, message, entries: 0 }] } }]]),
  });
  it.each([
    ['KernelUnsupported', 'spec.direction: kernel 6.1.0-57-amd64 does not keep spec.direction', 'KernelUnsupported'],
    ['KernelDidNotKeep', 'SecurityAssociation/out: the kernel did not keep direction of sa esp spi 0x00000100', 'KernelDidNotKeep'],
    ['Conflict', 'taken', 'Conflict'],
    ['KernelRejected', 'Requested AEAD algorithm not found (EINVAL)', 'KernelRejected'],
    ['SomethingElse', 'any other failure', 'KernelRejected'],
  ])('%s on a node', (reported, message, expected) => {
    const view = viewWith(reported, message);
    expect(judge(resource, viewFacts(view))).toMatchObject({ ready: false, reason: expected, message: `a: ${message}` });
  });
});
