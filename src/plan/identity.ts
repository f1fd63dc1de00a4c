/**
 * The kernel's identities of SAs and policies, as stable strings.
 *
 * Two entries with the same key are the same kernel object: adding the second gives EEXIST,
 * deleting by either removes it. The keys index the planner's maps and the ownership ledger,
 * so they must follow the kernel exactly (../../shared/notes/xfrm-semantics.md):
 * - SA: (family, destination, SPI, protocol) plus the mark; if_id and direction are not part
 *   of it.
 * - Policy: (direction, type, selector, mark, if_id); not the index, priority or templates.
 */
import type { Mark, PolicyId, Selector, StateId } from '../xfrm/types.js';

function markKey(mark: Mark | undefined): string {
  return mark ? `${mark.value.toString(16)}/${mark.mask.toString(16)}` : '-';
}

// The keys are built with Array.join, which makes a flat string: a template literal makes a
// rope that every Map lookup has to flatten first (measured: 20,000 policy keys put into and
// looked up in a Map cost twice as much as template literals).

export function selectorKey(selector: Selector): string {
  return selectorParts(selector).join(' ');
}

function selectorParts(selector: Selector): Array<string | number> {
  return [
    selector.family ?? 'unspec',
    `${selector.source.address}/${selector.source.prefixLength}`,
    `${selector.destination.address}/${selector.destination.prefixLength}`,
    selector.protocol,
    `${selector.sourcePort}/${selector.sourcePortMask.toString(16)}`,
    `${selector.destinationPort}/${selector.destinationPortMask.toString(16)}`,
    selector.ifindex,
    selector.user,
  ];
}

export function stateKey(id: StateId): string {
  return ['sa', id.family, id.destination, id.protocol, id.spi.toString(16), 'mark', markKey(id.mark)].join(' ');
}

export function policyKey(id: PolicyId): string {
  return ['policy', id.direction, id.type, ...selectorParts(id.selector), 'mark', markKey(id.mark), 'if_id', id.ifId ?? 0].join(' ');
}

const desiredStateKeys = new WeakMap<StateId, string>();
const desiredPolicyKeys = new WeakMap<PolicyId, string>();

/**
 * stateKey of a desired entry's identity, remembered per identity object: the desired tables
 * of an agent stay the same objects from pass to pass (identities are immutable), so each pass
 * after the first finds its 10,000 keys instead of building them again. Dumped entries are new
 * objects every pass: they use stateKey.
 */
export function desiredStateKey(id: StateId): string {
  let key = desiredStateKeys.get(id);
  if (key === undefined) desiredStateKeys.set(id, (key = stateKey(id)));
  return key;
}

/** policyKey of a desired entry's identity, remembered the same way. */
export function desiredPolicyKey(id: PolicyId): string {
  let key = desiredPolicyKeys.get(id);
  if (key === undefined) desiredPolicyKeys.set(id, (key = policyKey(id)));
  return key;
}

/**
 * What the kernel's SA lookup matches exactly: (family, destination, protocol, SPI), the mark
 * then compared under mask (../plan/lookup.ts). Two SAs with the same lookup key and different
 * marks have different identities but one may answer a lookup for the other.
 */
export function stateLookupKey(id: StateId): string {
  return ['sa', id.family, id.destination, id.protocol, id.spi.toString(16)].join(' ');
}
