/**
 * Fingerprints of XFRM entries: a salted SHA-256 over the entry's configuration (not its
 * counters, not a kernel-chosen policy index). Keys are part of the hash, so an SA whose key was
 * changed behind our back is recognised as different, yet the ledger never holds key material:
 * the per-ledger random salt keeps equal keys on different nodes from having equal fingerprints.
 */
import { createHash } from 'node:crypto';
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { KeyMaterial } from '../xfrm/key-material.js';

export function fingerprintEntry(salt: string, entry: SecurityAssociation | SecurityPolicy): string {
  const hash = createHash('sha256');
  hash.update(salt);
  hash.update(canonicalJson(withoutRuntime(entry)));
  return hash.digest('hex');
}

function withoutRuntime(entry: SecurityAssociation | SecurityPolicy): object {
  if ('templates' in entry) {
    const { observed: _observed, index: _index, ...configuration } = entry;
    return configuration;
  }
  const { observed: _observed, resumeSequence: _resume, ...configuration } = entry;
  return configuration;
}

/** JSON with sorted keys, bigints as decimal, keys as hex, absent fields dropped. */
function canonicalJson(value: unknown): string {
  if (value instanceof KeyMaterial) return JSON.stringify(value.reveal().toString('hex'));
  if (typeof value === 'bigint') return JSON.stringify(value.toString());
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const fields = Object.entries(value)
      .filter(([, field]) => field !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, field]) => `${JSON.stringify(name)}:${canonicalJson(field)}`);
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(value);
}
