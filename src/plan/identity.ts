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

export function selectorKey(selector: Selector): string {
  return [
    selector.family ?? 'unspec',
    `${selector.source.address}/${selector.source.prefixLength}`,
    `${selector.destination.address}/${selector.destination.prefixLength}`,
    selector.protocol,
    `${selector.sourcePort}/${selector.sourcePortMask.toString(16)}`,
    `${selector.destinationPort}/${selector.destinationPortMask.toString(16)}`,
    selector.ifindex,
    selector.user,
  ].join(' ');
}

export function stateKey(id: StateId): string {
  return `sa ${id.family} ${id.destination} ${id.protocol} ${id.spi.toString(16)} mark ${markKey(id.mark)}`;
}

export function policyKey(id: PolicyId): string {
  return `policy ${id.direction} ${id.type} ${selectorKey(id.selector)} mark ${markKey(id.mark)} if_id ${id.ifId ?? 0}`;
}
