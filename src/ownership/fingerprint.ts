/**
 * Fingerprints of XFRM entries: salted SHA-256 over an entry's configuration (not its counters,
 * not a kernel-chosen policy index). Keys are part of the hash, so an SA whose key was changed
 * behind our back is recognised as different, yet the ledger never holds key material: the
 * per-ledger random salt keeps equal keys on different nodes from having equal fingerprints.
 */
import { hash } from 'node:crypto';
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { KeyMaterial } from '../xfrm/key-material.js';
import type { Incarnation } from './records.js';
import { writePolicyIntent, writeStableState } from './canonical.js';

/** The whole configuration of an entry: what a format-1 ledger recorded (see ./ledger.ts). */
export function fingerprintEntry(salt: string, entry: SecurityAssociation | SecurityPolicy): string {
  return hashValue(salt, withoutRuntime(entry));
}

/**
 * What XFRM_MSG_UPDSA cannot change on a live SA (so neither we nor anyone else can have
 * changed it without deleting the SA): identity, addresses, keys, algorithms, mode, reqid,
 * selector, replay, flags, TFC padding. Lifetimes, the encapsulation's ports and original
 * address, the care-of address, the output mark and if_id are left out: UPDSA may change them,
 * and a hand change of those is drift on our own SA, not a new SA. The fields are the ones the
 * planner compares (../plan/compare.ts), normalised the same way (absent TFC padding is 0, flag
 * lists are sets), so that an SA the kernel reports exactly as we asked hashes as we asked.
 */
export function stableStateFingerprint(salt: string, sa: SecurityAssociation): string {
  return digest(salt, writeStableState(sa));
}

/** What a policy intent records: the policy as the planner compares it (../plan/compare.ts). */
function policyFingerprint(salt: string, policy: SecurityPolicy): string {
  return digest(salt, writePolicyIntent(policy));
}

/**
 * What an intent records about an entry we are about to add: for an SA its stable part (what a
 * dump gives back exactly as we sent it), for a policy its whole configuration.
 */
export function intentFingerprint(salt: string, entry: SecurityAssociation | SecurityPolicy): string {
  return 'templates' in entry ? policyFingerprint(salt, entry) : stableStateFingerprint(salt, entry);
}

/**
 * The name of an SA's key in the usage history (./usage.ts): identity and algorithms with their
 * key bytes, salted, so that the ledger names a key without holding it.
 */
export function usageKeyOf(salt: string, sa: SecurityAssociation): string {
  return hashValue(salt, { keyUsage: { family: sa.id.family, destination: sa.id.destination, spi: sa.id.spi, protocol: sa.id.protocol }, algorithms: sa.algorithms });
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

function hashValue(salt: string, value: unknown): string {
  return digest(salt, canonicalJson(value));
}

function digest(salt: string, canonical: string): string {
  // One-shot crypto.hash (node >= 20.12; package.json asks for 20.19) over salt + text: the same
  // digest as a Hash object fed both in turn, at about half the cost (an apply of 10,000 policies
  // computes 20,000 of these).
  return hash('sha256', salt + canonical, 'hex');
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

/**
 * JSON with sorted keys, bigints as decimal, keys as hex, absent fields dropped: the generic
 * form, for the whole-content fingerprint of format-1 ledgers (rare). The intent and incarnation
 * fingerprints write the same bytes through ./canonical.ts, which knows the shapes.
 */
export function canonicalJson(value: unknown): string {
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
