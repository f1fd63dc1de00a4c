/**
 * Netlink attributes (struct nlattr + payload, 4-byte aligned), in the style of
 * mdlayher/netlink: an encoder and a decoder that keep their first error, so callers write a
 * straight sequence of calls and check once at the end.
 */
import { nlaAlign, NLA_HDRLEN } from './align.js';
import { NetlinkCodecError } from './codec-error.js';
import { NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_TYPE_MASK } from './constants.js';
import type { StructLayout } from './layout.js';

/** Turns an attribute type into its name for messages (`XFRMA_ALG_AEAD`). */
export type AttributeNamer = (type: number) => string;

const numbered: AttributeNamer = (type) => `attribute ${type}`;

/** The largest nla_len: a u16 holding header + payload. */
const MAX_ATTRIBUTE_LENGTH = 0xffff;

/**
 * Builds a message body: an optional fixed header (the family struct) followed by attributes.
 * Once a call fails, later calls do nothing and `finish()` throws that first error.
 */
export class AttributeEncoder {
  #buffer: Buffer;
  #length = 0;
  #error: NetlinkCodecError | undefined;

  constructor(
    /** What is being built, for error messages: `XFRM_MSG_NEWSA`. */
    readonly where: string,
    private readonly names: AttributeNamer = numbered,
    initialCapacity = 512,
  ) {
    // Not zero-filled (pooled, cheap): every byte up to #length is written by the methods
    // below, padding included, and finish() copies out only those.
    this.#buffer = Buffer.allocUnsafe(initialCapacity);
  }

  get error(): NetlinkCodecError | undefined {
    return this.#error;
  }

  /** Bytes written so far (aligned). */
  get length(): number {
    return this.#length;
  }

  /** Records a failure found by the caller (validation), unless one is already recorded. */
  fail(detail: string): this {
    this.#error ??= new NetlinkCodecError(this.where, detail);
    return this;
  }

  /**
   * Runs a step that may throw (conversions, struct encoding) and records its failure as this
   * encoder's error, prefixed with `what`. Returns undefined when it failed or an error was
   * already recorded, so the caller skips the attribute.
   */
  attempt<R>(what: string, run: () => R): R | undefined {
    if (this.#error) return undefined;
    try {
      return run();
    } catch (error) {
      // Codec errors already carry `where`: keep only their detail.
      const detail = error instanceof NetlinkCodecError ? error.detail : error instanceof Error ? error.message : String(error);
      this.fail(`${what}: ${detail}`);
      return undefined;
    }
  }

  /** Raw bytes at the current position, padded to 4 (the fixed struct that starts a message). */
  header(bytes: Uint8Array): this {
    if (this.#error) return this;
    const space = nlaAlign(bytes.length);
    this.#reserve(space);
    this.#buffer.set(bytes, this.#length);
    this.#buffer.fill(0, this.#length + bytes.length, this.#length + space);
    this.#length += space;
    return this;
  }

  /** Encodes `value` with `layout` as the fixed header of the message, in place. */
  headerStruct<T extends object>(layout: StructLayout<T>, value: T, what = `${layout.name} header`): this {
    if (this.#error) return this;
    const space = nlaAlign(layout.size);
    this.#reserve(space);
    const start = this.#length;
    const written = this.attempt(what, () => {
      layout.encodeInto(this.#buffer, start, value);
      this.#buffer.fill(0, start + layout.size, start + space);
      return true;
    });
    if (written) this.#length += space;
    return this;
  }

  bytes(type: number, data: Uint8Array): this {
    if (this.#error) return this;
    if (!this.#checkType(type)) return this;
    const length = NLA_HDRLEN + data.length;
    if (length > MAX_ATTRIBUTE_LENGTH) {
      return this.fail(`${this.names(type)}: payload of ${data.length} bytes exceeds the nla_len limit (${MAX_ATTRIBUTE_LENGTH - NLA_HDRLEN})`);
    }
    const space = nlaAlign(length);
    this.#reserve(space);
    const start = this.#length;
    this.#buffer.writeUInt16LE(length, start);
    this.#buffer.writeUInt16LE(type, start + 2);
    this.#buffer.set(data, start + NLA_HDRLEN);
    this.#buffer.fill(0, start + length, start + space);
    this.#length += space;
    return this;
  }

  u8(type: number, value: number): this {
    return this.#integer(type, value, 1, 0xff);
  }

  u16(type: number, value: number): this {
    return this.#integer(type, value, 2, 0xffff);
  }

  u32(type: number, value: number): this {
    return this.#integer(type, value, 4, 0xffff_ffff);
  }

  u64(type: number, value: bigint): this {
    if (this.#error) return this;
    if (value < 0n || value > 0xffff_ffff_ffff_ffffn) return this.fail(`${this.names(type)}: ${value} does not fit a u64`);
    const data = Buffer.alloc(8);
    data.writeBigUInt64LE(value);
    return this.bytes(type, data);
  }

  /** A NUL-terminated string (NLA_NUL_STRING / NLA_STRING). */
  string(type: number, value: string): this {
    return this.bytes(type, Buffer.concat([Buffer.from(value, 'utf8'), Buffer.alloc(1)]));
  }

  /** A zero-length attribute whose presence is the value (NLA_FLAG). */
  flag(type: number): this {
    return this.bytes(type, Buffer.alloc(0));
  }

  /** A struct payload encoded by its layout (padding zeroed). */
  struct<T extends object>(type: number, layout: StructLayout<T>, value: T): this {
    if (this.#error) return this;
    if (!this.#checkType(type)) return this;
    const length = NLA_HDRLEN + layout.size;
    if (length > MAX_ATTRIBUTE_LENGTH) return this.fail(`${this.names(type)}: payload of ${layout.size} bytes exceeds the nla_len limit (${MAX_ATTRIBUTE_LENGTH - NLA_HDRLEN})`);
    const space = nlaAlign(length);
    this.#reserve(space);
    const start = this.#length;
    // Written in place; the attribute counts only once the struct encoded.
    const written = this.attempt(this.names(type), () => {
      layout.encodeInto(this.#buffer, start + NLA_HDRLEN, value);
      return true;
    });
    if (!written) return this;
    this.#buffer.writeUInt16LE(length, start);
    this.#buffer.writeUInt16LE(type, start + 2);
    this.#buffer.fill(0, start + length, start + space);
    this.#length += space;
    return this;
  }

  /**
   * A nested attribute: `build` adds the children to this same encoder; the length slot is
   * filled in when it returns (NLA_F_NESTED set in the type).
   */
  nested(type: number, build: (encoder: this) => void): this {
    if (this.#error) return this;
    if (!this.#checkType(type)) return this;
    this.#reserve(NLA_HDRLEN);
    const start = this.#length;
    this.#length += NLA_HDRLEN;
    build(this);
    if (this.#error) return this;
    const length = this.#length - start;
    if (length > MAX_ATTRIBUTE_LENGTH) return this.fail(`${this.names(type)}: nested payload of ${length} bytes exceeds nla_len`);
    this.#buffer.writeUInt16LE(length, start);
    this.#buffer.writeUInt16LE(type | NLA_F_NESTED, start + 2);
    return this;
  }

  /** The encoded bytes; throws the first recorded error. */
  finish(): Buffer {
    if (this.#error) throw this.#error;
    return Buffer.from(this.#buffer.subarray(0, this.#length));
  }

  #integer(type: number, value: number, size: 1 | 2 | 4, max: number): this {
    if (this.#error) return this;
    if (!Number.isInteger(value) || value < 0 || value > max) {
      return this.fail(`${this.names(type)}: ${String(value)} does not fit a u${size * 8}`);
    }
    const data = Buffer.alloc(size);
    data.writeUIntLE(value, 0, size);
    return this.bytes(type, data);
  }

  #checkType(type: number): boolean {
    if (!Number.isInteger(type) || type <= 0 || type > NLA_TYPE_MASK) {
      this.fail(`attribute type ${String(type)} is outside 1..${NLA_TYPE_MASK}`);
      return false;
    }
    return true;
  }

  #reserve(extra: number): void {
    const needed = this.#length + extra;
    if (needed <= this.#buffer.length) return;
    let capacity = this.#buffer.length * 2;
    while (capacity < needed) capacity *= 2;
    const grown = Buffer.allocUnsafe(capacity);
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
  }
}

/** One attribute as found in a buffer. */
export interface RawAttribute {
  /** nla_type without the NESTED / NET_BYTEORDER flag bits. */
  readonly type: number;
  readonly nested: boolean;
  readonly netByteOrder: boolean;
  /** Offset of the nlattr header inside the decoded buffer. */
  readonly offset: number;
  readonly payload: Buffer;
}

/**
 * Reads a run of attributes. The constructor validates the whole buffer (every nla_len at least
 * the header and inside the buffer); an invalid buffer yields no attributes and an error.
 * Typed getters read the current attribute and record the first length mismatch, naming the
 * attribute and the lengths seen.
 */
export class AttributeDecoder {
  readonly #attributes: RawAttribute[] = [];
  #index = -1;
  #error: NetlinkCodecError | undefined;

  constructor(
    buffer: Buffer,
    readonly where: string,
    private readonly names: AttributeNamer = numbered,
  ) {
    let offset = 0;
    while (offset < buffer.length) {
      const remaining = buffer.length - offset;
      if (remaining < NLA_HDRLEN) {
        this.#error = new NetlinkCodecError(where, `${remaining} trailing bytes at offset ${offset} are too short for an nlattr header`);
        this.#attributes.length = 0;
        return;
      }
      const length = buffer.readUInt16LE(offset);
      const rawType = buffer.readUInt16LE(offset + 2);
      if (length < NLA_HDRLEN || length > remaining) {
        this.#error = new NetlinkCodecError(
          where,
          `${names(rawType & NLA_TYPE_MASK)} at offset ${offset} has nla_len ${length}, but ${remaining} bytes remain (minimum ${NLA_HDRLEN})`,
        );
        this.#attributes.length = 0;
        return;
      }
      this.#attributes.push({
        type: rawType & NLA_TYPE_MASK,
        nested: (rawType & NLA_F_NESTED) !== 0,
        netByteOrder: (rawType & NLA_F_NET_BYTEORDER) !== 0,
        offset,
        payload: buffer.subarray(offset + NLA_HDRLEN, offset + length),
      });
      offset += Math.min(nlaAlign(length), remaining);
    }
  }

  get error(): NetlinkCodecError | undefined {
    return this.#error;
  }

  /** All attributes, validated. Empty when the buffer was invalid. */
  get all(): readonly RawAttribute[] {
    return this.#attributes;
  }

  /** Advances to the next attribute; false at the end or after an error. */
  next(): boolean {
    if (this.#error) return false;
    this.#index += 1;
    return this.#index < this.#attributes.length;
  }

  get type(): number {
    return this.#current().type;
  }

  get payload(): Buffer {
    return this.#current().payload;
  }

  get current(): RawAttribute {
    return this.#current();
  }

  fail(detail: string): void {
    this.#error ??= new NetlinkCodecError(this.where, detail);
  }

  u8(): number {
    return this.#atLeast(1) ? this.payload.readUInt8(0) : 0;
  }

  u16(): number {
    return this.#atLeast(2) ? this.payload.readUInt16LE(0) : 0;
  }

  u32(): number {
    return this.#atLeast(4) ? this.payload.readUInt32LE(0) : 0;
  }

  s32(): number {
    return this.#atLeast(4) ? this.payload.readInt32LE(0) : 0;
  }

  u64(): bigint {
    return this.#atLeast(8) ? this.payload.readBigUInt64LE(0) : 0n;
  }

  /** A string up to the first NUL (or the whole payload). */
  string(): string {
    const payload = this.payload;
    const end = payload.indexOf(0);
    return payload.subarray(0, end === -1 ? payload.length : end).toString('utf8');
  }

  /** A copy of the payload. */
  bytes(): Buffer {
    return Buffer.from(this.payload);
  }

  /** The payload as a struct; undefined (and an error) when shorter than sizeof. */
  struct<T extends object>(layout: StructLayout<T>): T | undefined {
    if (!this.#atLeast(layout.size, layout.name)) return undefined;
    return layout.read(this.payload, 0);
  }

  /** A decoder over the current attribute's payload. */
  nested(): AttributeDecoder {
    const child = new AttributeDecoder(this.payload, `${this.names(this.type)} in ${this.where}`, this.names);
    if (child.error) this.fail(child.error.detail);
    return child;
  }

  /** Throws the first error recorded while reading. */
  finish(): void {
    if (this.#error) throw this.#error;
  }

  #current(): RawAttribute {
    const attribute = this.#attributes[this.#index];
    if (!attribute) throw new Error('AttributeDecoder: no current attribute (call next() first)');
    return attribute;
  }

  #atLeast(size: number, what = `${size}-byte value`): boolean {
    const length = this.payload.length;
    if (length >= size) return true;
    this.fail(`${this.names(this.type)} has a ${length}-byte payload, ${what} needs ${size}`);
    return false;
  }
}
