/**
 * What differs between a desired entry and the kernel's copy of it, field by field, and which
 * of those differences the kernel can change in place.
 *
 * XFRM_MSG_UPDSA on a live SA applies only lifetimes, the encapsulation's ports and original
 * address (not its type; adding or removing encapsulation is refused) and a care-of address the
 * SA already has; it answers 0 yet silently ignores keys, algorithms, mode, replay settings,
 * flags, reqid and a care-of address added or removed. So any other difference means the SA
 * must be deleted and added again. Only fields the kernel reports back are compared: a field a
 * kernel drops (SA direction before 6.10) is refused before planning (../engine/converge.ts). Policies change in place through UPDPOLICY, except their index,
 * which the kernel keeps.
 *
 * Field names in the result are for humans (plan lines, status messages); key values never
 * appear, only the fact that a key differs.
 */
import type { AuthAlgorithm, LifetimeConfig, Mark, PolicyTemplate, SecurityAssociation, SecurityPolicy, Selector, StateAlgorithms } from '../xfrm/types.js';

export interface Differences {
  /** Differences UPDSA/UPDPOLICY applies in place. */
  readonly inPlace: string[];
  /** Differences that need the entry deleted and added again. */
  readonly replace: string[];
}

export function compareStates(desired: SecurityAssociation, observed: SecurityAssociation): Differences {
  const inPlace: string[] = [];
  const replace: string[] = [];
  if (!sameLifetime(desired.lifetime, observed.lifetime)) inPlace.push('lifetime');
  const encapDesired = desired.encapsulation;
  const encapObserved = observed.encapsulation;
  if (encapDesired?.type !== encapObserved?.type) replace.push('encapsulation type');
  else if (
    encapDesired &&
    encapObserved &&
    (encapDesired.sourcePort !== encapObserved.sourcePort ||
      encapDesired.destinationPort !== encapObserved.destinationPort ||
      encapDesired.originalAddress !== encapObserved.originalAddress)
  ) {
    inPlace.push('encapsulation');
  }
  // UPDSA copies the care-of address only when the live SA and the request both have one
  // (xfrm_state_update: `if (x->coaddr && x1->coaddr)`); adding or removing one it ignores.
  if (desired.careOfAddress !== observed.careOfAddress) {
    (desired.careOfAddress !== undefined && observed.careOfAddress !== undefined ? inPlace : replace).push('care-of address');
  }

  if (desired.source !== observed.source) replace.push('source');
  if (desired.mode !== observed.mode) replace.push('mode');
  if (desired.reqid !== observed.reqid) replace.push('reqid');
  if (!sameSelector(desired.selector, observed.selector)) replace.push('selector');
  replace.push(...algorithmDifferences(desired.algorithms, observed.algorithms));
  if (desired.replay.window !== observed.replay.window || desired.replay.useEsnAttribute !== observed.replay.useEsnAttribute) {
    replace.push('replay window');
  }
  if (!sameList(desired.flags, observed.flags)) replace.push('flags');
  if (!sameList(desired.extraFlags, observed.extraFlags)) replace.push('extra flags');
  if (!sameMark(desired.outputMark, observed.outputMark)) replace.push('output mark');
  if ((desired.ifId ?? 0) !== (observed.ifId ?? 0)) replace.push('if_id');
  if ((desired.tfcPad ?? 0) !== (observed.tfcPad ?? 0)) replace.push('tfcpad');
  if (desired.direction !== observed.direction) replace.push('direction');
  return { inPlace, replace };
}

/** An authentication algorithm (AH, or ESP's integrity half): its name and ICV length, then its key. */
function authDifferences(desired: AuthAlgorithm, observed: AuthAlgorithm): string[] {
  const differences: string[] = [];
  if (desired.name !== observed.name || desired.truncationBits !== observed.truncationBits) differences.push('authentication algorithm');
  if (!desired.key.equals(observed.key)) differences.push('authentication key');
  return differences;
}

function algorithmDifferences(desired: StateAlgorithms, observed: StateAlgorithms): string[] {
  if (desired.kind !== observed.kind) return ['algorithm'];
  switch (desired.kind) {
    case 'aead': {
      const other = (observed as typeof desired).aead;
      const differences: string[] = [];
      if (desired.aead.name !== other.name || desired.aead.icvBits !== other.icvBits) differences.push('aead algorithm');
      if (!desired.aead.key.equals(other.key)) differences.push('aead key');
      return differences;
    }
    case 'cipher': {
      const other = observed as typeof desired;
      const differences = desired.cipher.name === other.cipher.name ? [] : ['encryption algorithm'];
      if (!desired.cipher.key.equals(other.cipher.key)) differences.push('encryption key');
      // Encryption without integrity (null auth) is a shape of its own: one side with an
      // authentication algorithm and the other without differ in the algorithm, not the key.
      if (!desired.auth || !other.auth) {
        if (desired.auth !== other.auth) differences.push('authentication algorithm');
      } else {
        differences.push(...authDifferences(desired.auth, other.auth));
      }
      return differences;
    }
    case 'auth':
      return authDifferences(desired.auth, (observed as typeof desired).auth);
    case 'compression':
      return desired.compression.name === (observed as typeof desired).compression.name ? [] : ['compression algorithm'];
  }
}

export function comparePolicies(desired: SecurityPolicy, observed: SecurityPolicy): Differences {
  const inPlace: string[] = [];
  const replace: string[] = [];
  if (desired.action !== observed.action) inPlace.push('action');
  if (desired.priority !== observed.priority) inPlace.push('priority');
  if (!sameList(desired.flags, observed.flags)) inPlace.push('flags');
  if (!sameLifetime(desired.lifetime, observed.lifetime)) inPlace.push('lifetime');
  if (!sameTemplates(desired.templates, observed.templates)) inPlace.push('templates');
  // Index 0 means "the kernel chooses"; only an explicit index can differ.
  if (desired.index !== 0 && desired.index !== observed.index) replace.push('index');
  return { inPlace, replace };
}

/** Every field of LifetimeConfig (checked below: adding a field without listing it fails to compile). */
const LIFETIME_FIELDS = [
  'softByteLimit',
  'hardByteLimit',
  'softPacketLimit',
  'hardPacketLimit',
  'softAddExpiresSeconds',
  'hardAddExpiresSeconds',
  'softUseExpiresSeconds',
  'hardUseExpiresSeconds',
] as const satisfies readonly (keyof LifetimeConfig)[];
const everyLifetimeField: Exclude<keyof LifetimeConfig, (typeof LIFETIME_FIELDS)[number]> extends never ? true : never = true;

/** Every field of PolicyTemplate (checked the same way). */
const TEMPLATE_FIELDS = [
  'family',
  'source',
  'destination',
  'protocol',
  'spi',
  'reqid',
  'mode',
  'share',
  'level',
  'authAlgorithmMask',
  'encryptionAlgorithmMask',
  'compressionAlgorithmMask',
] as const satisfies readonly (keyof PolicyTemplate)[];
const everyTemplateField: Exclude<keyof PolicyTemplate, (typeof TEMPLATE_FIELDS)[number]> extends never ? true : never = true;
void everyLifetimeField;
void everyTemplateField;

// Fixed field lists instead of Object.keys per call: a no-op pass over 10,000 policies compares
// 10,000 lifetimes and templates, and the key arrays were garbage.
function sameLifetime(a: LifetimeConfig, b: LifetimeConfig): boolean {
  for (const field of LIFETIME_FIELDS) if (a[field] !== b[field]) return false;
  return true;
}

export function sameSelector(a: Selector, b: Selector): boolean {
  return (
    a.family === b.family &&
    a.source.address === b.source.address &&
    a.source.prefixLength === b.source.prefixLength &&
    a.destination.address === b.destination.address &&
    a.destination.prefixLength === b.destination.prefixLength &&
    a.protocol === b.protocol &&
    a.sourcePort === b.sourcePort &&
    a.sourcePortMask === b.sourcePortMask &&
    a.destinationPort === b.destinationPort &&
    a.destinationPortMask === b.destinationPortMask &&
    a.ifindex === b.ifindex &&
    a.user === b.user
  );
}

function sameTemplates(a: readonly PolicyTemplate[], b: readonly PolicyTemplate[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (!sameTemplate(a[index]!, b[index]!)) return false;
  return true;
}

function sameTemplate(a: PolicyTemplate, b: PolicyTemplate): boolean {
  for (const field of TEMPLATE_FIELDS) if (a[field] !== b[field]) return false;
  return true;
}

function sameMark(a: Mark | undefined, b: Mark | undefined): boolean {
  return a?.value === b?.value && a?.mask === b?.mask;
}

/** Flag lists are sets. Most are empty or hold one flag: those are compared without sorting copies. */
function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  if (a.length === 0) return true;
  if (a.length === 1) return a[0] === b[0];
  const left = [...a].sort();
  const right = [...b].sort();
  return left.every((value, index) => value === right[index]);
}
