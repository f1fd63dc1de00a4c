/**
 * Fingerprints of XFRM entries: salted SHA-256 over an entry's configuration (not its counters,
 * not a kernel-chosen policy index). Keys are part of the hash, so an SA whose key was changed
 * behind our back is recognised as different, yet the ledger never holds key material: the
 * per-ledger random salt keeps equal keys on different nodes from having equal fingerprints.
 */
import { createHash } from 'node:crypto';
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { KeyMaterial } from '../xfrm/key-material.js';
import type { Incarnation } from './records.js';

/** The whole configuration of an entry: what an intent to add it records. */
export function fingerprintEntry(salt: string, entry: SecurityAssociation | SecurityPolicy): string {
  return hash(salt, withoutRuntime(entry));
}

/**
 * What XFRM_MSG_UPDSA cannot change on a live SA (so neither we nor anyone else can have
 * changed it without deleting the SA): identity, addresses, keys, algorithms, mode, reqid,
 * selector, replay, flags, TFC padding. Lifetimes, the encapsulation's ports and
 * original address, the care-of address, the output mark and if_id are left out: UPDSA may
 * change them, and a hand change of those is drift on our own SA, not a new SA.
 */
export function stableStateFingerprint(salt: string, sa: SecurityAssociation): string {
  const {
    observed: _observed,
    resumeSequence: _resume,
    lifetime: _lifetime,
    careOfAddress: _careOf,
    outputMark: _outputMark,
    ifId: _ifId,
    // An attribute older kernels drop without a word (XFRMA_SA_DIR before 6.10): the SA we added
    // must still be recognised as ours when the kernel did not keep it, so that the verifying
    // pass reports "not kept" instead of losing track of it.
    direction: _direction,
    encapsulation,
    ...stable
  } = sa;
  return hash(salt, { ...stable, flags: sorted(stable.flags), extraFlags: sorted(stable.extraFlags), encapsulationType: encapsulation?.type });
}

/**
 * What an intent records about an entry we are about to add: for an SA its stable part (what a
 * dump gives back exactly as we sent it), for a policy its whole configuration.
 */
export function intentFingerprint(salt: string, entry: SecurityAssociation | SecurityPolicy): string {
  return 'templates' in entry ? fingerprintEntry(salt, entry) : stableStateFingerprint(salt, entry);
}

/** The incarnation of an entry read from the kernel (see ./records.ts). */
export function incarnationOf(salt: string, entry: SecurityAssociation | SecurityPolicy): Incarnation | undefined {
  if ('templates' in entry) return entry.index > 0 ? { target: 'policy', index: entry.index } : undefined;
  const addTime = entry.observed?.current.addTime;
  if (addTime === undefined) return undefined;
  return { target: 'state', addTime: Number(addTime), stable: stableStateFingerprint(salt, entry) };
}

/** The add time of an entry read from the kernel, in seconds since the epoch. */
export function addTimeOf(entry: SecurityAssociation | SecurityPolicy): number | undefined {
  const addTime = entry.observed?.current.addTime;
  return addTime === undefined ? undefined : Number(addTime);
}

function hash(salt: string, value: unknown): string {
  const digest = createHash('sha256');
  digest.update(salt);
  digest.update(canonicalJson(value));
  return digest.digest('hex');
}

function withoutRuntime(entry: SecurityAssociation | SecurityPolicy): object {
  if ('templates' in entry) {
    const { observed: _observed, index: _index, ...configuration } = entry;
    return { ...configuration, flags: sorted(configuration.flags) };
  }
  const { observed: _observed, resumeSequence: _resume, ...configuration } = entry;
  return { ...configuration, flags: sorted(configuration.flags), extraFlags: sorted(configuration.extraFlags) };
}

/** Flag lists are sets: the kernel reports them in bit order, manifests in any order. */
function sorted(list: readonly string[]): string[] {
  return [...list].sort();
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
