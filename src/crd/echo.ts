/**
 * How user input may appear in an error, a status message or an Event: short, quoted, and
 * never anything that could be key material.
 *
 * Every error path of the CLI, the controller and the agent quotes input through these
 * helpers, so one place decides what is shown. A value is shown only when it is short (a
 * 10 MB field must not come back whole); a name that is compared against a Secret's content
 * (a keyRef's key or Secret name) is shown only when it cannot be a pasted key.
 */

/** Longest input echoed; longer values are cut and end with an ellipsis. */
export const ECHO_LIMIT = 64;

/**
 * `value` as a double-quoted string, cut to ECHO_LIMIT characters (then `…` inside the
 * quotes), control and non-ASCII characters escaped so that nothing can break a log line.
 * Text that may be key material (./mayBeKeyMaterial) is replaced by its length: a key pasted
 * as a field name, a label or a name must not come back in an error, a status or an Event.
 */
export function quoted(value: unknown): string {
  const text = typeof value === 'string' ? value : describeValue(value);
  if (typeof value === 'string' && mayBeKeyMaterial(text.slice(0, ECHO_LIMIT * 4))) return withheld(text);
  const cut = text.length > ECHO_LIMIT ? `${text.slice(0, ECHO_LIMIT)}…` : text;
  return `"${escape(cut)}"`;
}

function withheld(text: string): string {
  return `(${text.length} characters, not shown: it looks like key material, not a name)`;
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return Array.isArray(value) ? 'a list' : 'a mapping';
}

function escape(text: string): string {
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (char === '"' || char === '\\') out += `\\${char}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (char === '…' || (code >= 0x20 && code < 0x7f)) out += char;
    else out += `\\u{${code.toString(16)}}`;
  }
  return out;
}

/**
 * A run this long of hex digits, or of base64 characters mixing letters and digits, is taken
 * for key material: 8 bytes in hex are 16 digits, 12 bytes in base64 are 16 characters. Real
 * key names (`a-to-b`, `gcm128`, `sa-esp-100-10.0.0.2.aead`) are shorter between separators.
 */
const KEY_LIKE_RUN = 16;

/** Whether `text` may be (or contain) pasted key material rather than a name. */
export function mayBeKeyMaterial(text: string): boolean {
  for (const run of text.split(/[^A-Za-z0-9+/=]+/)) {
    if (run.length < KEY_LIKE_RUN) continue;
    if (/[0-9a-fA-F]{16}/.test(run)) return true;
    if (/[0-9]/.test(run) && /[A-Za-z]/.test(run)) return true;
  }
  return false;
}

/**
 * A name that is looked up among a Secret's keys (or a Secret's name in a keyRef): quoted when
 * it is plainly a name, otherwise only its length, so a key pasted where its name belongs is
 * not written back into a terminal, a status or an Event.
 */
export function quotedName(text: string): string {
  if (text.length <= ECHO_LIMIT && !mayBeKeyMaterial(text)) return quoted(text);
  return withheld(text);
}

/**
 * One step of a field path below `base` for a mapping key the user wrote: `.name` for a plain
 * field name, otherwise `["…"]` through quoted(), so a key pasted as a field name (or a 1 KB one)
 * is never spelled out in a path.
 */
export function childPath(base: string, key: string): string {
  if (isPlainFieldName(key)) return base === '' ? key : `${base}.${key}`;
  return `${base}[${quoted(key)}]`;
}

/** A key that may be written bare in a path: a short identifier that cannot be key material. */
export function isPlainFieldName(key: string): boolean {
  return /^[A-Za-z_$][A-Za-z0-9_$-]{0,63}$/.test(key) && !mayBeKeyMaterial(key);
}

/** Cuts a whole message (the last line of defence for status, Events and logs). */
export function capMessage(message: string, limit = 1024): string {
  return message.length > limit ? `${message.slice(0, limit)}…` : message;
}
