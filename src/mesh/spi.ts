/**
 * SPI allocation for mesh SAs, by the receiving node (the SPI is the receiver's index into its
 * own SAD, so uniqueness is the receiver's business).
 *
 * The rule: candidate k (k = 0, 1, 2, ...) is the first 32 bits of
 * SHA-256("ipsec-operator mesh v1 spi", mesh uid, receiver, sender, family, sender generation,
 * receiver generation, sender boot id, receiver boot id, k), mapped into [0x100, 0xffffffff]
 * (SPIs 1-255 are reserved by IANA, RFC 4303 section 2.1). The receiver takes the first
 * candidate that is not `taken`: every SPI any SA to this node holds (ours, other software's),
 * every SPI it has allocated and not yet released, and every SPI it released recently (the
 * quarantine), so an SPI never comes back with another key while a stale sender might still
 * use it. The result is recorded in the node's mesh state and published in its advertisement;
 * senders take the SPI from there and never compute it themselves, so a collision resolved on
 * one node cannot disagree with anyone else's view. Determinism only makes the first choice
 * reproducible (tests, and a restarted agent with an intact state directory chooses the same).
 */
import { createHash } from 'node:crypto';
import { encodeFields } from './encoding.js';

export const MIN_SPI = 0x100;
const SPI_SPACE = 0x1_0000_0000 - MIN_SPI;
/** With a 2^32 space, 64 collisions in a row mean `taken` is wrong, not unlucky. */
export const MAX_SPI_ATTEMPTS = 64;

export interface SpiRequest {
  readonly meshUid: string;
  readonly receiver: string;
  readonly sender: string;
  readonly family: string;
  readonly senderGeneration: number;
  readonly receiverGeneration: number;
  readonly senderBootId: string;
  readonly receiverBootId: string;
}

export function spiCandidate(request: SpiRequest, attempt: number): number {
  const digest = createHash('sha256')
    .update(
      encodeFields([
        'ipsec-operator mesh v1 spi',
        request.meshUid,
        request.receiver,
        request.sender,
        request.family,
        request.senderGeneration,
        request.receiverGeneration,
        request.senderBootId,
        request.receiverBootId,
        attempt,
      ]),
    )
    .digest();
  return MIN_SPI + (digest.readUInt32BE(0) % SPI_SPACE);
}

export class SpiExhaustedError extends Error {
  constructor(request: SpiRequest) {
    super(
      `no free SPI for the mesh SA ${request.sender} -> ${request.receiver} (${request.family}, generations ${request.senderGeneration}/${request.receiverGeneration}) after ${MAX_SPI_ATTEMPTS} candidates`,
    );
    this.name = 'SpiExhaustedError';
  }
}

/** The first candidate not in `taken` (see the module comment). */
export function allocateSpi(request: SpiRequest, taken: (spi: number) => boolean): number {
  for (let attempt = 0; attempt < MAX_SPI_ATTEMPTS; attempt++) {
    const candidate = spiCandidate(request, attempt);
    if (!taken(candidate)) return candidate;
  }
  throw new SpiExhaustedError(request);
}
