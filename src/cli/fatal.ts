/**
 * The last line of defence: a promise rejection nobody handled or an exception nobody caught.
 * Node's default would print the value with util.inspect — an object's every field, a Buffer's
 * bytes — and for an agent that can mean key material in the pod's log. Here the process says
 * what happened in one JSON line that holds only an error's name, code, a clipped and redacted
 * message and its stack frames (code locations, never data), then exits with EXIT_FATAL: a
 * process in an unknown state must not keep running (or hang) as if nothing happened; its
 * supervisor restarts it, and the ledger makes a restart at any point safe.
 */
export const EXIT_FATAL = 70; // EX_SOFTWARE (sysexits.h): an internal error

/** What these handlers need of `process` (a fake in unit tests). */
export interface FatalTarget {
  on(event: 'unhandledRejection' | 'uncaughtException', listener: (reason: unknown) => void): unknown;
  exit(code: number): never;
}

export interface FatalHandlerOptions {
  readonly target?: FatalTarget;
  /** Where the line goes; default stderr (synchronous for files and pipes on Linux, so it is out before exit). */
  readonly write?: (line: string) => void;
  readonly now?: () => Date;
}

const MAX_MESSAGE = 300;
const MAX_FRAMES = 20;
const MAX_CAUSES = 4;

export function installFatalHandlers(options: FatalHandlerOptions = {}): void {
  const target = options.target ?? (process as unknown as FatalTarget);
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const now = options.now ?? (() => new Date());
  const report = (what: string) => (reason: unknown) => {
    try {
      write(`${JSON.stringify({ level: 'error', time: now().toISOString(), msg: `${what}: exiting`, error: describeFatal(reason) })}\n`);
    } finally {
      target.exit(EXIT_FATAL);
    }
  };
  target.on('unhandledRejection', report('unhandled promise rejection'));
  target.on('uncaughtException', report('uncaught exception'));
}

export interface FatalDescription {
  readonly name: string;
  readonly code?: string;
  readonly message: string;
  readonly stack?: readonly string[];
  readonly cause?: FatalDescription;
}

/** A thrown value, reduced to what is safe to log. Non-Error values are named by type only. */
export function describeFatal(reason: unknown, depth = 0): FatalDescription {
  if (!(reason instanceof Error)) {
    return { name: 'NonError', message: `a non-Error value of type ${reason === null ? 'null' : Array.isArray(reason) ? 'array' : typeof reason} (content not logged)` };
  }
  const code = (reason as { code?: unknown }).code;
  const frames = (reason.stack ?? '')
    .split('\n')
    .filter((line) => /^\s+at /.test(line))
    .slice(0, MAX_FRAMES)
    .map((line) => line.trim());
  return {
    name: clip(String(reason.name), 60),
    ...(typeof code === 'string' || typeof code === 'number' ? { code: clip(String(code), 60) } : {}),
    message: clip(redact(reason.message), MAX_MESSAGE),
    ...(frames.length > 0 ? { stack: frames } : {}),
    ...(reason.cause !== undefined && depth < MAX_CAUSES ? { cause: describeFatal(reason.cause, depth + 1) } : {}),
  };
}

/**
 * Removes what could be key material quoted in a message: long runs of hex digits (keys are
 * 16 bytes and more: 32 hex digits) and of base64 (Secret data: 24 characters for 16 bytes).
 * Over-eager on purpose: a long identifier lost from a crash message costs little.
 */
export function redact(text: string): string {
  return text.replace(/(?:0x)?[0-9a-fA-F]{32,}/g, '[redacted]').replace(/[A-Za-z0-9+/]{24,}={0,2}/g, '[redacted]');
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}
