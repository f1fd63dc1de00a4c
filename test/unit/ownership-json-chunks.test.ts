/**
 * The ledger's chunked JSON writer gives exactly JSON.stringify's text: journal checksums and
 * snapshots written before it (one JSON.stringify) must read the same, and a checksum over the
 * chunks must equal one over the whole text.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { hashedChunks, jsonChunks } from '../../src/ownership/json-chunks.js';
import { journalPath, Ledger } from '../../src/ownership/ledger.js';
import type { KeyUsage } from '../../src/ownership/usage.js';

const record = (index: number) => ({
  key: `policy out main inet 10.0.${index >> 8}.${index & 255}/32 192.0.2.1/32 0 0/0 0/0 0 0 mark - if_id 0`,
  phase: index % 3 === 0 ? 'creating' : 'present',
  target: 'f'.repeat(64),
  incarnation: index % 2 === 0 ? { index: index * 8 + 1, addTime: 1_700_000_000 + index } : undefined,
  note: index % 7 === 0 ? 'quote " backslash \\ tab \t newline \n snowman ☃ astral 𝄞 lone \ud800' : undefined,
});

const cases: Record<string, object> = {
  'empty object': {},
  'only scalars': { generation: 4, salt: 'abc', scope: { bootId: 'x', netns: 4026531840 } },
  'empty arrays': { set: [], remove: [], usage: [] },
  'a commit of 10,000 records (several chunks)': { set: Array.from({ length: 10_000 }, (_, index) => record(index)), remove: ['a', 'b'] },
  'fields skipped as JSON.stringify skips them': { set: [record(1)], remove: undefined, forget: ['k'], fn: () => 1 },
  'array elements JSON.stringify writes as null': { set: [undefined, () => 1, record(2)], remove: [null] },
  'a streamed name holding a non-array': { set: 'not an array', usage: { key: 'k' } },
  'a snapshot': { formatVersion: 3, salt: 's', scope: { bootId: 'b' }, generation: 2, records: [record(3), record(4)], usage: [{ key: 'u', mark: '1048576' }] },
};

describe('jsonChunks', () => {
  for (const [name, value] of Object.entries(cases)) {
    it(`writes JSON.stringify's text: ${name}`, () => {
      const chunks = [...jsonChunks(value, new Set(['set', 'remove', 'forget', 'usage', 'records']))];
      expect(chunks.join('')).toBe(JSON.stringify(value));
    });
  }

  it('keeps each chunk bounded while a large array is written', () => {
    const chunks = [...jsonChunks(cases['a commit of 10,000 records (several chunks)']!, new Set(['set']))];
    expect(chunks.length).toBeGreaterThan(10);
    // A chunk ends after the element that took it past 64 Ki code units, so one element more at most.
    for (const chunk of chunks) expect(chunk.length).toBeLessThan(64 * 1024 + 1024);
  });

  it('hashes the chunks as it passes them on: the checksum of the whole text', () => {
    const value = cases['a commit of 10,000 records (several chunks)']!;
    const hash = createHash('sha256');
    const text = [...hashedChunks(jsonChunks(value, new Set(['set'])), hash)].join('');
    expect(hash.digest('hex')).toBe(createHash('sha256').update(JSON.stringify(value)).digest('hex'));
    expect(text).toBe(JSON.stringify(value));
  });
});

describe('a journal line written in chunks and cut short (a crash between two chunk writes)', () => {
  const usageKey = (n: number) => n.toString(16).padStart(64, '0');
  const usage = (from: number, count: number): KeyUsage[] =>
    Array.from({ length: count }, (_, index) => ({ key: usageKey(from + index), mark: 1_048_576n, seenAt: 1_700_000_000, state: 'live' }));

  it('reads back as the ledger before that commit, at every cut, and takes the next commit whole', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'ipsecop-chunks-'));
    const path = join(directory, 'ledger.json');
    try {
      let ledger = await Ledger.open(path);
      await ledger.commit({ usage: usage(0, 10) });
      const before = (await stat(journalPath(path))).size;
      await ledger.commit({ usage: usage(10, 3_000) }); // several 64 Ki chunks
      const after = (await stat(journalPath(path))).size;
      await ledger.close();
      expect(after - before).toBeGreaterThan(3 * 64 * 1024);
      const whole = await readFile(journalPath(path));
      // Cuts at chunk boundaries and inside chunks, and one byte short of the newline.
      for (const cut of [before + 1, before + 64 * 1024, before + 64 * 1024 + 1, before + 3 * 64 * 1024 + 17, after - 1]) {
        await writeFile(journalPath(path), whole);
        await truncate(journalPath(path), cut);
        ledger = await Ledger.open(path);
        expect(ledger.usageEntries().size, `cut at ${cut - before} bytes into the line`).toBe(10);
        await ledger.commit({ usage: usage(20_000, 1) });
        await ledger.close();
        ledger = await Ledger.open(path);
        expect(ledger.usageEntries().size, `the commit after the cut at ${cut - before}`).toBe(11);
        await ledger.close();
      }
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
