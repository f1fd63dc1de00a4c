/**
 * The usage history's retention (src/ownership/retention.ts) and the ledger's `forget`: a key
 * goes only after it has been unused (by every desired SA and every kernel SA) for the whole
 * retention without a break, its last mark is that old too, and every resource was built; a key
 * still in a desired resource is kept whatever its state. Forgetting is durable (journal and
 * snapshot) and read back.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { UsageRetention, USAGE_RETENTION_SECONDS } from '../../src/ownership/retention.js';
import { journalPath, Ledger } from '../../src/ownership/ledger.js';
import type { KeyUsage } from '../../src/ownership/usage.js';

const DAY = 24 * 3600;
const key = (n: number) => n.toString(16).padStart(2, '0').repeat(32);
const entry = (n: number, state: KeyUsage['state'], seenAt = 0): KeyUsage => ({ key: key(n), mark: 10n, seenAt, state, ...(state === 'live' ? {} : { why: 'test' }) });

describe('the retention of the key usage history', () => {
  it('is 30 days by default', () => {
    expect(USAGE_RETENTION_SECONDS).toBe(30 * DAY);
  });

  it('forgets a key unused for the whole retention, retired or live, and keeps one a desired or kernel SA uses', () => {
    const retention = new UsageRetention(10 * DAY);
    const entries = [entry(1, 'expired'), entry(2, 'needs-rekey'), entry(3, 'live'), entry(4, 'expired'), entry(5, 'live')];
    const inUse = new Set([key(4), key(5)]); // 4: Expired but its resource still exists; 5: in the kernel
    expect(retention.review({ entries, inUse, complete: true, now: 100 * DAY })).toEqual([]); // the clocks start
    expect(retention.review({ entries, inUse, complete: true, now: 105 * DAY })).toEqual([]);
    expect(retention.review({ entries, inUse, complete: true, now: 110 * DAY }).sort()).toEqual([key(1), key(2), key(3)]);
  });

  it("starts a key's clock again when it is used in between", () => {
    const retention = new UsageRetention(10 * DAY);
    const entries = [entry(1, 'live')];
    retention.review({ entries, inUse: new Set(), complete: true, now: 0 + 20 * DAY });
    retention.review({ entries, inUse: new Set([key(1)]), complete: true, now: 25 * DAY }); // re-applied for a while
    retention.review({ entries, inUse: new Set(), complete: true, now: 26 * DAY });
    expect(retention.review({ entries, inUse: new Set(), complete: true, now: 35 * DAY })).toEqual([]);
    expect(retention.review({ entries, inUse: new Set(), complete: true, now: 36 * DAY })).toEqual([key(1)]);
  });

  it('forgets nothing while a resource could not be built (its key is unknown), and starts every clock again', () => {
    const retention = new UsageRetention(10 * DAY);
    const entries = [entry(1, 'expired')];
    retention.review({ entries, inUse: new Set(), complete: true, now: 20 * DAY });
    expect(retention.review({ entries, inUse: new Set(), complete: false, now: 40 * DAY })).toEqual([]);
    expect(retention.tracking).toBe(0);
    retention.review({ entries, inUse: new Set(), complete: true, now: 41 * DAY });
    expect(retention.review({ entries, inUse: new Set(), complete: true, now: 50 * DAY })).toEqual([]);
    expect(retention.review({ entries, inUse: new Set(), complete: true, now: 51 * DAY })).toEqual([key(1)]);
  });

  it('keeps a key whose last mark is younger than the retention (its SA was seen recently)', () => {
    const retention = new UsageRetention(10 * DAY);
    const entries = [entry(1, 'live', 15 * DAY)];
    retention.review({ entries, inUse: new Set(), complete: true, now: 12 * DAY });
    expect(retention.review({ entries, inUse: new Set(), complete: true, now: 22 * DAY })).toEqual([]);
    expect(retention.review({ entries, inUse: new Set(), complete: true, now: 25 * DAY })).toEqual([key(1)]);
  });

  it('drops the clocks of keys no longer in the history', () => {
    const retention = new UsageRetention(10 * DAY);
    retention.review({ entries: [entry(1, 'live'), entry(2, 'live')], inUse: new Set(), complete: true, now: 1 });
    retention.review({ entries: [entry(2, 'live')], inUse: new Set(), complete: true, now: 2 });
    expect(retention.tracking).toBe(1);
  });
});

describe("the ledger's forget", () => {
  let directory: string;
  let ledger: Ledger;
  const path = () => join(directory, 'ledger.json');
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'ipsecop-retention-'));
    ledger = await Ledger.open(path(), { compactAfterLines: 3 });
  });
  afterEach(async () => {
    await ledger.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('removes usage entries durably, through the journal and through a compaction, and leaves the others', async () => {
    await ledger.commit({ usage: [entry(1, 'expired'), entry(2, 'live')] });
    await ledger.commit({ forget: [key(1)] });
    expect(ledger.usage(key(1))).toBeUndefined();
    expect(await readFile(journalPath(path()), 'utf8')).toContain('"forget"');
    await ledger.close();
    ledger = await Ledger.open(path(), { compactAfterLines: 3 });
    expect(ledger.usage(key(1))).toBeUndefined();
    expect(ledger.usage(key(2))?.state).toBe('live');
    // Past the compaction bound the snapshot is written without it.
    for (let n = 3; n < 7; n += 1) await ledger.commit({ usage: [entry(n, 'live')] });
    const snapshot = await readFile(path(), 'utf8');
    expect(snapshot).not.toContain(key(1));
    expect(snapshot).toContain(key(2));
  });

  it('a forget of an unknown key writes nothing', async () => {
    const before = await readFile(journalPath(path()), 'utf8');
    await ledger.commit({ forget: [key(9)] });
    expect(await readFile(journalPath(path()), 'utf8')).toBe(before);
  });
});
