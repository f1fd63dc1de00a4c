/**
 * Ownership records: the node-local proof that an XFRM entry was created by ipsec-operator.
 *
 * The kernel has no owner field, and marks or reqid ranges only say what an entry looks like,
 * not who made it (another tool can use the same numbers). So the engine writes a record
 * *before* each kernel change and settles it after:
 *
 *   create:  record `creating` (with the entry's fingerprint) → NEWSA/NEWPOLICY → `present`
 *   update:  (record stays `present`) → UPDSA/UPDPOLICY → new fingerprint
 *   delete:  record `deleting` → DELSA/DELPOLICY → record removed
 *
 * After a crash at any point, the records say which entries may be ours: `present` and
 * `deleting` entries are ours; a `creating` entry is ours only if the kernel's entry has exactly
 * the fingerprint we were adding (otherwise someone else's entry holds that identity). An entry
 * with no record is never touched.
 */
export type OwnershipPhase = 'creating' | 'present' | 'deleting';

export interface OwnershipRecord {
  /** Identity key from ../plan/identity.ts. */
  readonly key: string;
  readonly target: 'state' | 'policy';
  /** The resource that asked for it, e.g. `SecurityAssociation/a-to-b`. */
  readonly resource: string;
  /** Salted hash of the entry's content (keys included), never the content itself. */
  readonly fingerprint: string;
  readonly phase: OwnershipPhase;
}
