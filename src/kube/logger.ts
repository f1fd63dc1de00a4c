/**
 * Structured JSON logging: one object per line on stderr, `{"level","time","msg",...fields}`.
 * Children carry fixed fields (controller, reconcileID, node...) so every line of one reconcile
 * can be found together. Kubernetes Secrets are never written out, whatever field they hide in:
 * they are replaced by a reference (namespace/name) before serialisation.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines all carry `fields` (a line's own fields win on a name clash). */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  /** Lowest level written; default `info`. */
  level?: LogLevel;
  /** Where lines go; default process.stderr. */
  write?: (line: string) => void;
  /** Default `() => new Date()`. */
  now?: () => Date;
  fields?: LogFields;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const RESERVED = new Set(['level', 'time', 'msg']);

export function isLogLevel(value: string): value is LogLevel {
  return Object.hasOwn(LEVEL_RANK, value);
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const minimum = LEVEL_RANK[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const now = options.now ?? (() => new Date());
  return new JsonLogger(minimum, write, now, options.fields ?? {});
}

/** Discards everything: the default for components built without a logger. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

class JsonLogger implements Logger {
  constructor(
    private readonly minimum: number,
    private readonly write: (line: string) => void,
    private readonly now: () => Date,
    private readonly fixed: LogFields,
  ) {}

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }

  child(fields: LogFields): Logger {
    return new JsonLogger(this.minimum, this.write, this.now, { ...this.fixed, ...fields });
  }

  private log(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    if (LEVEL_RANK[level] < this.minimum) return;
    const record: LogFields = { level, time: this.now().toISOString(), msg };
    for (const source of [this.fixed, fields ?? {}]) {
      for (const [name, value] of Object.entries(source)) {
        // The three envelope fields stay trustworthy: a field cannot rename the level or message.
        record[RESERVED.has(name) ? `field.${name}` : name] = value;
      }
    }
    let line: string;
    try {
      line = JSON.stringify(record, safeReplacer());
    } catch (error) {
      // Logging must never throw into the caller (a getter that throws, an exotic object).
      line = JSON.stringify({ level, time: record.time, msg, logError: String(error) });
    }
    try {
      this.write(`${line}\n`);
    } catch {
      // A closed stderr is not the caller's problem.
    }
  }
}

/**
 * JSON.stringify replacer: Secrets become references, Errors become {name, message, code,
 * stack}, cycles and bigints are made printable. A fresh replacer per line (it tracks the
 * objects of that line to detect cycles).
 */
function safeReplacer(): (this: unknown, key: string, value: unknown) => unknown {
  const ancestors: object[] = [];
  return function replacer(this: unknown, key: string, value: unknown): unknown {
    // `value` has been through toJSON already (a Buffer arrives as {type, data}): look at the original.
    const original = (this as Record<string, unknown>)[key];
    if (Buffer.isBuffer(original) || original instanceof Uint8Array) return `[${original.byteLength} bytes]`;
    if (typeof value === 'bigint') return value.toString();
    if (value === null || typeof value !== 'object') return value;
    // JSON.stringify calls the replacer with `this` = the holder: trim the path to it.
    while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
    if (ancestors.includes(value)) return '[Circular]';
    const replaced = value instanceof Error ? describeError(value) : looksLikeSecret(value) ? secretReference(value) : value;
    // The object JSON.stringify descends into next is the replacement: track that one.
    ancestors.push(replaced);
    return replaced;
  };
}

/** An Error as log fields; causes are followed a few levels deep (cause chains can loop). */
export function describeError(error: Error, depth = 0): LogFields {
  const described: LogFields = { name: error.name, message: error.message };
  const withCode = error as Error & { code?: unknown; statusCode?: unknown };
  if (withCode.code !== undefined) described.code = withCode.code;
  if (withCode.statusCode !== undefined) described.statusCode = withCode.statusCode;
  if (error.stack !== undefined) described.stack = error.stack;
  if (error.cause !== undefined && depth < 4) {
    described.cause = error.cause instanceof Error ? describeError(error.cause, depth + 1) : String(error.cause);
  }
  return described;
}

interface SecretLike {
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown };
  data?: unknown;
  stringData?: unknown;
  type?: unknown;
}

/**
 * A Secret either says so (`kind: Secret`) or, as an item of a SecretList, has no kind but has
 * metadata, a `type` string (Opaque, kubernetes.io/tls...) and data/stringData. ConfigMaps have
 * data but no `type`, so they are not caught by the second rule.
 */
function looksLikeSecret(value: object): boolean {
  const candidate = value as SecretLike;
  if (candidate.kind === 'Secret') return true;
  if (candidate.kind !== undefined) return false;
  return (
    typeof candidate.metadata === 'object' &&
    candidate.metadata !== null &&
    typeof candidate.type === 'string' &&
    ('data' in candidate || 'stringData' in candidate)
  );
}

function secretReference(value: object): LogFields {
  const metadata = (value as SecretLike).metadata;
  return {
    kind: 'Secret',
    namespace: typeof metadata?.namespace === 'string' ? metadata.namespace : undefined,
    name: typeof metadata?.name === 'string' ? metadata.name : undefined,
    redacted: true,
  };
}
