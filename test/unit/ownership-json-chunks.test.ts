/**
 * The ledger's chunked JSON writer gives exactly JSON.stringify's text: journal checksums and
 * snapshots written before it (one JSON.stringify) must read the same, and a checksum over the
 * chunks must equal one over the whole text.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { hashedChunks, jsonChunks } from '../../src/ownership/json-chunks.js';

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
