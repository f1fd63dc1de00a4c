/**
 * The kernel's SA lookup, as a predicate: which SA a request naming `request` can reach.
 *
 * __xfrm_state_lookup() (net/xfrm/xfrm_state.c) walks the SAs with the same destination, SPI,
 * protocol and family and takes the first whose `(mark & sa.mark.m) == sa.mark.v`, where `mark`
 * is the request's value under its own mask; xfrm_state_add() asks the same question to refuse
 * a duplicate (EEXIST), and DELSA/UPDSA/GETSA use it to pick their target. So two SAs with
 * different marks are different identities, yet a request for one can hit the other: mark
 * 0/0 answers every lookup, and a request with mark 1/0xff finds an SA with mark 1/0x1.
 */
import type { Mark, StateId } from '../xfrm/types.js';

const NONE: Mark = { value: 0, mask: 0 };

/** Whether the kernel's lookup for `request` can return the SA identified by `candidate`. */
export function stateLookupHits(request: StateId, candidate: StateId): boolean {
  if (request.family !== candidate.family || request.protocol !== candidate.protocol || request.spi !== candidate.spi) return false;
  if (request.destination !== candidate.destination) return false;
  const asked = request.mark ?? NONE;
  const held = candidate.mark ?? NONE;
  return ((asked.value & asked.mask & held.mask) >>> 0) === held.value >>> 0;
}
