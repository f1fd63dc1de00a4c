/**
 * YAML streams to plain values, read the way `kubectl` and the API server read them.
 *
 * kubectl converts YAML to JSON with sigs.k8s.io/yaml, which resolves plain scalars with
 * go-yaml v2, i.e. YAML 1.1 rules (go.yaml.in/yaml/v2 resolve.go): `010` is octal 8, `0x10`
 * hex 16, `0b11` binary 3, `0o10` octal 8, underscores are dropped (`1_000` is 1000), `09` is
 * the float 9, `yes`/`on`/`y` are true, `~` is null, dates stay strings. The `yaml` package
 * parses the syntax only (failsafe schema: every scalar a string, plus its style); this module
 * resolves plain scalars with go-yaml's rules, so `priority: 010` means 8 here as it does in
 * the cluster. Forms Kubernetes would read in a surprising way or not at all are refused with
 * a clear error instead of guessed: mapping keys that are not strings, merge keys (`<<`),
 * explicit tags other than `!!str`, `.inf`/`.nan` (JSON has no such numbers).
 *
 * Errors are rebuilt from position and kind: the parser's own messages may quote the source
 * line, and a source line may hold a key.
 */
import { childPath } from '../crd/echo.js';
import { LineCounter, parseAllDocuments, isAlias, isMap, isPair, isScalar, isSeq, type Node, type YAMLError } from 'yaml';

export interface YamlProblem {
  /** Field path where the problem is (`(yaml)` for syntax errors). */
  readonly path: string;
  readonly message: string;
}

export interface YamlDocument {
  /** 1-based position in the stream. */
  readonly index: number;
  /** The document's value; undefined when it is empty or could not be read. */
  readonly value: unknown;
  readonly problems: readonly YamlProblem[];
}

/** Deeper nesting than any manifest needs; refusing it keeps every walk bounded. */
export const MAX_DEPTH = 64;
/** Values an aliased document may expand to; more is an alias bomb, not a manifest. */
export const MAX_EXPANDED_NODES = 100_000;

const STR_TAG = 'tag:yaml.org,2002:str';
const MAP_TAG = 'tag:yaml.org,2002:map';
const SEQ_TAG = 'tag:yaml.org,2002:seq';

/** What kind of mistake a parser error code stands for; never the parser's message. */
const SYNTAX_KINDS: Record<string, string> = {
  ALIAS_PROPS: 'an alias cannot have an anchor or a tag',
  BAD_ALIAS: 'invalid alias',
  BAD_COLLECTION_TYPE: 'this collection cannot have that tag',
  BAD_DIRECTIVE: 'invalid directive',
  BAD_DQ_ESCAPE: 'invalid escape in a double-quoted string',
  BAD_INDENT: 'bad indentation (or an unclosed bracket or quote)',
  BAD_PROP_ORDER: 'anchor and tag in the wrong order',
  BAD_SCALAR_START: 'a plain value cannot start with this character',
  BLOCK_AS_IMPLICIT_KEY: 'a block value cannot be a mapping key',
  BLOCK_IN_FLOW: 'a block value inside a flow collection',
  DUPLICATE_KEY: 'duplicate mapping key',
  IMPOSSIBLE: 'unreadable YAML',
  KEY_OVER_1024_CHARS: 'an implicit key longer than 1024 characters',
  MISSING_CHAR: 'a closing bracket, quote or separator is missing',
  MULTILINE_IMPLICIT_KEY: 'an implicit key spans several lines',
  MULTIPLE_ANCHORS: 'more than one anchor on a node',
  MULTIPLE_DOCS: 'several documents where one was expected',
  MULTIPLE_TAGS: 'more than one tag on a node',
  NON_STRING_KEY: 'a mapping key that is not a string',
  TAB_AS_INDENT: 'a tab used for indentation',
  TAG_RESOLVE_FAILED: 'an unknown tag',
  UNEXPECTED_TOKEN: 'unexpected character or token',
};

export function readYamlDocuments(text: string): YamlDocument[] {
  const lines = new LineCounter();
  const parsed = parseAllDocuments(text, { schema: 'failsafe', lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if ('empty' in parsed) {
    // An empty stream (only comments or directives): errors, if any, still count.
    const problems = parsed.errors.map((error) => syntaxProblem(error, lines));
    return problems.length > 0 ? [{ index: 1, value: undefined, problems }] : [];
  }
  return parsed.map((document, position) => {
    const problems: YamlProblem[] = [];
    // Unknown tags are warnings to the parser; the converter below refuses them by name.
    const syntax = [...document.errors, ...document.warnings.filter((warning) => warning.code !== 'TAG_RESOLVE_FAILED')];
    for (const error of syntax) problems.push(syntaxProblem(error, lines));
    if (problems.length > 0 || document.contents === null) return { index: position + 1, value: undefined, problems };
    const converter = new Converter(lines);
    const value = converter.value(document.contents as Node, '', 0);
    return { index: position + 1, value: converter.problems.length > 0 ? undefined : value, problems: converter.problems };
  });
}

function syntaxProblem(error: YAMLError, lines: LineCounter): YamlProblem {
  const where = at(lines, error.pos[0]);
  return { path: '(yaml)', message: `${where}: ${SYNTAX_KINDS[error.code] ?? 'invalid YAML'} (${error.code})` };
}

function at(lines: LineCounter, offset: number): string {
  const { line, col } = lines.linePos(offset);
  return `line ${line}, column ${col}`;
}

/** A value being built, with the number of values its expansion holds (aliases included). */
interface Built {
  readonly value: unknown;
  readonly size: number;
}

class Converter {
  readonly problems: YamlProblem[] = [];
  readonly #anchors = new Map<string, Built | 'open'>();
  #expanded = 0;
  #bombReported = false;

  constructor(private readonly lines: LineCounter) {}

  value(node: Node, path: string, depth: number): unknown {
    return this.#build(node, path, depth).value;
  }

  #fail(node: Node | null | undefined, path: string, message: string): Built {
    const where = node?.range ? `${at(this.lines, node.range[0])}: ` : '';
    this.problems.push({ path: path === '' ? '(document)' : path, message: `${where}${message}` });
    return { value: undefined, size: 1 };
  }

  #build(node: Node | null, path: string, depth: number): Built {
    if (node === null || node === undefined) return { value: null, size: 1 };
    if (depth > MAX_DEPTH) return this.#fail(node, path, `nested deeper than ${MAX_DEPTH} levels`);
    if (isAlias(node)) {
      const target = this.#anchors.get(node.source);
      if (target === undefined) return this.#fail(node, path, 'alias without an anchor before it');
      if (target === 'open') return this.#fail(node, path, 'alias refers to the node that contains it');
      return this.#count(node, path, target);
    }
    const anchor = node.anchor;
    if (anchor) this.#anchors.set(anchor, 'open');
    const built = this.#content(node, path, depth);
    if (anchor) this.#anchors.set(anchor, built);
    return built;
  }

  /** Counts `built` once more in the document's expansion (`size` for an alias, 1 otherwise). */
  #count(node: Node, path: string, built: Built, added = built.size): Built {
    this.#expanded += added;
    if (this.#expanded > MAX_EXPANDED_NODES) {
      if (this.#bombReported) return { value: undefined, size: 1 };
      this.#bombReported = true;
      return this.#fail(node, path, `aliases expand to more than ${MAX_EXPANDED_NODES} values`);
    }
    return built;
  }

  #content(node: Node, path: string, depth: number): Built {
    if (isScalar(node)) {
      if (node.tag !== undefined && node.tag !== STR_TAG) return this.#fail(node, path, 'explicit YAML tags other than !!str are not supported');
      const text = String(node.value);
      const value = node.type === 'PLAIN' && node.tag === undefined ? resolvePlain(text) : text;
      if (typeof value === 'number' && !Number.isFinite(value)) return this.#fail(node, path, '.inf and .nan have no JSON form');
      if (value instanceof Ambiguous) return this.#fail(node, path, 'a number in a form Kubernetes reads differently from YAML 1.2: write it as a plain decimal or quote it');
      return this.#count(node, path, { value, size: 1 }, 1);
    }
    if (isSeq(node)) {
      if (node.tag !== undefined && node.tag !== SEQ_TAG) return this.#fail(node, path, 'explicit YAML tags are not supported on lists');
      const values: unknown[] = [];
      let size = 1;
      node.items.forEach((item, index) => {
        const built = this.#build(item as Node | null, `${path}[${index}]`, depth + 1);
        values.push(built.value);
        size += built.size;
      });
      return this.#count(node, path, { value: values, size }, 1);
    }
    if (isMap(node)) {
      if (node.tag !== undefined && node.tag !== MAP_TAG) return this.#fail(node, path, 'explicit YAML tags are not supported on mappings');
      const object: Record<string, unknown> = {};
      let size = 1;
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyNode = pair.key as Node | null;
        const key = this.#key(keyNode, path);
        if (key === undefined) continue;
        const child = childPath(path, key);
        const built = this.#build(pair.value as Node | null, child, depth + 1);
        // Own data property even for `__proto__`: never the object's prototype.
        Object.defineProperty(object, key, { value: built.value, enumerable: true, writable: true, configurable: true });
        size += built.size;
      }
      return this.#count(node, path, { value: object, size }, 1);
    }
    return this.#fail(node, path, 'unreadable YAML node');
  }

  /** A mapping key: only strings, as Kubernetes would read them. */
  #key(node: Node | null, path: string): string | undefined {
    if (node === null || node === undefined) {
      this.#fail(node, path, 'a mapping key is empty');
      return undefined;
    }
    if (!isScalar(node) || (node.tag !== undefined && node.tag !== STR_TAG)) {
      this.#fail(node, path, 'a mapping key must be a plain string');
      return undefined;
    }
    const text = String(node.value);
    if (node.type === 'PLAIN' && node.tag === undefined) {
      if (text === '<<') {
        this.#fail(node, path, 'merge keys (<<) are not supported: write the fields out');
        return undefined;
      }
      const resolved = resolvePlain(text);
      if (typeof resolved !== 'string') {
        const kind = resolved === null ? 'null' : typeof resolved === 'boolean' ? 'a boolean' : 'a number';
        this.#fail(node, path, `a mapping key that Kubernetes reads as ${kind} (YAML 1.1): quote it`);
        return undefined;
      }
    }
    return text;
  }
}

/** A plain scalar that go-yaml v2 reads in a way this module does not reproduce exactly. */
class Ambiguous {}

const RESOLVED: ReadonlyMap<string, unknown> = new Map<string, unknown>([
  ...['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON'].map((text) => [text, true] as const),
  ...['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF'].map((text) => [text, false] as const),
  ...['', '~', 'null', 'Null', 'NULL'].map((text) => [text, null] as const),
  ...['.nan', '.NaN', '.NAN'].map((text) => [text, Number.NaN] as const),
  ...['.inf', '.Inf', '.INF', '+.inf', '+.Inf', '+.INF'].map((text) => [text, Number.POSITIVE_INFINITY] as const),
  ...['-.inf', '-.Inf', '-.INF'].map((text) => [text, Number.NEGATIVE_INFINITY] as const),
]);

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

/**
 * go-yaml v2's `resolve` for an untagged plain scalar, as far as a JSON value can hold it:
 * a string, boolean, null, or number (integers beyond 2^53 lose precision, which only ever
 * matters for values the schema's ranges refuse anyway).
 */
export function resolvePlain(text: string): unknown {
  if (RESOLVED.has(text)) return RESOLVED.get(text);
  const first = text.charAt(0);
  if (first === '.') {
    if (/^\.[0-9]+([eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
    // Go's ParseFloat also takes underscores between digits here.
    return /^\.[0-9_]+([eE][-+]?[0-9_]+)?$/.test(text) ? new Ambiguous() : text;
  }
  if (!/^[-+0-9]/.test(first)) return text;
  // Dates are tried first and kept as strings (go-yaml does so for untyped targets).
  if (/^[0-9]{4}-/.test(text)) return text;
  const plain = text.replaceAll('_', '');
  const integer = goParseInteger(plain);
  if (integer !== undefined) return Number(integer);
  if (YAML_STYLE_FLOAT.test(plain)) {
    const float = Number(plain);
    // Go's ParseFloat fails on overflow; go-yaml then keeps the text as a string.
    return Number.isFinite(float) ? float : text;
  }
  // go-yaml's own binary branches: ParseInt(s[2:], 2) after `0b` (a sign may follow it), and
  // ParseInt("-" + s[3:], 2) after `-0b` (where a second sign fails).
  const binary = /^0b([-+]?)([01]+)$/.exec(plain) ?? /^-0b()([01]+)$/.exec(plain);
  if (binary) {
    const [, sign = '', digits = ''] = binary;
    const negative = plain.startsWith('-') || sign === '-';
    const value = (negative ? -1n : 1n) * BigInt(`0b${digits}`);
    if (value >= INT64_MIN && value <= (negative ? INT64_MAX : UINT64_MAX)) return Number(value);
  }
  return text;
}

/** strconv.ParseInt(s, 0, 64), then strconv.ParseUint(s, 0, 64): prefixes 0x, 0o, 0b, 0 (octal). */
function goParseInteger(text: string): bigint | undefined {
  const match = /^([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!match) return undefined;
  const [, sign = '', digits = ''] = match;
  let magnitude: bigint;
  if (/^0[xXoObB]/.test(digits)) magnitude = BigInt(`0${digits.charAt(1).toLowerCase()}${digits.slice(2)}`);
  else if (digits.startsWith('0')) magnitude = digits.length === 1 ? 0n : BigInt(`0o${digits.slice(1)}`);
  else magnitude = BigInt(digits);
  const value = sign === '-' ? -magnitude : magnitude;
  if (value >= INT64_MIN && value <= INT64_MAX) return value;
  // ParseUint takes no sign at all.
  if (sign === '' && value <= UINT64_MAX) return value;
  return undefined;
}
