/**
 * The one error type of the codecs (framing, attributes, struct layouts, XFRM messages).
 *
 * A codec error is a bug or a garbled datagram, never a kernel refusal (that is a
 * NetlinkError): it names the structure or attribute being read or written and the lengths
 * seen, so a hex dump is rarely needed to understand it.
 */
export class NetlinkCodecError extends Error {
  override readonly name: string = 'NetlinkCodecError';

  constructor(
    /** What was being encoded or decoded, e.g. `XFRMA_ALG_AEAD in XFRM_MSG_NEWSA`. */
    readonly where: string,
    readonly detail: string,
  ) {
    super(`${where}: ${detail}`);
  }
}

/** Wraps any thrown value as a codec error of `where`, keeping codec errors as they are. */
export function asCodecError(where: string, error: unknown): NetlinkCodecError {
  if (error instanceof NetlinkCodecError) return error;
  return new NetlinkCodecError(where, error instanceof Error ? error.message : String(error));
}

/**
 * A well-formed entry the model does not represent (a Mobile IPv6 SA, a per-socket policy, a
 * mode newer than this code). Dumps skip these instead of failing: entries the operator did
 * not create must never break it.
 */
export class UnsupportedEntryError extends NetlinkCodecError {
  override readonly name = 'UnsupportedEntryError';
}
