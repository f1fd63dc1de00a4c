/**
 * JSON text of a ledger object, produced in bounded pieces instead of one string.
 *
 * Why: a commit of an apply of 10,000 policies is one journal line of about 4 MB, and
 * `JSON.stringify` of it, the line with its checksum appended and the Buffer written were live
 * at once at the CLI's peak (a heap snapshot at the peak of `apply` of 10,000: a 3.9 MiB string
 * of `{"set":[…`, the largest object in the heap). Here the arrays named by the caller are
 * written element by element, so no more than about one chunk of text exists at a time.
 *
 * The text is exactly `JSON.stringify(value)` (test/unit/ownership-json-chunks.test.ts holds the
 * two to the same bytes): journal checksums and snapshots already on disk are read the same.
 * Only plain data is accepted, as the ledger writes it: own enumerable keys in insertion
 * order, no `toJSON`, no replacer; `undefined` fields are skipped as JSON.stringify skips them.
 */
import type { Hash } from 'node:crypto';

/** Pieces are gathered into chunks of about this many UTF-16 code units before they are handed on. */
const CHUNK_UNITS = 64 * 1024;

/**
 * `JSON.stringify(value)` as chunks of text. The arrays under the top-level keys in `streamed`
 * are written one element at a time; every other field with one `JSON.stringify`.
 */
export function* jsonChunks(value: object, streamed: ReadonlySet<string>): Generator<string> {
  let chunk = '{';
  let first = true;
  for (const [name, field] of Object.entries(value)) {
    if (field === undefined || typeof field === 'function' || typeof field === 'symbol') continue;
    chunk += `${first ? '' : ','}${JSON.stringify(name)}:`;
    first = false;
    if (!streamed.has(name) || !Array.isArray(field)) {
      chunk += JSON.stringify(field);
      continue;
    }
    chunk += '[';
    for (let index = 0; index < field.length; index++) {
      // JSON.stringify writes an array's undefined (and function) elements as null.
      chunk += `${index === 0 ? '' : ','}${JSON.stringify(field[index]) ?? 'null'}`;
      if (chunk.length >= CHUNK_UNITS) {
        yield chunk;
        chunk = '';
      }
    }
    chunk += ']';
  }
  yield `${chunk}}`;
}

/** Passes `chunks` through, feeding each to `hash` on the way (the journal line's checksum). */
export function* hashedChunks(chunks: Iterable<string>, hash: Hash): Generator<string> {
  for (const chunk of chunks) {
    hash.update(chunk);
    yield chunk;
  }
}
