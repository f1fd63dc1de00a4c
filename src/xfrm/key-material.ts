import { inspect } from 'node:util';
import { timingSafeEqual } from 'node:crypto';

const REDACTED = '[key material redacted]';

/**
 * Secret bytes (an encryption, authentication or AEAD key).
 *
 * Keys travel from Secrets through the model, the planner and the codec, and every one of
 * those layers logs, prints plans or formats errors. Wrapping the bytes in a class whose
 * string, JSON and inspect forms are redacted means an accidental `${sa}` or
 * `JSON.stringify(plan)` can never put a key into a log line, an Event, a status or a metric.
 * The bytes are reachable only through `reveal()`, which the codec (and `import`, whose job is
 * to write Secrets) call on purpose.
 */
export class KeyMaterial {
  readonly #bytes: Buffer;

  private constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  /** A key with its own copy of `bytes` (callers may reuse their buffer). */
  static fromBytes(bytes: Uint8Array): KeyMaterial {
    return new KeyMaterial(Buffer.from(bytes));
  }

  /**
   * A key over `bytes` without copying them, for bytes nobody writes again: the payload of a
   * received datagram (each arrives in a buffer of its own). A dump then copies no key at all,
   * neither ours nor other software's; `reveal()` still hands out a copy.
   */
  static borrow(bytes: Buffer): KeyMaterial {
    return new KeyMaterial(bytes);
  }

  /** Length of the key in bits, as the kernel's alg_key_len counts it. */
  get bits(): number {
    return this.#bytes.length * 8;
  }

  get byteLength(): number {
    return this.#bytes.length;
  }

  /** The raw bytes. Call only where the key must leave the process on purpose. */
  reveal(): Buffer {
    return Buffer.from(this.#bytes);
  }

  /** Constant-time comparison, so that diffing desired against observed keys leaks nothing. */
  equals(other: KeyMaterial): boolean {
    const a = this.#bytes;
    const b = other.#bytes;
    return a.length === b.length && timingSafeEqual(a, b);
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `KeyMaterial(${this.bits} bits, ${REDACTED})`;
  }
}
