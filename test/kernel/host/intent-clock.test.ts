/**
 * The kernel stamps an entry's add time with its coarse clock (the timekeeper's second as of its
 * last tick), while an intent's second comes from the wall clock itself: right after a second
 * turns, an entry added by the engine can carry the second before its own intent. The ledger
 * must still recognise it as ours (src/ownership/settle.ts INTENT_CLOCK_SLACK_SECONDS); before
 * that slack, such an entry was settled as foreign and reported as `Conflict` ("not created by
 * ipsec-operator") — seen in the test VM under load, and 8-10 times in 10 here on an idle host
 * when the add follows the turn of the second within a tick.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { converge } from '../../../src/engine/converge.js';
import { openKernelTables, type OpenKernelTables } from '../../../src/engine/kernel.js';
import { Ledger } from '../../../src/ownership/ledger.js';
import type { DesiredTables } from '../../../src/plan/planner.js';
import { policy } from '../../support/entries.js';
import { createNetns, type TestNetns } from './netns.js';

let netns: TestNetns;
let kernel: OpenKernelTables;
let ledger: Ledger;
let directory: string;

beforeAll(async () => {
  netns = createNetns();
  directory = mkdtempSync(join(tmpdir(), 'ipsecop-intent-clock-'));
  kernel = await openKernelTables(netns.name);
  ledger = await Ledger.open(join(directory, 'ledger.json'), { scope: kernel.scope });
});
afterAll(async () => {
  await ledger?.close();
  kernel?.close();
  netns?.remove();
  rmSync(directory, { recursive: true, force: true });
});

const source = (i: number) => `10.7.${i >> 8}.${i & 0xff}`;
const desired = (count: number): DesiredTables => ({
  states: [],
  policies: Array.from({ length: count }, (_, i) => ({ resource: `IpsecPolicy/p${i}`, entry: policy({ selector: { source: `${source(i)}/32`, destination: '10.0.0.2/32' } }) })),
});
const wallSecond = () => Math.floor(Date.now() / 1000);
/** Busy-waits until the wall clock's second turns (a timer would overshoot by more than a tick). */
const untilSecondTurns = () => {
  const start = wallSecond();
  while (wallSecond() === start) {
    /* spin */
  }
};
const addTimes = () => [...netns.ip('-s', 'xfrm', 'policy', 'list').matchAll(/add (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)/g)].map((match) => Date.parse(`${match[1]}Z`) / 1000);

describe("intents and the kernel's coarse add time (host kernel)", () => {
  it('an entry added one second before its intent by the coarse clock is settled as ours', async () => {
    // What an add right after the turn of a second looks like to the ledger: the intent written
    // in second s + 1, the kernel's stamp s.
    const ahead = () => wallSecond() + 1;
    const first = await converge(kernel, ledger, { desired: desired(20), prune: true, dryRun: false, now: ahead });
    expect(first.outcome).toBe('applied');
    expect(first.plan.conflicts).toEqual([]);
    const again = await converge(kernel, ledger, { desired: desired(20), prune: true, dryRun: false, now: ahead });
    expect(again.plan.conflicts).toEqual([]);
    expect(again.plan.steps).toEqual([]);
    expect([...ledger.records().values()].map((record) => record.phase)).toEqual(Array(20).fill('present'));
    // Still ours: pruning them removes them.
    expect((await converge(kernel, ledger, { desired: { states: [], policies: [] }, prune: true, dryRun: false })).outcome).toBe('applied');
    expect(netns.ip('xfrm', 'policy', 'list').trim()).toBe('');
  });

  it('entries the engine adds right after the second turns stay ours, with the real clocks', async () => {
    let stampedBefore = 0;
    for (let round = 1; round <= 10; round += 1) {
      untilSecondTurns();
      const intentSecond = wallSecond();
      const applied = await converge(kernel, ledger, { desired: desired(round), prune: true, dryRun: false });
      expect(applied.plan.conflicts, `round ${round}`).toEqual([]);
      if (Math.min(...addTimes()) < intentSecond && addTimes().length === round) stampedBefore += 1;
      const again = await converge(kernel, ledger, { desired: desired(round), prune: true, dryRun: false });
      expect(again.plan.conflicts, `round ${round}: own entries reported as foreign`).toEqual([]);
      expect(again.plan.steps, `round ${round}`).toEqual([]);
    }
    // How often the kernel's stamp really lagged the intent's second (printed, not asserted: it
    // depends on the tick and the machine's load).
    console.log(`rounds whose new policy the kernel stamped with the second before its intent: ${stampedBefore} of 10`);
  });
});
