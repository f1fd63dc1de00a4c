/**
 * A fast reader for the YAML that manifests are usually written in, or nothing.
 *
 * The general reader (./yaml-documents.ts) builds the `yaml` package's full document model for
 * every document: about 0.3 ms each, so 10,000 resources took seconds before the kernel saw
 * any of them (issue 10). Most manifests use a small, regular part of YAML: block mappings and
 * sequences, one `key: value` per line, flow collections of plain or simply quoted scalars on
 * one line, `---` between documents. This module reads exactly that part, line by line, and
 * resolves each plain scalar with the general reader's own `resolvePlain` (go-yaml's rules), so
 * a stream it accepts gives the very values the general reader would give.
 *
 * Anything else, however harmless (a comment, an anchor, a tag, a block scalar, a multi-line
 * flow collection, a tab, a duplicate key, an empty document, an odd indentation), makes it
 * return undefined for the whole stream, and the general reader reads it. So every error, with
 * its line and column, always comes from the general reader: this path never reports one.
 */
import { MAX_DEPTH, MAX_EXPANDED_NODES, resolvePlain, type YamlDocument } from './yaml-documents.js';

/** Thrown inside this module to give up on the stream; never escapes it. */
class NotSimple extends Error {}
const giveUp = (): never => {
  throw new NotSimple();
};

/** Characters that start something other than a plain scalar, or that this reader leaves alone. */
const SPECIAL_START = new Set(['&', '*', '!', '|', '>', '%', '@', '`', '#', '{', '}', '[', ']', ',', '?', ':', '-', "'", '"']);
const KEY = /^[A-Za-z0-9_][A-Za-z0-9_./-]*$/;
/** Quoted scalars without escapes or embedded quotes: their value is their text. */
const SINGLE_QUOTED = /^'([^']*)'$/;
const DOUBLE_QUOTED = /^"([^"\\]*)"$/;
/** Control characters, byte-order marks, Unicode line separators: YAML has rules of its own for them. */
// eslint-disable-next-line no-control-regex
const UNUSUAL_CHARACTER = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/;

/** The documents of `text`, or undefined when it uses anything beyond the simple form. */
export function readSimpleYaml(text: string): YamlDocument[] | undefined {
  // Whole-stream refusals first: cheap, and they keep the line reader simple.
  if (text.includes('\t') || text.includes('\r') || text.includes('#') || text.includes('\\') || UNUSUAL_CHARACTER.test(text)) return undefined;
  try {
    return new Reader(text).documents();
  } catch (error) {
    if (error instanceof NotSimple) return undefined;
    throw error;
  }
}

interface Line {
  readonly indent: number;
  /** The line without its indentation and trailing spaces. */
  readonly text: string;
}

class Reader {
  readonly #lines: string[];
  #position = 0;
  #nodes = 0;

  constructor(text: string) {
    this.#lines = text.split('\n');
  }

  documents(): YamlDocument[] {
    const documents: YamlDocument[] = [];
    // A leading `---` starts the first document; it does not end an empty one.
    this.#skipBlank();
    if (this.#peekMarker()) this.#position += 1;
    for (;;) {
      this.#nodes = 0;
      this.#skipBlank();
      const line = this.#peek();
      // An empty document (`---` at the end, or two in a row) has edge cases of its own.
      if (line === undefined || line.text === '---') giveUp();
      if (line!.indent !== 0) giveUp();
      const value = this.#mapping(0, 1);
      documents.push({ index: documents.length + 1, value, problems: [] });
      this.#skipBlank();
      if (this.#position >= this.#lines.length) return documents;
      if (!this.#peekMarker()) giveUp();
      this.#position += 1;
    }
  }

  #peekMarker(): boolean {
    return this.#lines[this.#position]?.trimEnd() === '---';
  }

  #skipBlank(): void {
    while (this.#position < this.#lines.length && this.#lines[this.#position]!.trim() === '') this.#position += 1;
  }

  /** The next non-blank line of this document, or undefined at its end. */
  #peek(): Line | undefined {
    this.#skipBlank();
    const raw = this.#lines[this.#position];
    if (raw === undefined) return undefined;
    const text = raw.trimEnd();
    if (text === '---' || text === '...') return text === '---' ? { indent: 0, text } : giveUp();
    const indent = text.length - text.trimStart().length;
    return { indent, text: text.slice(indent) };
  }

  #count(): void {
    this.#nodes += 1;
    if (this.#nodes > MAX_EXPANDED_NODES) giveUp();
  }

  /** A block mapping whose keys sit at column `indent`. */
  #mapping(indent: number, depth: number): Record<string, unknown> {
    if (depth > MAX_DEPTH) giveUp();
    this.#count();
    const object: Record<string, unknown> = {};
    for (;;) {
      const line = this.#peek();
      if (line === undefined || line.text === '---' || line.indent < indent) return object;
      if (line.indent > indent || line.text.startsWith('- ') || line.text === '-') giveUp();
      this.#position += 1;
      const [key, rest] = splitKey(line.text);
      if (Object.prototype.hasOwnProperty.call(object, key)) giveUp();
      object[key] = rest === '' ? this.#nested(indent, depth + 1) : this.#inline(rest, depth + 1);
    }
  }

  /** What follows `key:` on the next lines: a deeper mapping, a sequence, or nothing (null). */
  #nested(parentIndent: number, depth: number): unknown {
    const line = this.#peek();
    if (line === undefined || line.text === '---') return this.#scalarNull();
    if (line.text.startsWith('- ') || line.text === '-') {
      // A sequence may sit at its key's own column.
      if (line.indent < parentIndent) return this.#scalarNull();
      return this.#sequence(line.indent, depth);
    }
    if (line.indent <= parentIndent) return this.#scalarNull();
    return this.#mapping(line.indent, depth);
  }

  #scalarNull(): null {
    this.#count();
    return null;
  }

  /** A block sequence whose dashes sit at column `indent`. */
  #sequence(indent: number, depth: number): unknown[] {
    if (depth > MAX_DEPTH) giveUp();
    this.#count();
    const items: unknown[] = [];
    for (;;) {
      const line = this.#peek();
      if (line === undefined || line.text === '---' || line.indent < indent) return items;
      if (line.indent > indent) giveUp();
      if (!line.text.startsWith('- ')) {
        // A mapping key at the sequence's column ends it (the parent mapping goes on).
        if (line.text === '-') giveUp();
        return items;
      }
      const content = line.text.slice(2);
      const contentIndent = indent + 2 + (content.length - content.trimStart().length);
      const item = content.trimStart();
      if (item === '' || item.startsWith('- ')) giveUp();
      if (isKeyLine(item)) {
        // `- key: value` opens a mapping whose keys sit where `key` does.
        this.#lines[this.#position] = `${' '.repeat(contentIndent)}${item}`;
        items.push(this.#mapping(contentIndent, depth + 1));
      } else {
        this.#position += 1;
        items.push(this.#inline(item, depth + 1));
      }
    }
  }

  /** A value written on the line of its key or dash. */
  #inline(text: string, depth: number): unknown {
    const first = text.charAt(0);
    if (first === '{' || first === '[') {
      const flow = new FlowReader(text, () => this.#count());
      const value = flow.value(depth);
      if (!flow.atEnd()) giveUp();
      return value;
    }
    this.#count();
    const quoted = quotedScalar(text);
    if (quoted !== undefined) return intern(quoted);
    if (SPECIAL_START.has(first)) {
      // A leading '-' is fine for a negative number or a word, not for `- item`.
      if (first !== '-' || text.length === 1 || text.charAt(1) === ' ') giveUp();
    }
    // ': ' or a final ':' would make this a mapping; brackets mean flow syntax mid-scalar.
    if (text.includes(': ') || text.endsWith(':') || /[{}[\]]/.test(text) || text.includes(' -')) giveUp();
    return plainValue(text);
  }
}

/** Reads one flow collection from a single line: plain scalars without ':' and simple quotes. */
class FlowReader {
  #at = 0;

  constructor(
    private readonly text: string,
    private readonly count: () => void,
  ) {}

  atEnd(): boolean {
    this.#space();
    return this.#at === this.text.length;
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) giveUp();
    this.#space();
    const char = this.text.charAt(this.#at);
    if (char === '{') return this.#mapping(depth);
    if (char === '[') return this.#sequence(depth);
    this.count();
    return this.#scalar(false);
  }

  #mapping(depth: number): Record<string, unknown> {
    this.count();
    this.#at += 1;
    const object: Record<string, unknown> = {};
    this.#space();
    if (this.#take('}')) return object;
    for (;;) {
      this.#space();
      const key = this.#scalar(true);
      if (typeof key !== 'string' || !KEY.test(key) || key === '__proto__' || Object.prototype.hasOwnProperty.call(object, key)) giveUp();
      if (!this.#take(':') || this.text.charAt(this.#at) !== ' ') giveUp();
      object[key as string] = this.value(depth + 1);
      this.#space();
      if (this.#take('}')) return object;
      if (!this.#take(',')) giveUp();
    }
  }

  #sequence(depth: number): unknown[] {
    this.count();
    this.#at += 1;
    const items: unknown[] = [];
    this.#space();
    if (this.#take(']')) return items;
    for (;;) {
      items.push(this.value(depth + 1));
      this.#space();
      if (this.#take(']')) return items;
      if (!this.#take(',')) giveUp();
    }
  }

  /** A scalar up to the next flow indicator; a key's resolution is checked by the caller. */
  #scalar(isKey: boolean): unknown {
    const start = this.#at;
    const quote = this.text.charAt(start);
    if (quote === "'" || quote === '"') {
      const end = this.text.indexOf(quote, start + 1);
      if (end < 0) giveUp();
      this.#at = end + 1;
      const value = quotedScalar(this.text.slice(start, end + 1));
      if (value === undefined || isKey) return giveUp();
      return intern(value);
    }
    while (this.#at < this.text.length && !',[]{}:'.includes(this.text.charAt(this.#at))) this.#at += 1;
    const text = this.text.slice(start, this.#at).trimEnd();
    if (text === '' || SPECIAL_START.has(text.charAt(0)) && !(text.charAt(0) === '-' && text.length > 1 && text.charAt(1) !== ' ')) giveUp();
    if (text.includes(' -') || text.includes('  ')) giveUp();
    if (isKey) {
      if (!KEY.test(text) || typeof resolvePlain(text) !== 'string' || text.length > 1024) giveUp();
      return text;
    }
    return plainValue(text);
  }

  #take(char: string): boolean {
    if (this.text.charAt(this.#at) !== char) return false;
    this.#at += 1;
    return true;
  }

  #space(): void {
    while (this.text.charAt(this.#at) === ' ') this.#at += 1;
  }
}

function isKeyLine(text: string): boolean {
  const colon = text.indexOf(':');
  return colon > 0 && (colon === text.length - 1 || text.charAt(colon + 1) === ' ') && KEY.test(text.slice(0, colon));
}

/** `key: rest` or `key:` → [key, rest]; anything else gives up. */
function splitKey(text: string): [string, string] {
  const colon = text.indexOf(':');
  if (colon <= 0) giveUp();
  const key = text.slice(0, colon);
  if (!KEY.test(key) || key.length > 1024 || key === '__proto__' || typeof resolvePlain(key) !== 'string') giveUp();
  if (colon === text.length - 1) return [key, ''];
  if (text.charAt(colon + 1) !== ' ') giveUp();
  return [key, text.slice(colon + 2).trimStart()];
}

function quotedScalar(text: string): string | undefined {
  return (SINGLE_QUOTED.exec(text) ?? DOUBLE_QUOTED.exec(text))?.[1];
}

/** A plain scalar as the general reader resolves it; forms it would refuse are left to it. */
function plainValue(text: string): unknown {
  const value = resolvePlain(text);
  if (typeof value === 'number' && !Number.isFinite(value)) giveUp();
  if (typeof value === 'object' && value !== null) giveUp(); // the general reader's Ambiguous
  return typeof value === 'string' ? intern(value) : value;
}

/**
 * Short values repeat from document to document (`esp`, `transport`, `out`, `192.0.2.1/32`)
 * and the desired tables keep them: one string each instead of one per document (a heap
 * snapshot of `apply` of 10,000 policies held 10,001 copies of each of those three words).
 * Bounded: emptied when full.
 *
 * Only values shorter than 13 characters: V8 copies a substring that short, but makes a longer
 * one a view into the string it was cut from, so keeping a longer value here would keep the
 * whole manifest file alive (tried: the 2.4 MB text of 10,000 policies stayed in the heap).
 */
const INTERNED = new Map<string, string>();
const INTERNED_CAPACITY = 4096;
const INTERNED_MAX_LENGTH = 12;

function intern(text: string): string {
  if (text.length > INTERNED_MAX_LENGTH) return text;
  const known = INTERNED.get(text);
  if (known !== undefined) return known;
  if (INTERNED.size >= INTERNED_CAPACITY) INTERNED.clear();
  INTERNED.set(text, text);
  return text;
}
