import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { converge, MAX_READ_IDENTITIES } from '../../src/engine/converge.js';
import { Ledger, LedgerError, journalPath } from '../../src/ownership/ledger.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import type { DesiredTables } from '../../src/plan/planner.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { policy, sa, TEST_KEYS } from '../support/entries.js';
import type { SecurityAssociation } from '../../src/xfrm/types.js';

const stateKeys = (kernel: FakeKernel) => kernel.states.map((entry) => stateKey(entry.id));
const policyKeys = (kernel: FakeKernel) => kernel.policies.map((entry) => policyKey(entry.id));
const stateFor = (kernel: FakeKernel, entry: SecurityAssociation) => kernel.states.find((held) => stateKey(held.id) === stateKey(entry.id));

let directory: string;
let ledger: Ledger;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ipsecop-ledger-'));
  ledger = await Ledger.open(join(directory, 'ledger.json'));
});
afterEach(async () => {
  await ledger.close();
  await rm(directory, { recursive: true, force: true });
});

const outbound = sa();
const desired = (overrides: Partial<DesiredTables> = {}): DesiredTables => ({
  states: [
    { resource: 'SecurityAssociation/in', entry: sa({ source: '10.0.0.2', destination: '10.0.0.1', spi: 0x200, reqid: 2 }) },
    { resource: 'SecurityAssociation/out', entry: outbound },
  ],
  policies: [
    { resource: 'IpsecPolicy/in', entry: policy({ direction: 'in', selector: { source: '10.0.0.2/32', destination: '10.0.0.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] }) },
    { resource: 'IpsecPolicy/out', entry: policy() },
  ],
  ...overrides,
});

describe('converge (applier + ledger) against a fake kernel', () => {
  it('applies in make-before-break order, records ownership, and is idempotent', async () => {
    const kernel = new FakeKernel();
    const first = await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    expect(first.outcome).toBe('applied');
    expect(kernel.log).toEqual(['add-state', 'add-policy', 'add-state', 'add-policy']);
    expect([...ledger.records().values()].map((record) => record.phase)).toEqual(['present', 'present', 'present', 'present']);
    if (first.outcome === 'applied') expect(first.remaining.steps).toEqual([]);
    kernel.log.length = 0;
    const second = await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    expect(second.plan.steps).toEqual([]);
    expect(kernel.log).toEqual([]);
  });

  it('rolls everything back when the kernel refuses one entry: nothing is half-applied', async () => {
    const foreign = sa({ spi: 0x999, destination: '192.168.0.1', source: '192.168.0.2' });
    const kernel = new FakeKernel({ states: [foreign] });
    const refused = outbound;
    kernel.refuse = (entry) => entry === refused;
    const result = await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    expect(result.outcome).toBe('failed');
    if (result.outcome !== 'failed') return;
    expect(result.report.failures).toHaveLength(1);
    expect(result.report.failures[0]).toMatchObject({ code: 'EINVAL', message: 'Requested AEAD algorithm not found' });
    expect(result.report.rolledBack).toHaveLength(2); // the inbound SA and policy created before
    expect(stateKeys(kernel)).toEqual([stateKey(foreign.id)]);
    expect(kernel.policies.length).toBe(0);
    expect(ledger.records().size).toBe(0);
  });

  it('restores the previous SA when the replacement is refused', async () => {
    const kernel = new FakeKernel();
    await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    const rekeyed = sa({ aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'gcm128b' } } });
    kernel.refuse = (entry) => entry === rekeyed;
    const result = await converge(kernel, ledger, { desired: desired({ states: [desired().states[0]!, { resource: 'SecurityAssociation/out', entry: rekeyed }] }), prune: true, dryRun: false });
    expect(result.outcome).toBe('failed');
    const kept = stateFor(kernel, rekeyed)!;
    expect(kept.algorithms.kind === 'aead' && kept.algorithms.aead.key.reveal().equals(TEST_KEYS.gcm128!)).toBe(true);
    expect(ledger.records().get(stateKey(rekeyed.id))?.phase).toBe('present');
  });

  it('without prune keeps owned entries that are no longer desired; with prune deletes them and only them', async () => {
    const foreignPolicy = policy({ selector: { source: '172.16.0.0/12', destination: '172.16.0.0/12' } });
    const kernel = new FakeKernel({ policies: [foreignPolicy] });
    await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    const kept = await converge(kernel, ledger, { desired: { states: [], policies: [] }, prune: false, dryRun: false });
    expect(kept.plan.steps).toEqual([]);
    expect(kernel.states.length).toBe(2);
    const pruned = await converge(kernel, ledger, { desired: { states: [], policies: [] }, prune: true, dryRun: false });
    expect(pruned.plan.steps.map((step) => `${step.op} ${step.target}`)).toEqual(['delete policy', 'delete state', 'delete policy', 'delete state']);
    expect(kernel.states.length).toBe(0);
    expect(policyKeys(kernel)).toEqual([policyKey(foreignPolicy.id)]);
    expect(ledger.records().size).toBe(0);
  });

  it('refuses to apply anything when a desired entry collides with a foreign one', async () => {
    const foreign = sa({ reqid: 42 });
    const kernel = new FakeKernel({ states: [foreign] });
    const result = await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    expect(result.outcome).toBe('conflict');
    expect(kernel.log).toEqual([]);
    expect(stateFor(kernel, foreign)).toMatchObject({ reqid: 42 });
  });

  it('recovers after a crash between the intent record and the kernel change', async () => {
    const kernel = new FakeKernel();
    const crashing = {
      dump: () => kernel.dump(),
      apply: async () => {
        throw new Error('killed');
      },
    };
    // An answer that never came: the run stops, and its intents stay until a dump settles them.
    const stopped = await converge(crashing, ledger, { desired: desired(), prune: true, dryRun: false });
    expect(stopped).toMatchObject({ outcome: 'failed', report: { stopped: expect.stringMatching(/unknown \(killed\)/) } });
    expect([...ledger.records().values()].every((record) => record.phase === 'creating')).toBe(true);
    await ledger.close();
    ledger = await Ledger.open(join(directory, 'ledger.json'));
    const result = await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    expect(result.outcome).toBe('applied');
    expect(kernel.states.length).toBe(2);
    expect([...ledger.records().values()].every((record) => record.phase === 'present')).toBe(true);
  });
});

describe('the verifying pass of a small plan reads what it changed instead of dumping', () => {
  const many = (count: number, priorityOf: (i: number) => number = () => 100): DesiredTables => ({
    states: [],
    policies: Array.from({ length: count }, (_, i) => ({
      resource: `IpsecPolicy/p${i}`,
      entry: policy({ priority: priorityOf(i), selector: { source: `10.1.${i >> 8}.${i & 255}/32`, destination: '10.0.0.2/32' } }),
    })),
  });
  const applyAll = async (kernel: FakeKernel, tables: DesiredTables) => {
    const result = await converge(kernel, ledger, { desired: tables, prune: true, dryRun: false });
    expect(result.outcome).toBe('applied');
    kernel.dumps = 0;
    kernel.reads = 0;
    return result;
  };

  it('one created among many: one dump, one read, the intent settled to the index the kernel gave', async () => {
    const kernel = new FakeKernel();
    await applyAll(kernel, many(40));
    const result = await converge(kernel, ledger, { desired: many(41), prune: true, dryRun: false });
    expect(result.outcome).toBe('applied');
    expect({ dumps: kernel.dumps, reads: kernel.reads }).toEqual({ dumps: 1, reads: 1 });
    if (result.outcome === 'applied') expect(result.remaining.steps).toEqual([]);
    const added = many(41).policies[40]!.entry;
    const record = ledger.records().get(policyKey(added.id));
    const held = kernel.policies.find((entry) => policyKey(entry.id) === policyKey(added.id))!;
    expect(record).toEqual({ key: policyKey(added.id), target: 'policy', resource: 'IpsecPolicy/p40', phase: 'present', incarnation: { target: 'policy', index: held.index } });
    // The other 40 records are untouched, and the next pass plans nothing.
    expect(ledger.records().size).toBe(41);
    const again = await converge(kernel, ledger, { desired: many(41), prune: true, dryRun: false });
    expect(again.plan.steps).toEqual([]);
  });

  it('one deleted among many: the read finds nothing and the record is removed', async () => {
    const kernel = new FakeKernel();
    await applyAll(kernel, many(40));
    const result = await converge(kernel, ledger, { desired: many(39), prune: true, dryRun: false });
    expect(result.outcome).toBe('applied');
    expect({ dumps: kernel.dumps, reads: kernel.reads }).toEqual({ dumps: 1, reads: 1 });
    expect(kernel.policies).toHaveLength(39);
    expect(ledger.records().size).toBe(39);
    expect(ledger.records().has(policyKey(many(40).policies[39]!.entry.id))).toBe(false);
  });

  it('what the read shows counts: a change the kernel did not keep is reported', async () => {
    const kernel = new FakeKernel();
    await applyAll(kernel, many(40));
    const changed = many(40, (i) => (i === 7 ? 300 : 100));
    // Between our UPDPOLICY and the read, the entry goes back to its old priority (as a kernel
    // that dropped the field would show it).
    const dropping = Object.assign(Object.create(kernel) as FakeKernel, {
      apply: async (changes: Parameters<FakeKernel['apply']>[0]) => {
        const outcomes = await kernel.apply(changes);
        kernel.foreign({ op: 'update-policy', policy: many(40).policies[7]!.entry });
        return outcomes;
      },
      dump: () => kernel.dump(),
      read: (ids: Parameters<FakeKernel['read']>[0]) => kernel.read(ids),
    });
    const result = await converge(dropping, ledger, { desired: changed, prune: true, dryRun: false });
    expect(kernel.reads).toBe(1);
    expect(result.outcome).toBe('not-kept');
    if (result.outcome !== 'not-kept') return;
    expect(result.notKept.map((entry) => entry.resource)).toEqual(['IpsecPolicy/p7']);
    expect(result.notKept[0]!.fields).toEqual(['priority']);
  });

  it('a failed read falls back to a dump', async () => {
    const kernel = new FakeKernel();
    await applyAll(kernel, many(40));
    kernel.failReads = new Error('XFRM_MSG_GETPOLICY: no answer');
    const result = await converge(kernel, ledger, { desired: many(41), prune: true, dryRun: false });
    expect(result.outcome).toBe('applied');
    expect({ dumps: kernel.dumps, reads: kernel.reads }).toEqual({ dumps: 2, reads: 0 });
    expect([...ledger.records().values()].every((record) => record.phase === 'present')).toBe(true);
  });

  it('a plan that touches a large share of the table, or many identities, is verified by a dump', async () => {
    const kernel = new FakeKernel();
    await applyAll(kernel, many(4));
    await converge(kernel, ledger, { desired: many(5), prune: true, dryRun: false });
    expect({ dumps: kernel.dumps, reads: kernel.reads }).toEqual({ dumps: 2, reads: 0 }); // 1 of 4 held
    kernel.dumps = 0;
    const count = MAX_READ_IDENTITIES * 10;
    await applyAll(kernel, many(count));
    await converge(kernel, ledger, { desired: many(count, () => 200), prune: true, dryRun: false });
    expect({ dumps: kernel.dumps, reads: kernel.reads }).toEqual({ dumps: 2, reads: 0 });
  });
});

describe('ledger file', () => {
  it('is locked against a second writer and never holds key material', async () => {
    await expect(Ledger.open(join(directory, 'ledger.json'), { lockWaitMs: 100 })).rejects.toThrow(LedgerError);
    const kernel = new FakeKernel();
    await converge(kernel, ledger, { desired: desired(), prune: true, dryRun: false });
    const text = (await readFile(join(directory, 'ledger.json'), 'utf8')) + (await readFile(journalPath(join(directory, 'ledger.json')), 'utf8'));
    for (const key of Object.values(TEST_KEYS)) {
      expect(text).not.toContain(key.toString('hex'));
      expect(text).not.toContain(key.toString('base64'));
    }
    expect(JSON.parse(text.split('\n')[0]!)).toMatchObject({ formatVersion: 3 });
  });

  it('refuses a ledger of another format version with a clear error', async () => {
    const path = join(directory, 'other.json');
    await writeFile(path, JSON.stringify({ formatVersion: 99, salt: 'x', records: [] }));
    await expect(Ledger.open(path)).rejects.toThrow(LedgerError);
    await expect(Ledger.open(path)).rejects.toThrow(/format version 99/);
  });
});
