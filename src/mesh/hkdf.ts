/**
 * HKDF-SHA256 (RFC 5869), the extract-and-expand step that turns an X25519 shared secret into
 * SA keys. Node's own `crypto.hkdfSync` (OpenSSL) does the work; this module only fixes the
 * hash and converts the result, so that the mesh never depends on a third-party KDF.
 */
import { hkdfSync } from 'node:crypto';

/** RFC 5869 caps the output at 255 hash lengths. */
export const HKDF_SHA256_MAX_LENGTH = 255 * 32;

export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > HKDF_SHA256_MAX_LENGTH) {
    throw new RangeError(`HKDF-SHA256 output length must be 1..${HKDF_SHA256_MAX_LENGTH} bytes, got ${length}`);
  }
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, length));
}
