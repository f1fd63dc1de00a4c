/**
 * Layout tables for the C structs that travel over netlink, and the one encoder and decoder
 * that follow from them.
 *
 * Every kernel struct is described once, as a table of (field, offset, type) whose offsets are
 * the x86-64 C layout including implicit padding; `test/unit/xfrm-layout.test.ts` compiles a
 * probe against the system headers and checks every offset and size. Encoding starts from a
 * zero-filled buffer of the struct's size, so all padding is zero: the kernel compares some
 * structs byte for byte (a policy's identity includes its selector bytes).
 *
 * Byte order is part of the field type: `be16`/`be32` are the kernel's __be16/__be32 (ports,
 * SPIs), everything else is host order. The only host this project targets is little-endian
 * x86-64, which the module checks when it loads rather than silently producing wrong bytes.
 */
import { endianness } from 'node:os';
import { NetlinkCodecError } from './codec-error.js';

if (endianness() !== 'LE') {
  throw new Error('netlink layouts assume a little-endian host (x86-64); this host is big-endian');
}

export type ByteOrder = 'host' | 'big' | 'none';

/** How one C type is read and written. */
export interface FieldType<V> {
  /** C-like name, used in error messages and the layout test (`__be32`, `char[64]`). */
  readonly name: string;
  readonly size: number;
  readonly byteOrder: ByteOrder;
  read(buffer: Buffer, offset: number): V;
  /** Throws a plain Error on a value that does not fit; the struct writer names the field. */
  write(buffer: Buffer, offset: number, value: V): void;
  /** The value of all-zero bytes. */
  zero(): V;
}

function integer(name: string, size: 1 | 2 | 4, byteOrder: 'host' | 'big', signed = false): FieldType<number> {
  const min = signed ? -(2 ** (size * 8 - 1)) : 0;
  const max = signed ? 2 ** (size * 8 - 1) - 1 : 2 ** (size * 8) - 1;
  const order = size === 1 ? 'none' : byteOrder;
  // The fixed-size Buffer accessors are much faster than the generic read/writeUIntLE(size).
  const big = byteOrder === 'big';
  const read: (buffer: Buffer, offset: number) => number =
    size === 1
      ? signed
        ? (b, o) => b.readInt8(o)
        : (b, o) => b.readUInt8(o)
      : size === 2
        ? big
          ? signed
            ? (b, o) => b.readInt16BE(o)
            : (b, o) => b.readUInt16BE(o)
          : signed
            ? (b, o) => b.readInt16LE(o)
            : (b, o) => b.readUInt16LE(o)
        : big
          ? signed
            ? (b, o) => b.readInt32BE(o)
            : (b, o) => b.readUInt32BE(o)
          : signed
            ? (b, o) => b.readInt32LE(o)
            : (b, o) => b.readUInt32LE(o);
  const write: (buffer: Buffer, offset: number, value: number) => void =
    size === 1
      ? signed
        ? (b, o, v) => b.writeInt8(v, o)
        : (b, o, v) => b.writeUInt8(v, o)
      : size === 2
        ? big
          ? signed
            ? (b, o, v) => b.writeInt16BE(v, o)
            : (b, o, v) => b.writeUInt16BE(v, o)
          : signed
            ? (b, o, v) => b.writeInt16LE(v, o)
            : (b, o, v) => b.writeUInt16LE(v, o)
        : big
          ? signed
            ? (b, o, v) => b.writeInt32BE(v, o)
            : (b, o, v) => b.writeUInt32BE(v, o)
          : signed
            ? (b, o, v) => b.writeInt32LE(v, o)
            : (b, o, v) => b.writeUInt32LE(v, o);
  return {
    name,
    size,
    byteOrder: order,
    read,
    write(buffer, offset, value) {
      if (!Number.isInteger(value) || value < min || value > max) {
        throw new Error(`${String(value)} does not fit ${name} (${min}..${max})`);
      }
      write(buffer, offset, value);
    },
    zero: () => 0,
  };
}

export const u8 = integer('__u8', 1, 'host');
export const u16 = integer('__u16', 2, 'host');
export const u32 = integer('__u32', 4, 'host');
export const s32 = integer('int', 4, 'host', true);
/** Network byte order (__be16): ports, encapsulation ports. */
export const be16 = integer('__be16', 2, 'big');
/** Network byte order (__be32): SPIs. */
export const be32 = integer('__be32', 4, 'big');

const U64_MAX = 0xffff_ffff_ffff_ffffn;

export const u64: FieldType<bigint> = {
  name: '__u64',
  size: 8,
  byteOrder: 'host',
  // Most u64 fields on the wire are lifetimes: all ones (XFRM_INF) or zero. Those two are read
  // and written as two u32 halves and read as shared constants, without making a BigInt (a dump
  // of 10,000 policies holds 120,000 of them).
  read(buffer, offset) {
    const low = buffer.readUInt32LE(offset);
    const high = buffer.readUInt32LE(offset + 4);
    if (low === 0xffff_ffff && high === 0xffff_ffff) return U64_MAX;
    if (high === 0) return low === 0 ? 0n : BigInt(low);
    return buffer.readBigUInt64LE(offset);
  },
  write(buffer, offset, value) {
    if (value === U64_MAX || value === 0n) {
      const half = value === 0n ? 0 : 0xffff_ffff;
      buffer.writeUInt32LE(half, offset);
      buffer.writeUInt32LE(half, offset + 4);
      return;
    }
    if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
      throw new Error(`${String(value)} does not fit __u64`);
    }
    buffer.writeBigUInt64LE(value, offset);
  },
  zero: () => 0n,
};

/**
 * Opaque bytes of a fixed size (addresses, unions); shorter values are zero-padded. Reading
 * gives a view into the buffer read from, not a copy: the decoders turn these bytes into text
 * at once (addresses), and a dump of 10,000 policies copied 40,000 of them only to do that.
 */
export function bytes(name: string, size: number): FieldType<Buffer> {
  return {
    name,
    size,
    byteOrder: 'none',
    read: (buffer, offset) => buffer.subarray(offset, offset + size),
    write(buffer, offset, value) {
      if (value.length > size) throw new Error(`${value.length} bytes do not fit ${name} (${size} bytes)`);
      buffer.fill(0, offset, offset + size);
      value.copy(buffer, offset);
    },
    zero: () => Buffer.alloc(size),
  };
}

/** A NUL-terminated string in a fixed char array (alg_name[64]): at most size-1 bytes of text. */
export function cString(size: number): FieldType<string> {
  return {
    name: `char[${size}]`,
    size,
    byteOrder: 'none',
    read(buffer, offset) {
      const field = buffer.subarray(offset, offset + size);
      const end = field.indexOf(0);
      return field.subarray(0, end === -1 ? size : end).toString('latin1');
    },
    write(buffer, offset, value) {
      const text = Buffer.from(value, 'latin1');
      if (text.length > size - 1) {
        throw new Error(`"${value}" is ${text.length} bytes, char[${size}] holds at most ${size - 1} and a NUL`);
      }
      if (text.includes(0)) throw new Error(`"${value}" contains a NUL byte`);
      buffer.fill(0, offset, offset + size);
      text.copy(buffer, offset);
    },
    zero: () => '',
  };
}

/** A value that does not fit its field, with the path of field names down to it. */
class FieldWriteError extends Error {
  constructor(
    readonly path: readonly string[],
    readonly reason: string,
  ) {
    super(`${path.join('.')}: ${reason}`);
  }
}

export interface FieldSpec<V> {
  readonly offset: number;
  readonly type: FieldType<V>;
}

export type FieldSpecs<T> = { readonly [K in keyof T]: FieldSpec<T[K]> };

/** One row of a layout table, as the layout test and error messages see it. */
export interface FieldRow {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly typeName: string;
  readonly byteOrder: ByteOrder;
}

/**
 * A C struct: its size (sizeof, padding included), its fields, and optionally where a
 * flexible array member starts (`alg_key[]`, `bmp[]`), which the codec handles itself.
 */
export class StructLayout<T extends object> implements FieldType<T> {
  readonly name: string;
  readonly byteOrder = 'none' as const;
  readonly rows: readonly FieldRow[];
  /** The field table as a list, computed once (encode/decode are hot in big batches). */
  readonly #entries: ReadonlyArray<readonly [string, FieldSpec<unknown>]>;

  constructor(
    readonly cName: string,
    readonly size: number,
    readonly fields: FieldSpecs<T>,
    /** The flexible array member (name and offset), if the struct ends with one. */
    readonly flexibleArray?: { readonly name: string; readonly offset: number },
  ) {
    this.name = cName.endsWith('_t') ? cName : `struct ${cName}`;
    const rows = Object.entries(fields as Record<string, FieldSpec<unknown>>).map(([field, spec]) => ({
      name: field,
      offset: spec.offset,
      size: spec.type.size,
      typeName: spec.type.name,
      byteOrder: spec.type.byteOrder,
    }));
    rows.sort((a, b) => a.offset - b.offset);
    let end = 0;
    for (const row of rows) {
      if (row.offset < end) throw new Error(`layout ${this.name}: field ${row.name} at ${row.offset} overlaps the previous field`);
      end = row.offset + row.size;
      if (end > size) throw new Error(`layout ${this.name}: field ${row.name} ends at ${end}, beyond sizeof ${size}`);
    }
    if (flexibleArray && flexibleArray.offset < end) {
      throw new Error(`layout ${this.name}: flexible array ${flexibleArray.name} overlaps the fields`);
    }
    this.rows = rows;
    this.#entries = Object.entries(fields as Record<string, FieldSpec<unknown>>);
    this.#read = compileReader<T>(this.#entries);
    this.#fastWrite = compileWriter(this.#entries);
    this.#writers = this.#entries.map(([field, spec]) => {
      const write = spec.type.write.bind(spec.type);
      const at = spec.offset;
      return (buffer: Buffer, offset: number, value: object) => {
        const fieldValue = (value as Record<string, unknown>)[field];
        if (fieldValue === undefined) throw new Error('is missing');
        write(buffer, offset + at, fieldValue);
      };
    });
  }

  readonly #read: (buffer: Buffer, offset: number) => T;
  readonly #fastWrite: (buffer: Buffer, offset: number, value: object) => void;
  readonly #writers: ReadonlyArray<(buffer: Buffer, offset: number, value: object) => void>;

  read(buffer: Buffer, offset: number): T {
    return this.#read(buffer, offset);
  }

  write(buffer: Buffer, offset: number, value: T): void {
    try {
      this.#fastWrite(buffer, offset, value);
    } catch {
      // The straight-line writer does not say which field failed: the field-by-field one below
      // fails the same way (every field type checks before it writes) and names the path.
      this.#writeFieldByField(buffer, offset, value);
      throw new Error(`${this.name}: the compiled writer failed where the table writer did not`);
    }
  }

  #writeFieldByField(buffer: Buffer, offset: number, value: T): void {
    let field = 0;
    try {
      for (; field < this.#writers.length; field++) this.#writers[field]!(buffer, offset, value);
    } catch (error) {
      const name = this.#entries[field]![0];
      if (error instanceof FieldWriteError) throw new FieldWriteError([name, ...error.path], error.reason);
      throw new FieldWriteError([name], error instanceof Error ? error.message : String(error));
    }
  }

  zero(): T {
    const out: Record<string, unknown> = {};
    for (const [field, spec] of this.#entries) {
      out[field] = spec.type.zero();
    }
    return out as T;
  }

  /** A zero-filled buffer of sizeof(struct) with `value` written into it. */
  encode(value: T): Buffer {
    const buffer = Buffer.alloc(this.size);
    this.encodeInto(buffer, 0, value);
    return buffer;
  }

  /**
   * Zeroes sizeof(struct) bytes at `offset` of `buffer` and writes `value` there (what `encode`
   * does, without a buffer of its own: encoders write structs in place). Same errors as `encode`.
   */
  encodeInto(buffer: Buffer, offset: number, value: T): void {
    buffer.fill(0, offset, offset + this.size);
    try {
      this.write(buffer, offset, value);
    } catch (error) {
      if (error instanceof FieldWriteError) {
        throw new NetlinkCodecError(`encoding ${this.name}`, `${this.name}.${error.path.join('.')}: ${error.reason}`);
      }
      throw error;
    }
  }

  /** Reads the struct at the start of `buffer`, which must hold at least sizeof(struct) bytes. */
  decode(buffer: Buffer, where: string = this.name): T {
    if (buffer.length < this.size) {
      throw new NetlinkCodecError(where, `${buffer.length} bytes, ${this.name} needs ${this.size}`);
    }
    return this.read(buffer, 0);
  }
}

/**
 * A reader that builds the struct's object as one object literal with every field in table
 * order. Built from the table (field names are identifiers checked below, offsets numbers), it
 * gives each struct one fixed object shape, which V8 reads fast everywhere downstream; filling
 * an empty object field by field in a loop was the top entry of a dump's profile (~40% of
 * decoding 10,000 policies).
 */
function compileReader<T>(entries: ReadonlyArray<readonly [string, FieldSpec<unknown>]>): (buffer: Buffer, offset: number) => T {
  for (const [field, spec] of entries) {
    if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(field) || !Number.isInteger(spec.offset)) throw new Error(`layout field ${field}: not an identifier with an integer offset`);
  }
  const readers = entries.map(([, spec]) => spec.type.read.bind(spec.type));
  const body = `return (buffer, offset) => ({ ${entries.map(([field, spec], i) => `${field}: readers[${i}](buffer, offset + ${spec.offset})`).join(', ')} });`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated from the layout table only, see above
  return new Function('readers', body)(readers) as (buffer: Buffer, offset: number) => T;
}

/**
 * A writer for the whole struct as one straight-line function (the writing twin of
 * compileReader): every field's writer called in table order, a missing field an error. The
 * per-field closures it replaces were most of the cost of encoding a request (a batch of
 * 10,000 policies writes 10,000 selectors, lifetimes and templates). On any error the caller
 * runs the table writer again, which names the failing field.
 */
function compileWriter(entries: ReadonlyArray<readonly [string, FieldSpec<unknown>]>): (buffer: Buffer, offset: number, value: object) => void {
  const writers = entries.map(([, spec]) => spec.type.write.bind(spec.type));
  const lines = entries.map(
    ([field, spec], i) => `v = value.${field}; if (v === undefined) throw missing; writers[${i}](buffer, offset + ${spec.offset}, v);`,
  );
  const body = `return (buffer, offset, value) => { let v; ${lines.join(' ')} };`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated from the layout table only (names checked by compileReader)
  return new Function('writers', 'missing', body)(writers, new Error('is missing')) as (buffer: Buffer, offset: number, value: object) => void;
}

/** Declares a struct layout; T is inferred from the field table. */
export function struct<T extends object>(
  cName: string,
  size: number,
  fields: FieldSpecs<T>,
  flexibleArray?: { readonly name: string; readonly offset: number },
): StructLayout<T> {
  return new StructLayout<T>(cName, size, fields, flexibleArray);
}

/** A field at `offset` of `type`: `at(32, be16)`. */
export function at<V>(offset: number, type: FieldType<V>): FieldSpec<V> {
  return { offset, type };
}
