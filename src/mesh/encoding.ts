/**
 * Unambiguous byte strings for key derivation and SPI hashing: each field is a 2-byte
 * big-endian length followed by its bytes, so that ("ab", "c") and ("a", "bc") can never
 * produce the same input (concatenation alone would).
 */
export type Field = string | number | Uint8Array;

export function encodeFields(fields: readonly Field[]): Buffer {
  const parts: Buffer[] = [];
  for (const field of fields) {
    const bytes = typeof field === 'string' ? Buffer.from(field, 'utf8') : typeof field === 'number' ? u64(field) : Buffer.from(field);
    if (bytes.length > 0xffff) throw new RangeError(`a derivation field is limited to 65535 bytes, got ${bytes.length}`);
    const length = Buffer.alloc(2);
    length.writeUInt16BE(bytes.length);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}

function u64(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`a numeric derivation field must be a non-negative integer, got ${value}`);
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(value));
  return bytes;
}
