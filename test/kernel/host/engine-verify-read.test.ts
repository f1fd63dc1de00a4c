/**
 * The engine's verifying pass after a small plan reads back the identities it changed
 * (XFRM_MSG_GETPOLICY) instead of dumping every table again (src/engine/converge.ts
 * verifyingPlan). Against the host kernel: the reads see what the kernel holds, the ledger
 * settles to the indices the kernel gave, and iproute2 agrees.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { converge, type KernelTables } from '../../../src/engine/converge.js';
import { openKernelTables, type OpenKernelTables } from '../../../src/engine/kernel.js';
import { Ledger } from '../../../src/ownership/ledger.js';
import { policyKey } from '../../../src/plan/identity.js';
import type { DesiredTables } from '../../../src/plan/planner.js';
import { policy } from '../../support/entries.js';
import { createNetns, type TestNetns } from './netns.js';

const COUNT = 40;
const selectorOf = (i: number) => ({ source: `10.1.0.${i}/32`, destination: '10.0.0.2/32' });
const tables = (count: number, priorityOf: (i: number) => number = () => 100): DesiredTables => ({
  states: [],
  policies: Array.from({ length: count }, (_, i) => ({ resource: `IpsecPolicy/p${i}`, entry: policy({ priority: priorityOf(i), selector: selectorOf(i) }) })),
});

let netns: TestNetns;
let kernel: OpenKernelTables;
let ledger: Ledger;
let directory: string;
const counts = { dumps: 0, reads: 0 };
/** The real tables, counting dumps and identities read. */
let counted: KernelTables;

beforeAll(async () => {
  netns = createNetns();
  directory = mkdtempSync(join(tmpdir(), 'ipsecop-verify-read-'));
  kernel = await openKernelTables(netns.name);
  ledger = await Ledger.open(join(directory, 'ledger.json'), { scope: kernel.scope });
  counted = {
    features: kernel.features,
    dump: async () => {
      counts.dumps += 1;
      return kernel.dump();
    },
    read: async (ids) => {
      counts.reads += ids.states.length + ids.policies.length;
      return kernel.read!(ids);
    },
    apply: (changes) => kernel.apply(changes),
  };
});
afterAll(async () => {
  await ledger?.close();
  kernel?.close();
  netns?.remove();
  rmSync(directory, { recursive: true, force: true });
});

const run = async (desired: DesiredTables) => {
  counts.dumps = 0;
  counts.reads = 0;
  return converge(counted, ledger, { desired, prune: true, dryRun: false });
};
const indexInKernel = (i: number): number => {
  const text = netns.ip('-s', 'xfrm', 'policy', 'get', 'src', selectorOf(i).source, 'dst', selectorOf(i).destination, 'dir', 'out');
  return Number(/index (\d+)/.exec(text)![1]);
};

describe('verifying a small plan by reading what it changed (host kernel)', () => {
  it('read returns what the kernel holds for an identity, and nothing for one it does not hold', async () => {
    expect((await run(tables(COUNT))).outcome).toBe('applied');
    expect(counts).toEqual({ dumps: 2, reads: 0 }); // 40 creations: a dump verifies them
    const held = tables(COUNT).policies[3]!.entry;
    const absent = policy({ selector: { source: '10.9.9.9/32', destination: '10.0.0.2/32' } });
    const read = await kernel.read!({ states: [], policies: [held.id, absent.id] });
    expect(read.states).toEqual([]);
    expect(read.policies.map((entry) => policyKey(entry.id))).toEqual([policyKey(held.id)]);
    expect(read.policies[0]!.index).toBe(indexInKernel(3));
  });

  it('one changed priority: one dump, one read, the kernel holds the change', async () => {
    const result = await run(tables(COUNT, (i) => (i === 7 ? 300 : 100)));
    expect(result.outcome).toBe('applied');
    if (result.outcome === 'applied') expect(result.remaining.steps).toEqual([]);
    expect(counts).toEqual({ dumps: 1, reads: 1 });
    expect(netns.ip('xfrm', 'policy', 'get', 'src', selectorOf(7).source, 'dst', selectorOf(7).destination, 'dir', 'out')).toMatch(/priority 300 /);
  });

  it('one created: the record settles to the index the kernel gave it', async () => {
    const result = await run(tables(COUNT + 1, (i) => (i === 7 ? 300 : 100)));
    expect(result.outcome).toBe('applied');
    expect(counts).toEqual({ dumps: 1, reads: 1 });
    const added = tables(COUNT + 1).policies[COUNT]!.entry;
    expect(ledger.records().get(policyKey(added.id))).toMatchObject({ phase: 'present', incarnation: { target: 'policy', index: indexInKernel(COUNT) } });
  });

  it('one deleted: the read finds nothing, the record is removed, the next pass plans nothing', async () => {
    const result = await run(tables(COUNT, (i) => (i === 7 ? 300 : 100)));
    expect(result.outcome).toBe('applied');
    expect(counts).toEqual({ dumps: 1, reads: 1 });
    expect(netns.ip('xfrm', 'policy', 'count')).toMatch(/OUT 40 /);
    expect(ledger.records().size).toBe(COUNT);
    const again = await run(tables(COUNT, (i) => (i === 7 ? 300 : 100)));
    expect(again.plan.steps).toEqual([]);
    expect(counts).toEqual({ dumps: 1, reads: 0 });
  });
});
