/**
 * The ownership ledger on disk, one per network namespace: a snapshot (`ledger.json`) and an
 * append-only journal beside it (`ledger.journal`), under a kernel-released lock (./lock.ts).
 *
 * Why a journal: a commit appends one line (the records it sets and removes) and fdatasyncs
 * it, so its cost follows the size of the change, not of the ledger; a snapshot rewrite (atomic
 * replace, ./durable-file.ts) folds the journal in when it has grown. A commit returns only
 * once its line is durable; a line torn by a crash was never acknowledged, so no kernel change
 * followed it, and reading stops before it. A failed append is cut off again at once, so only
 * the last line can ever be torn.
 *
 * What a ledger describes: the header names the boot (`/proc/sys/kernel/random/boot_id`) and
 * the network namespace (the kernel's namespace cookie, never reused within a boot) whose
 * entries its records prove. A ledger of another boot (the node rebooted: the kernel tables
 * are gone, the file is not) or of another namespace (a copied file, a namespace deleted and
 * made again under the same name) proves nothing here: its records are set aside, and every
 * entry the kernel holds is foreign until this engine creates it.
 *
 * What survives a set-aside: the salt and the key usage history (./usage.ts). Records name
 * kernel entries, which a reboot removes; the usage of a key (the highest sequence number it
 * sent) outlives the boot, because the same hand-written key installed after a reboot with its
 * counter back at 0 would repeat nonces.
 *
 * Formats (versioned, so a future layout is migrated instead of misread):
 *   snapshot: { "formatVersion": 3, "salt": hex, "scope": {bootId, netns}, "generation": n, "records": [...], "usage": [...] }
 *   journal:  a header line {"generation": n}, then lines `JSON<TAB>sha256-prefix`, each
 *             `{"set"?: [records], "remove"?: [keys], "usage"?: [usage entries, upserted by key],
 *             "forget"?: [usage keys]}` (forget: the retention of ./retention.ts passed, or
 *             a new key the kernel refused is claimed by no record any more; a reader that
 *             ignores it only remembers more)
 * A format-2 ledger (the same without usage) is migrated with an empty history: an SA its
 * records prove gets its first mark from the next dump, and one that is gone by then cannot be
 * installed again with the same key (../engine/sequence-rule.ts: installed before, no mark).
 * A format-1 ledger (one JSON file, records without incarnations) is migrated: each record
 * becomes an intent matched by its recorded whole-content fingerprint (./records.ts).
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { assertWritable, ensureDirectory, removeLeftoverTemporaries, replaceFile, writeChunksFully } from './durable-file.js';
import { LedgerError, fileSystemError } from './errors.js';
import { fingerprintEntry, incarnationOf, intentFingerprint, usageKeyOf } from './fingerprint.js';
import { hashedChunks, jsonChunks } from './json-chunks.js';
import { LedgerLock } from './lock.js';
import { RecordFormatError, parseRecord, type Incarnation, type OwnershipRecord } from './records.js';
import type { OwnershipView } from './settle.js';
import { UsageFormatError, parseUsage, usageToJson, type KeyUsage, type UsageView } from './usage.js';

export const LEDGER_FORMAT_VERSION = 3;

export { LedgerError, type LedgerErrorCode } from './errors.js';

/** What a ledger describes: one network namespace in one boot of one kernel. */
export interface LedgerScope {
  readonly bootId: string;
  /** The namespace's cookie (decimal), or `inode:<n>` where the kernel has no cookies. */
  readonly netns: string;
}

export interface LedgerOpenOptions {
  /** How long to wait for another engine's lock before failing (default: DEFAULT_LOCK_WAIT_MS). */
  readonly lockWaitMs?: number;
  /** The namespace this engine works on; a ledger of another scope proves nothing. */
  readonly scope?: LedgerScope;
  /** Test hook: awaited at every step of a write, so a crash can be injected between any two. */
  readonly checkpoint?: (label: string) => Promise<void>;
  /** Journal lines after which the snapshot is rewritten (default 512). */
  readonly compactAfterLines?: number;
  /**
   * Commits leave the due rewrite to `compactIfDue()` (the agent calls it after a full pass):
   * the rewrite of a snapshot of 10,000 records is not on the path of a drift repair's intent.
   * A journal that reaches DEFERRED_COMPACTION_FACTOR times compactAfterLines (no full pass
   * called for long) is still compacted by the commit, so it stays bounded.
   */
  readonly deferCompaction?: boolean;
}

/** With deferCompaction: how far past compactAfterLines a commit still compacts by itself. */
export const DEFERRED_COMPACTION_FACTOR = 4;

interface SnapshotFile {
  readonly formatVersion: number;
  readonly salt: string;
  readonly scope: LedgerScope | null;
  readonly generation: number;
  readonly records: readonly OwnershipRecord[];
  /** Key usage entries in their on-disk form (./usage.ts); absent before format 3. */
  readonly usage?: readonly Record<string, unknown>[];
}

interface JournalLine {
  readonly set?: readonly OwnershipRecord[];
  readonly remove?: readonly string[];
  readonly usage?: readonly Record<string, unknown>[];
  readonly forget?: readonly string[];
}

/**
 * A change to the ledger: records set and removed, key usage entries upserted, and usage
 * entries forgotten (past their retention, ./retention.ts, or a refused new key that no record
 * claims, ../engine/converge.ts; a key upserted by the same commit is kept).
 */
export interface LedgerCommit {
  readonly set?: readonly OwnershipRecord[];
  readonly remove?: readonly string[];
  readonly usage?: readonly KeyUsage[];
  readonly forget?: readonly string[];
}

/** Where the ledger of a namespace lives under a state directory. */
export function ledgerPath(stateDirectory: string, netns: string | undefined): string {
  const scope = netns === undefined ? 'host' : `netns-${netns.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
  return join(stateDirectory, scope, 'ledger.json');
}

/** The journal beside a ledger snapshot. */
export function journalPath(path: string): string {
  return path.replace(/\.json$/, '') + '.journal';
}

export class Ledger implements OwnershipView, UsageView {
  readonly #path: string;
  readonly #lock: LedgerLock;
  readonly #salt: string;
  readonly #scope: LedgerScope | null;
  readonly #checkpoint: (label: string) => Promise<void>;
  readonly #compactAfterLines: number;
  /** The journal length at which a commit compacts by itself (compactAfterLines unless deferred). */
  readonly #commitCompactsAt: number;
  #generation: number;
  #records: Map<string, OwnershipRecord>;
  readonly #usage: Map<string, KeyUsage>;
  #journal: FileHandle | undefined;
  #journalBytes = 0;
  #journalLines = 0;
  #broken: string | undefined;
  #closed = false;
  #serial: Promise<unknown> = Promise.resolve();
  /** Records of another boot or namespace that were set aside when this ledger was opened. */
  readonly setAside: number;

  private constructor(init: {
    path: string;
    lock: LedgerLock;
    snapshot: SnapshotFile;
    records: Map<string, OwnershipRecord>;
    usage: Map<string, KeyUsage>;
    setAside: number;
    options: LedgerOpenOptions;
  }) {
    this.#path = init.path;
    this.#lock = init.lock;
    this.#salt = init.snapshot.salt;
    this.#scope = init.snapshot.scope;
    this.#generation = init.snapshot.generation;
    this.#records = init.records;
    this.#usage = init.usage;
    this.setAside = init.setAside;
    this.#checkpoint = init.options.checkpoint ?? (async () => undefined);
    this.#compactAfterLines = init.options.compactAfterLines ?? 512;
    this.#commitCompactsAt = init.options.deferCompaction ? this.#compactAfterLines * DEFERRED_COMPACTION_FACTOR : this.#compactAfterLines;
  }

  /**
   * Opens (creating if needed) and locks the ledger at `path`, then proves its directory
   * writable and removes temporaries that killed writers left: a read-only or full state
   * directory fails here, before anything is applied.
   */
  static async open(path: string, options: LedgerOpenOptions = {}): Promise<Ledger> {
    await ensureDirectory(dirname(path));
    const lock = await LedgerLock.acquire(`${path}.lock`, { subject: path, ...(options.lockWaitMs === undefined ? {} : { waitMs: options.lockWaitMs }) });
    try {
      await assertWritable(dirname(path), { stem: basename(path) });
      await removeLeftoverTemporaries(path, lock);
      const loaded = await readLedger(path, options.scope);
      const ledger = new Ledger({ path, lock, options, ...loaded });
      // A new ledger, a migrated one, one whose records were set aside, or one whose journal
      // must be started again: write the snapshot (and an empty journal) now, before any change.
      if (loaded.rewrite) await ledger.#compact();
      else await ledger.#openJournal(loaded.journalBytes, loaded.journalLines);
      return ledger;
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  /**
   * Reads the ledger without locking or writing it (for `diff` and `--dry-run`, which must
   * change nothing, not even create the file).
   */
  static async peek(path: string, scope?: LedgerScope): Promise<OwnershipView & UsageView> {
    const loaded = await readLedger(path, scope);
    const salt = loaded.snapshot.salt;
    const records = loaded.records;
    const usage = loaded.usage;
    return {
      records: () => records,
      usageKey: (sa) => usageKeyOf(salt, sa),
      usage: (key) => usage.get(key),
      intentFingerprint: (entry) => intentFingerprint(salt, entry),
      incarnationOf: (entry) => incarnationOf(salt, entry),
      contentFingerprint: (entry) => fingerprintEntry(salt, entry),
    };
  }

  get path(): string {
    return this.#path;
  }

  get scope(): LedgerScope | null {
    return this.#scope;
  }

  records(): ReadonlyMap<string, OwnershipRecord> {
    return this.#records;
  }

  intentFingerprint(entry: SecurityAssociation | SecurityPolicy): string {
    return intentFingerprint(this.#salt, entry);
  }

  incarnationOf(entry: SecurityAssociation | SecurityPolicy): Incarnation | undefined {
    return incarnationOf(this.#salt, entry);
  }

  contentFingerprint(entry: SecurityAssociation | SecurityPolicy): string {
    return fingerprintEntry(this.#salt, entry);
  }

  usageKey(sa: SecurityAssociation): string {
    return usageKeyOf(this.#salt, sa);
  }

  usage(key: string): KeyUsage | undefined {
    return this.#usage.get(key);
  }

  /** Every key usage entry (for tests and metrics). */
  usageEntries(): ReadonlyMap<string, KeyUsage> {
    return this.#usage;
  }

  /**
   * Applies record changes and makes them durable before returning; on failure nothing changes.
   * Commits run one at a time, in call order: the agent's reconcile and its sequence reports
   * (../agent/sequence-watch.ts) commit independently, and two appends must never interleave.
   */
  commit(changes: LedgerCommit): Promise<void> {
    return this.#exclusive(() => this.#commitNow(changes));
  }

  /**
   * Raises the marks of live keys, as one commit: an entry is written only when the history has
   * no entry for its key yet, or a live one with a lower mark. A key retired meanwhile (NeedsRekey,
   * Expired) stays retired and a higher mark written meanwhile stays: the check and the write are
   * one step among the serialised commits. Returns how many marks were written.
   */
  raiseMarks(marks: readonly KeyUsage[]): Promise<number> {
    return this.#exclusive(async () => {
      const raised = marks.filter((mark) => {
        const current = this.#usage.get(mark.key);
        return mark.state === 'live' && (current === undefined || (current.state === 'live' && current.mark < mark.mark));
      });
      await this.#commitNow({ usage: raised });
      return raised.length;
    });
  }

  #exclusive<T>(run: () => Promise<T>): Promise<T> {
    const result = this.#serial.then(run);
    this.#serial = result.catch(() => undefined);
    return result;
  }

  async #commitNow(changes: LedgerCommit): Promise<void> {
    if (this.#closed) throw new LedgerError('ledger is closed', { code: 'CLOSED' });
    if (this.#broken) throw new LedgerError(this.#broken, { code: 'EIO' });
    const set = changes.set ?? [];
    const remove = changes.remove ?? [];
    const usage = changes.usage ?? [];
    const forget = (changes.forget ?? []).filter((key) => this.#usage.has(key));
    if (set.length === 0 && remove.length === 0 && usage.length === 0 && forget.length === 0) return;
    const line: JournalLine = {
      ...(set.length > 0 ? { set } : {}),
      ...(remove.length > 0 ? { remove } : {}),
      ...(forget.length > 0 ? { forget } : {}),
      ...(usage.length > 0 ? { usage: usage.map(usageToJson) } : {}),
    };
    await this.#append(line);
    for (const key of remove) this.#records.delete(key);
    for (const record of set) this.#records.set(record.key, record);
    for (const key of forget) this.#usage.delete(key);
    for (const entry of usage) this.#usage.set(entry.key, entry);
    if (this.#journalLines >= this.#commitCompactsAt) await this.#compact().catch(() => undefined); // the journal stays valid
  }

  /**
   * Rewrites the snapshot when the journal has reached compactAfterLines (with deferCompaction,
   * the owner calls this where a rewrite delays nothing urgent). Serialised with the commits;
   * a failed rewrite leaves the journal valid and is tried again next time. Returns whether it ran.
   */
  compactIfDue(): Promise<boolean> {
    return this.#exclusive(async () => {
      if (this.#closed || this.#broken || this.#journalLines < this.#compactAfterLines) return false;
      await this.#compact().catch(() => undefined);
      return true;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // A commit in flight is not waited for: a process that stops mid-commit is the crash the
    // journal is built for (a later commit fails with CLOSED).
    this.#closed = true;
    await this.#journal?.close().catch(() => undefined);
    await this.#lock.release();
  }

  async #append(line: JournalLine): Promise<void> {
    const journal = this.#journal!;
    const before = this.#journalBytes;
    let written = 0;
    await this.#checkpoint('journal:append');
    try {
      // A full disk writes short without an error: writeChunksFully loops until it says ENOSPC.
      const hash = createHash('sha256');
      written = await writeChunksFully(journal, hashedChunks(jsonChunks(line, JOURNAL_ARRAYS), hash), before);
      written += await writeChunksFully(journal, [`\t${checksumOf(hash)}\n`], before + written);
      await this.#checkpoint('journal:written');
      await journal.datasync();
    } catch (error) {
      // Cut the torn or unsynced line off again, so that the journal never holds a line that
      // was not acknowledged followed by one that was.
      try {
        await journal.truncate(before);
        await journal.datasync();
      } catch {
        this.#broken = `the ownership ledger journal ${journalPath(this.#path)} could not be repaired after a failed write; restart to recover`;
      }
      throw fileSystemError(error, dirname(this.#path), 'appending to the ownership ledger journal', 'the change was not recorded');
    }
    this.#journalBytes += written;
    this.#journalLines += 1;
    await this.#checkpoint('journal:synced');
  }

  /** Folds the journal into a new snapshot generation, then starts an empty journal for it. */
  async #compact(): Promise<void> {
    const generation = this.#generation + 1;
    const snapshot: SnapshotFile = {
      formatVersion: LEDGER_FORMAT_VERSION,
      salt: this.#salt,
      scope: this.#scope,
      generation,
      records: [...this.#records.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
      usage: [...this.#usage.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map(usageToJson),
    };
    await this.#checkpoint('snapshot:write');
    await replaceFile(this.#path, [...jsonChunks(snapshot, SNAPSHOT_ARRAYS), '\n'], { what: 'writing the ownership ledger' });
    this.#generation = generation;
    // A crash here leaves a journal of the previous generation: it is ignored when read, since
    // the snapshot already holds every line of it.
    await this.#checkpoint('snapshot:written');
    await this.#journal?.close().catch(() => undefined);
    this.#journal = undefined;
    await replaceFile(journalPath(this.#path), journalHeader(generation), { what: 'starting the ownership ledger journal' });
    await this.#checkpoint('journal:reset');
    await this.#openJournal(Buffer.byteLength(journalHeader(generation)), 0);
  }

  async #openJournal(bytes: number, lines: number): Promise<void> {
    try {
      this.#journal = await open(journalPath(this.#path), 'r+');
      // A torn last line (a crash mid-append) is cut off, so the next line starts clean.
      if ((await this.#journal.stat()).size > bytes) {
        await this.#journal.truncate(bytes);
        await this.#journal.datasync();
      }
    } catch (error) {
      throw fileSystemError(error, dirname(this.#path), 'opening the ownership ledger journal');
    }
    this.#journalBytes = bytes;
    this.#journalLines = lines;
  }
}

function journalHeader(generation: number): string {
  return `${JSON.stringify({ generation })}\n`;
}

/** The arrays of a journal line and of a snapshot written element by element (./json-chunks.ts). */
const JOURNAL_ARRAYS: ReadonlySet<string> = new Set(['set', 'remove', 'forget', 'usage']);
const SNAPSHOT_ARRAYS: ReadonlySet<string> = new Set(['records', 'usage']);

/** A journal line is `<JSON>\t<checksum>\n`: the first 16 hex digits of SHA-256 over the JSON text. */
function checksum(body: string): string {
  return checksumOf(createHash('sha256').update(body));
}

function checksumOf(hash: Hash): string {
  return hash.digest('hex').slice(0, 16);
}

interface Loaded {
  readonly snapshot: SnapshotFile;
  readonly records: Map<string, OwnershipRecord>;
  readonly usage: Map<string, KeyUsage>;
  readonly setAside: number;
  /** The snapshot and journal must be written again before use. */
  readonly rewrite: boolean;
  readonly journalBytes: number;
  readonly journalLines: number;
}

async function readLedger(path: string, scope: LedgerScope | undefined): Promise<Loaded> {
  const text = await readText(path);
  if (text === undefined) {
    const snapshot: SnapshotFile = { formatVersion: LEDGER_FORMAT_VERSION, salt: randomBytes(16).toString('hex'), scope: scope ?? null, generation: 0, records: [] };
    return { snapshot, records: new Map(), usage: new Map(), setAside: 0, rewrite: true, journalBytes: 0, journalLines: 0 };
  }
  const damaged = (why: string) =>
    new LedgerError(`ownership ledger ${path} ${why}; it was not written by this engine or is damaged. Nothing was changed. Move it aside only if you know every entry it recorded is gone.`, { code: 'INVALID' });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw damaged('is not valid JSON');
  }
  const file = parsed as Partial<SnapshotFile> & { records?: unknown };
  if (file.formatVersion === 1) return migrateVersion1(path, file, scope, damaged);
  const version = file.formatVersion;
  if (version !== 2 && version !== LEDGER_FORMAT_VERSION) {
    throw new LedgerError(`ownership ledger ${path} has format version ${String(file.formatVersion).slice(0, 20)}; this engine reads versions 1 to ${LEDGER_FORMAT_VERSION}`, { code: 'INVALID' });
  }
  if (version === 2 && file.usage !== undefined) throw damaged('is format 2 but holds key usage');
  if (typeof file.salt !== 'string' || !/^[0-9a-f]{32}$/.test(file.salt)) throw damaged('has no valid salt');
  if (!Number.isSafeInteger(file.generation) || (file.generation as number) < 1) throw damaged('has no valid generation');
  if (file.scope !== null && !isScope(file.scope)) throw damaged('has no valid scope');
  const records = parseRecords(file.records, damaged);
  const usage = version === 2 ? new Map<string, KeyUsage>() : parseUsageList(file.usage, damaged);
  const snapshot = file as SnapshotFile;

  const journal = await readJournal(journalPath(path), snapshot.generation, damaged);
  for (const line of journal.lines) {
    for (const key of line.remove) records.delete(key);
    for (const record of line.set) records.set(record.key, record);
    for (const key of line.forget) usage.delete(key);
    for (const entry of line.usage) usage.set(entry.key, entry);
  }
  if (scope && !sameScope(snapshot.scope, scope)) {
    // Another boot or namespace: these records prove nothing here (see the module comment);
    // the key usage history stays.
    return { snapshot: { ...snapshot, scope }, records: new Map(), usage, setAside: records.size, rewrite: true, journalBytes: 0, journalLines: 0 };
  }
  // A format-2 ledger is written again as format 3 before use.
  return { snapshot, records, usage, setAside: 0, rewrite: journal.stale || version === 2, journalBytes: journal.bytes, journalLines: journal.lines.length };
}

async function readJournal(
  path: string,
  generation: number,
  damaged: (why: string) => Error,
): Promise<{ lines: { set: OwnershipRecord[]; remove: string[]; usage: KeyUsage[]; forget: string[] }[]; bytes: number; stale: boolean }> {
  const text = await readText(path);
  if (text === undefined) return { lines: [], bytes: 0, stale: true };
  const newline = text.indexOf('\n');
  let header: { generation?: unknown };
  try {
    header = JSON.parse(newline < 0 ? text : text.slice(0, newline)) as { generation?: unknown };
  } catch {
    // The journal is replaced atomically whole, so its header is never torn.
    throw damaged('has a journal without a valid header');
  }
  if (header.generation === generation - 1) return { lines: [], bytes: 0, stale: true }; // already folded in
  if (header.generation !== generation) throw damaged(`has a journal of generation ${String(header.generation).slice(0, 20)} beside snapshot generation ${generation}`);
  const lines: { set: OwnershipRecord[]; remove: string[]; usage: KeyUsage[]; forget: string[] }[] = [];
  let offset = newline + 1;
  let position = 0;
  while (offset < text.length) {
    const end = text.indexOf('\n', offset);
    const raw = end < 0 ? text.slice(offset) : text.slice(offset, end);
    const tab = raw.lastIndexOf('\t');
    const body = tab < 0 ? '' : raw.slice(0, tab);
    const intact = end >= 0 && tab >= 0 && checksum(body) === raw.slice(tab + 1);
    if (!intact) {
      // Only the last line can be torn (a failed append is cut off at once): it was never acknowledged.
      if (end < 0 || end === text.length - 1) break;
      throw damaged(`has a damaged journal line ${position + 1}`);
    }
    let line: { set?: unknown; remove?: unknown; usage?: unknown; forget?: unknown };
    try {
      line = JSON.parse(body) as { set?: unknown; remove?: unknown; usage?: unknown; forget?: unknown };
    } catch {
      throw damaged(`has a journal line ${position + 1} that is not JSON`);
    }
    const remove = line.remove ?? [];
    if (!Array.isArray(remove) || !remove.every((key) => typeof key === 'string')) throw damaged(`has a journal line ${position + 1} with invalid removals`);
    const forget = line.forget ?? [];
    if (!Array.isArray(forget) || !forget.every((key) => typeof key === 'string')) throw damaged(`has a journal line ${position + 1} with invalid forgotten keys`);
    lines.push({ set: [...parseRecords(line.set ?? [], damaged).values()], remove, usage: [...parseUsageList(line.usage ?? [], damaged).values()], forget });
    offset = end + 1;
    position += 1;
  }
  return { lines, bytes: Buffer.byteLength(text.slice(0, offset)), stale: false };
}

function parseUsageList(value: unknown, damaged: (why: string) => Error): Map<string, KeyUsage> {
  if (!Array.isArray(value)) throw damaged('has no list of key usage');
  const usage = new Map<string, KeyUsage>();
  value.forEach((raw, position) => {
    try {
      const entry = parseUsage(raw, position);
      usage.set(entry.key, entry);
    } catch (error) {
      if (error instanceof UsageFormatError) throw damaged(`has an invalid ${error.message}`);
      throw error;
    }
  });
  return usage;
}

function parseRecords(value: unknown, damaged: (why: string) => Error): Map<string, OwnershipRecord> {
  if (!Array.isArray(value)) throw damaged('has no list of records');
  const records = new Map<string, OwnershipRecord>();
  value.forEach((raw, position) => {
    let record: OwnershipRecord;
    try {
      record = parseRecord(raw, position);
    } catch (error) {
      if (error instanceof RecordFormatError) throw damaged(`has an invalid ${error.message}`);
      throw error;
    }
    if (records.has(record.key)) throw damaged(`has two records for one entry (record ${position})`);
    records.set(record.key, record);
  });
  return records;
}

/**
 * Format 1 held `{key, target, resource, phase, fingerprint}` with the whole-content
 * fingerprint of the entry as it was added. Those cannot name an incarnation, so each becomes
 * an intent on that content (time 0): the first dump claims the entry if it still has exactly
 * that content and settles it to an incarnation; anything else under that identity is foreign.
 */
function migrateVersion1(path: string, file: { salt?: unknown; records?: unknown }, scope: LedgerScope | undefined, damaged: (why: string) => Error): Loaded {
  if (typeof file.salt !== 'string' || !Array.isArray(file.records)) throw damaged('lacks its salt or records');
  const records = new Map<string, OwnershipRecord>();
  for (const [position, raw] of file.records.entries()) {
    const old = raw as { key?: unknown; target?: unknown; resource?: unknown; fingerprint?: unknown };
    const candidate = { key: old.key, target: old.target, resource: old.resource, phase: 'creating', intents: [{ fingerprint: old.fingerprint, notBefore: 0, content: true }] };
    try {
      const record = parseRecord(candidate, position);
      records.set(record.key, record);
    } catch (error) {
      if (error instanceof RecordFormatError) throw damaged(`has an invalid format-1 ${error.message}`);
      throw error;
    }
  }
  void path;
  const snapshot: SnapshotFile = { formatVersion: LEDGER_FORMAT_VERSION, salt: file.salt, scope: scope ?? null, generation: 0, records: [] };
  return { snapshot, records, usage: new Map(), setAside: 0, rewrite: true, journalBytes: 0, journalLines: 0 };
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileSystemError(error, dirname(path), `reading ${basename(path)}`);
  }
}

function isScope(value: unknown): value is LedgerScope {
  const scope = value as Partial<LedgerScope> | undefined;
  return typeof scope === 'object' && scope !== null && typeof scope.bootId === 'string' && typeof scope.netns === 'string';
}

function sameScope(a: LedgerScope | null, b: LedgerScope): boolean {
  return a !== null && a.bootId === b.bootId && a.netns === b.netns;
}
