/**
 * Ownership records: the node-local proof that an XFRM entry was created by ipsec-operator.
 *
 * The kernel has no owner field, and marks or reqid ranges only say what an entry looks like,
 * not who made it (another tool can use the same numbers, and an identity can be deleted and
 * taken by someone else between two of our runs). So a record names one *incarnation* of an
 * entry, the kernel's own mark of one creation:
 *
 * - a policy: the index the kernel assigned when it was created (UPDPOLICY keeps it; a policy
 *   deleted and added again gets a new one);
 * - an SA: the second the kernel added it (`curlft.add_time`, kept by UPDSA) together with a
 *   hash of what UPDSA cannot change (keys, algorithms, mode, reqid, selector, replay, flags),
 *   so that an SA re-added by someone else in the same second with other keys is not ours.
 *
 * An observed entry is ours when its incarnation is the record's, or when the record holds an
 * *intent* that matches it: the engine writes the intent before it asks the kernel to add an
 * entry, with the content's fingerprint and the second it was written; an entry with that
 * content added no earlier is the one we added. Intents are settled to incarnations from the
 * next dump (./settle.ts), whatever happened in between (a crash, a lost ack, ENOBUFS).
 *
 *   create:   creating{intents:[new]}                 → NEWSA/NEWPOLICY → dump → present{incarnation}
 *   update:   present (incarnation unchanged)          → UPDSA/UPDPOLICY
 *   replace:  replacing{incarnation(old), intents:[new, old]} → DEL + NEW → dump → present
 *   delete:   deleting{incarnation, intents:[old]}     → DEL → record removed
 *
 * The `old` intent of a replace or delete covers the rollback that adds the previous entry back,
 * so a rollback never needs a ledger write before its kernel change (it may run because the
 * ledger cannot be written: a full disk).
 *
 * Records are checked when read (`parseRecord`): a record that is not well-formed is an error,
 * never a reason to delete anything.
 */

/** The kernel's mark of one creation of an entry. */
export type Incarnation =
  | { readonly target: 'policy'; readonly index: number }
  | { readonly target: 'state'; readonly addTime: number; readonly stable: string };

/** "We may have added an entry with this content, no earlier than this second." */
export interface Intent {
  readonly fingerprint: string;
  readonly notBefore: number;
  /**
   * The fingerprint is of the whole content (./fingerprint.ts fingerprintEntry) rather than the
   * intent fingerprint: records migrated from ledger format 1, which kept only that.
   */
  readonly content?: true;
}

interface RecordBase {
  /** Identity key from ../plan/identity.ts. */
  readonly key: string;
  readonly target: 'state' | 'policy';
  /** The resource that asked for it, e.g. `SecurityAssociation/a-to-b`. */
  readonly resource: string;
}

export type OwnershipRecord =
  | (RecordBase & { readonly phase: 'present'; readonly incarnation: Incarnation })
  | (RecordBase & { readonly phase: 'creating'; readonly intents: readonly Intent[] })
  | (RecordBase & { readonly phase: 'replacing'; readonly incarnation: Incarnation; readonly intents: readonly Intent[] })
  | (RecordBase & { readonly phase: 'deleting'; readonly incarnation: Incarnation; readonly intents: readonly Intent[] });

export type OwnershipPhase = OwnershipRecord['phase'];

/** The incarnation a record proves, if any (creating records prove none yet). */
export function recordIncarnation(record: OwnershipRecord): Incarnation | undefined {
  return record.phase === 'creating' ? undefined : record.incarnation;
}

/** The intents a record holds (present records hold none). */
export function recordIntents(record: OwnershipRecord): readonly Intent[] {
  return record.phase === 'present' ? [] : record.intents;
}

export function sameIncarnation(a: Incarnation, b: Incarnation): boolean {
  if (a.target === 'policy' || b.target === 'policy') return a.target === b.target && (a as { index: number }).index === (b as { index: number }).index;
  return a.addTime === b.addTime && a.stable === b.stable;
}

export class RecordFormatError extends Error {
  override readonly name = 'RecordFormatError';
}

const FINGERPRINT = /^[0-9a-f]{64}$/;
const PHASES: ReadonlySet<string> = new Set(['present', 'creating', 'replacing', 'deleting']);
const MAX_INTENTS = 2;
const RECORD_FIELDS: ReadonlySet<string> = new Set(['key', 'target', 'resource', 'phase', 'incarnation', 'intents']);
const RESOURCE = /^(SecurityAssociation|IpsecPolicy|[A-Za-z]+)\/[^\s]{1,253}$/;

/**
 * Checks one record as read from disk and returns it typed; throws RecordFormatError saying
 * which field is wrong. Unknown fields are refused too: a record from a newer format must not
 * be half-understood.
 */
export function parseRecord(value: unknown, position: number): OwnershipRecord {
  // Called for every record of a ledger on every run (10,000 at a time): nothing here is
  // built per record unless the record is wrong.
  const fail = (message: string): never => {
    throw new RecordFormatError(`record ${position}: ${message}`);
  };
  if (!isObject(value)) fail('is not an object');
  const record = value as Record<string, unknown>;
  const { key, target, resource, phase } = record;
  if (typeof key !== 'string' || !keyMatchesTarget(key, target)) fail('has no valid identity key for its target');
  if (target !== 'state' && target !== 'policy') fail('target is neither "state" nor "policy"');
  if (typeof resource !== 'string' || !RESOURCE.test(resource)) fail('resource is not Kind/name');
  if (typeof phase !== 'string' || !PHASES.has(phase)) fail(`phase ${JSON.stringify(String(phase).slice(0, 20))} is not one of present, creating, replacing, deleting`);
  for (const field of Object.keys(record)) if (!RECORD_FIELDS.has(field)) fail(`unknown field ${JSON.stringify(field.slice(0, 40))}`);

  const base = { key: key as string, target: target as 'state' | 'policy', resource: resource as string };
  const incarnation = phase === 'creating' ? undefined : parseIncarnation(record.incarnation, target as 'state' | 'policy', fail);
  if (phase === 'creating' && record.incarnation !== undefined) fail('a creating record has no incarnation yet');
  const intents = phase === 'present' ? undefined : parseIntents(record.intents, fail);
  if (phase === 'present' && record.intents !== undefined) fail('a present record holds no intents');
  switch (phase) {
    case 'present':
      return { key: base.key, target: base.target, resource: base.resource, phase, incarnation: incarnation! };
    case 'creating':
      return { key: base.key, target: base.target, resource: base.resource, phase, intents: intents! };
    case 'replacing':
    case 'deleting':
      return { key: base.key, target: base.target, resource: base.resource, phase, incarnation: incarnation!, intents: intents! };
  }
  return fail('unreachable');
}

function parseIncarnation(value: unknown, target: 'state' | 'policy', fail: (message: string) => never): Incarnation {
  if (!isObject(value)) return fail('has no incarnation');
  const incarnation = value as Record<string, unknown>;
  if (incarnation.target !== target) return fail('incarnation is for another target');
  if (target === 'policy') {
    const { index } = incarnation;
    if (typeof index !== 'number' || !Number.isInteger(index) || index <= 0 || index > 0xffff_ffff) return fail('policy incarnation has no valid kernel index');
    if (Object.keys(incarnation).length !== 2) return fail('policy incarnation has unknown fields');
    return { target, index };
  }
  const { addTime, stable } = incarnation;
  if (typeof addTime !== 'number' || !Number.isSafeInteger(addTime) || addTime < 0) return fail('SA incarnation has no valid add time');
  if (typeof stable !== 'string' || !FINGERPRINT.test(stable)) return fail('SA incarnation has no valid fingerprint');
  if (Object.keys(incarnation).length !== 3) return fail('SA incarnation has unknown fields');
  return { target, addTime, stable };
}

function parseIntents(value: unknown, fail: (message: string) => never): Intent[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_INTENTS) return fail(`intents must be a list of 1 to ${MAX_INTENTS}`);
  return value.map((intent, position) => {
    if (!isObject(intent)) return fail(`intent ${position} is not an object`);
    const { fingerprint, notBefore, content } = intent as Record<string, unknown>;
    if (typeof fingerprint !== 'string' || !FINGERPRINT.test(fingerprint)) return fail(`intent ${position} has no valid fingerprint`);
    if (typeof notBefore !== 'number' || !Number.isSafeInteger(notBefore) || notBefore < 0) return fail(`intent ${position} has no valid time`);
    if (content !== undefined && content !== true) return fail(`intent ${position} has an invalid content flag`);
    if (Object.keys(intent as object).length !== (content === undefined ? 2 : 3)) return fail(`intent ${position} has unknown fields`);
    return content ? { fingerprint, notBefore, content } : { fingerprint, notBefore };
  });
}

function keyMatchesTarget(key: string, target: unknown): boolean {
  if (key.length > 1024) return false;
  return (target === 'state' && key.startsWith('sa ')) || (target === 'policy' && key.startsWith('policy '));
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
