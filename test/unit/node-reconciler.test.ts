import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reconcileNode, type NodeInputs } from '../../src/agent/node-reconciler.js';
import type { IpsecPolicySpec, SecurityAssociationSpec, IpsecResource } from '../../src/crd/types.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { stateKey } from '../../src/plan/identity.js';
import { CEILING_RATE, retiredUsage } from '../../src/engine/sequence-rule.js';
import { policySpec, saSpec, TEST_KEYS } from '../support/entries.js';
import { desiredTables } from '../../src/model/desired.js';
import type { DesiredTables } from '../../src/plan/planner.js';

let directory: string;
let ledger: Ledger;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ipsecop-node-'));
  ledger = await Ledger.open(join(directory, 'ledger.json'));
});
afterEach(async () => {
  await ledger.close();
  await rm(directory, { recursive: true, force: true });
});

let clock = 0;
function saResource(name: string, spec: Partial<SecurityAssociationSpec>, extra: Partial<IpsecResource['metadata']> = {}) {
  return { apiVersion: 'ipsec.xfrm.io/v1alpha1' as const, kind: 'SecurityAssociation' as const, metadata: { name, generation: 1, creationTimestamp: `2026-01-01T00:00:${String(clock++).padStart(2, '0')}Z`, ...extra }, spec: saSpec(spec) };
}
function policyResource(name: string, spec: Partial<IpsecPolicySpec>) {
  return { apiVersion: 'ipsec.xfrm.io/v1alpha1' as const, kind: 'IpsecPolicy' as const, metadata: { name, generation: 1, creationTimestamp: `2026-01-01T00:00:${String(clock++).padStart(2, '0')}Z` }, spec: policySpec(spec) };
}

const secrets = new Map([['keys', new Map(Object.entries(TEST_KEYS))]]);
const inputs = (resources: NodeInputs['resources'], labels: Record<string, string> = { role: 'a' }): NodeInputs => ({
  resources,
  secrets,
  nodeLabels: labels,
  resolveDevice: () => undefined,
});

describe('reconcileNode', () => {
  it('applies what it can and sets aside each bad resource with its reason', async () => {
    const kernel = new FakeKernel();
    const good = saResource('good', { spi: 0x100 });
    const older = saResource('older', { spi: 0x200 });
    const younger = saResource('younger', { spi: 0x200, reqid: 9 }); // same identity as older
    const missing = saResource('missing', { spi: 0x300, aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'nope', key: 'k' } } });
    const refused = saResource('refused', { spi: 0x400 });
    const elsewhere = saResource('elsewhere', { spi: 0x500, nodeSelector: { matchLabels: { role: 'b' } } });
    const pol = policyResource('out', {});
    kernel.refuse = (entry) => 'id' in entry && 'spi' in entry.id && entry.id.spi === 0x400;
    const result = await reconcileNode(inputs([good, older, younger, missing, refused, elsewhere, pol]), kernel, ledger);
    const byName = Object.fromEntries(result.reports.map((report) => [report.name, report]));
    expect(byName['good']).toMatchObject({ state: 'Applied', entries: 1 });
    expect(byName['older']).toMatchObject({ state: 'Applied', entries: 1 });
    expect(byName['out']).toMatchObject({ state: 'Applied', entries: 1 });
    expect(byName['younger']).toMatchObject({ state: 'Failed', reason: 'Conflict' });
    expect(byName['missing']).toMatchObject({ state: 'Failed', reason: 'MissingSecret' });
    expect(byName['missing']!.message).toMatch(/Secret "nope" not found/);
    expect(byName['refused']).toMatchObject({ state: 'Failed', reason: 'KernelRejected' });
    expect(byName['refused']!.message).toMatch(/Requested AEAD algorithm not found \(EINVAL\)/);
    expect(byName['elsewhere']).toBeUndefined();
    expect(kernel.states.length).toBe(2);
    expect(result.converged).toBe(true);
  });

  it('keeps the entries of a resource whose Secret went missing, and removes those of a deleted resource', async () => {
    const kernel = new FakeKernel();
    const a = saResource('a', { spi: 0x100 });
    const b = saResource('b', { spi: 0x101 });
    await reconcileNode(inputs([a, b]), kernel, ledger);
    expect(kernel.states.length).toBe(2);
    const aWithoutKey = { ...a, spec: { ...a.spec, aead: { ...a.spec.aead!, keyRef: { name: 'gone', key: 'k' } } } };
    const bDeleting = { ...b, metadata: { ...b.metadata, deletionTimestamp: '2026-01-02T00:00:00Z' } };
    const result = await reconcileNode(inputs([aWithoutKey, bDeleting]), kernel, ledger);
    expect(kernel.states.length).toBe(1);
    expect(result.reports.find((report) => report.name === 'a')).toMatchObject({ state: 'Failed', reason: 'MissingSecret', entries: 1 });
    expect(result.reports.find((report) => report.name === 'b')).toMatchObject({ state: 'Removed', entries: 0 });
  });

  it('removes entries of resources the node no longer selects', async () => {
    const kernel = new FakeKernel();
    const a = saResource('a', { spi: 0x100, nodeSelector: { matchLabels: { role: 'a' } } });
    await reconcileNode(inputs([a]), kernel, ledger);
    expect(kernel.states.length).toBe(1);
    const result = await reconcileNode(inputs([a], { role: 'other' }), kernel, ledger);
    expect(kernel.states.length).toBe(0);
    expect(result.reports).toEqual([]);
  });
});

describe('restoring an owned SA that vanished', () => {
  it('resumes past the persisted mark of its key, proven by reading it back', async () => {
    const kernel = new FakeKernel();
    const a = saResource('resume', { spi: 0x100, replayWindow: 32 });
    await reconcileNode(inputs([a]), kernel, ledger);
    const [held] = kernel.states;
    kernel.send(held!.id, 40);
    expect(kernel.foreign({ op: 'delete-state', id: held!.id })).toEqual({ ok: true }); // a hand flush
    const result = await reconcileNode(inputs([a]), kernel, ledger);
    expect(result.applied.map((step) => step.op)).toEqual(['create']);
    expect(result.reports[0]).toMatchObject({ state: 'Applied' });
    // No rate measured yet: the margin is the rate ceiling for at least a second.
    expect(kernel.states[0]?.observed?.replayState?.outboundSequence).toBeGreaterThanOrEqual(CEILING_RATE); // far above the 40 sent since the mark (0) was taken
    void stateKey;
  });

  it('deletes the SA again and reports NeedsRekey when the kernel does not take the resume value, and keeps it out', async () => {
    const kernel = new FakeKernel();
    const a = saResource('ignored', { spi: 0x100, replayWindow: 32 });
    await reconcileNode(inputs([a]), kernel, ledger);
    kernel.foreign({ op: 'delete-state', id: kernel.states[0]!.id });
    kernel.ignoreResume = true;
    const result = await reconcileNode(inputs([a]), kernel, ledger);
    expect(result.reports[0]).toMatchObject({ state: 'Failed', reason: 'NeedsRekey' });
    expect(result.reports[0]!.message).toMatch(/did not take the resume value .*deleted again.*new SPI and a new key/);
    expect(kernel.states).toEqual([]);
    const again = await reconcileNode(inputs([a]), kernel, ledger);
    expect(again.reports[0]).toMatchObject({ state: 'Failed', reason: 'NeedsRekey' });
    expect(kernel.log.filter((op) => op === 'add-state')).toHaveLength(2); // the first install and the one attempt
  });

  it('never installs a key again after its hard expiry (Expired), and a new key is installed', async () => {
    const kernel = new FakeKernel();
    const a = saResource('expiring', { spi: 0x100 });
    await reconcileNode(inputs([a]), kernel, ledger);
    const [held] = kernel.states;
    const key = ledger.usageKey(held!);
    await ledger.commit({ usage: [retiredUsage(key, ledger.usage(key), 'expired', 'the kernel removed this key at its hard lifetime', 1)] });
    kernel.foreign({ op: 'delete-state', id: held!.id }); // the kernel's hard expiry
    const result = await reconcileNode(inputs([a]), kernel, ledger);
    expect(result.reports[0]).toMatchObject({ state: 'Failed', reason: 'Expired' });
    expect(kernel.states).toEqual([]);
    const rekeyed = await reconcileNode(inputs([saResource('expiring', { spi: 0x101 })]), kernel, ledger);
    expect(rekeyed.reports[0]).toMatchObject({ state: 'Applied' });
    expect(kernel.states).toHaveLength(1);
  });

  describe('entries that are not built from resources (an IpsecMesh)', () => {
    // Entries as the mesh worker hands them over: under the resource IpsecMesh/<name>.
    const meshEntries = (spi: number): DesiredTables => {
      const built = desiredTables({ securityAssociations: [{ resource: saResource('m', { spi }), source: undefined }], policies: [], secrets }, { labels: undefined, resolveDevice: () => undefined });
      return { states: built.tables.states.map((entry) => ({ ...entry, resource: 'IpsecMesh/m' })), policies: [] };
    };
    const none = new Set<string>();

    it('are applied beside the resources, recorded under their own resource, and pruned once not desired', async () => {
      const kernel = new FakeKernel();
      const hand = saResource('hand', { spi: 0x100 });
      const first = await reconcileNode({ ...inputs([hand]), extra: { desired: meshEntries(0x900), protect: none } }, kernel, ledger);
      expect(first.converged).toBe(true);
      expect(kernel.states.map((sa) => sa.id.spi).sort((a, b) => a - b)).toEqual([0x100, 0x900]);
      expect(ledger.records().get(stateKey(kernel.states.find((sa) => sa.id.spi === 0x900)!.id))?.resource).toBe('IpsecMesh/m');
      // No report for them among the resources' (the mesh reports in status.meshes[]).
      expect(first.reports.map((report) => report.name)).toEqual(['hand']);
      const again = await reconcileNode({ ...inputs([hand]), extra: { desired: meshEntries(0x900), protect: none } }, kernel, ledger);
      expect(again.changes).toBe(0);
      await reconcileNode({ ...inputs([hand]), extra: { desired: { states: [], policies: [] }, protect: none } }, kernel, ledger);
      expect(kernel.states.map((sa) => sa.id.spi)).toEqual([0x100]);
    });

    it('are kept as they are while protected (the mesh caches have not synced), and the usage history is then incomplete', async () => {
      const kernel = new FakeKernel();
      await reconcileNode({ ...inputs([]), extra: { desired: meshEntries(0x900), protect: none } }, kernel, ledger);
      const kept = await reconcileNode({ ...inputs([]), extra: { desired: { states: [], policies: [] }, protect: new Set(['IpsecMesh/m']) } }, kernel, ledger);
      expect(kernel.states.map((sa) => sa.id.spi)).toEqual([0x900]);
      expect(kept.desiredKeys.complete).toBe(false);
    });

    it('name their resource when the kernel refuses one of them, and the rest is applied', async () => {
      const kernel = new FakeKernel();
      kernel.refuse = (entry) => 'id' in entry && 'spi' in entry.id && entry.id.spi === 0x900;
      const result = await reconcileNode({ ...inputs([saResource('hand', { spi: 0x100 })]), extra: { desired: meshEntries(0x900), protect: none } }, kernel, ledger);
      expect(result.setAside.get('IpsecMesh/m')).toMatchObject({ reason: 'KernelRejected' });
      expect(kernel.states.map((sa) => sa.id.spi)).toEqual([0x100]);
    });
  });
});
