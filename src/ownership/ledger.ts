/**
 * The ownership ledger on disk: one JSON file per network namespace, replaced atomically
 * (write to a temporary file, fsync, rename, fsync the directory) so that a crash leaves
 * either the old or the new version, never a torn one. An exclusive lock file keeps two
 * engines (a CLI run and an agent, say) from interleaving their changes.
 *
 * Format (versioned, so that a future layout can be migrated instead of misread):
 *   { "formatVersion": 1, "salt": "<hex>", "records": [OwnershipRecord, ...] }
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { assertWritable, ensureDirectory, removeLeftoverTemporaries, replaceFile } from './durable-file.js';
import { LedgerError } from './errors.js';
import { fingerprintEntry } from './fingerprint.js';
import { LedgerLock } from './lock.js';
import type { OwnershipRecord } from './records.js';

export const LEDGER_FORMAT_VERSION = 1;

export { LedgerError, type LedgerErrorCode } from './errors.js';

export interface LedgerOpenOptions {
  /** How long to wait for another engine's lock before failing (default: DEFAULT_LOCK_WAIT_MS). */
  readonly lockWaitMs?: number;
}

interface LedgerFile {
  formatVersion: number;
  salt: string;
  records: OwnershipRecord[];
}

/** Where the ledger of a namespace lives under a state directory. */
export function ledgerPath(stateDirectory: string, netns: string | undefined): string {
  const scope = netns === undefined ? 'host' : `netns-${netns.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
  return join(stateDirectory, scope, 'ledger.json');
}

export class Ledger {
  readonly #path: string;
  readonly #lock: LedgerLock;
  readonly #salt: string;
  #records: Map<string, OwnershipRecord>;
  #closed = false;

  private constructor(path: string, lock: LedgerLock, salt: string, records: Map<string, OwnershipRecord>) {
    this.#path = path;
    this.#lock = lock;
    this.#salt = salt;
    this.#records = records;
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
      const file = await readLedger(path);
      const records = new Map(file.records.map((record) => [record.key, record]));
      const ledger = new Ledger(path, lock, file.salt, records);
      if (file.records.length === 0) await ledger.#write(); // persist the salt
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
  static async peek(path: string): Promise<Pick<Ledger, 'records' | 'fingerprint'>> {
    const file = await readLedger(path);
    const records = new Map(file.records.map((record) => [record.key, record]));
    return { records: () => records, fingerprint: (entry) => fingerprintEntry(file.salt, entry) };
  }

  get path(): string {
    return this.#path;
  }

  records(): ReadonlyMap<string, OwnershipRecord> {
    return this.#records;
  }

  fingerprint(entry: SecurityAssociation | SecurityPolicy): string {
    return fingerprintEntry(this.#salt, entry);
  }

  /** Applies record changes and makes them durable before returning. */
  async commit(changes: { readonly set?: readonly OwnershipRecord[]; readonly remove?: readonly string[] }): Promise<void> {
    if (this.#closed) throw new LedgerError('ledger is closed');
    const next = new Map(this.#records);
    for (const key of changes.remove ?? []) next.delete(key);
    for (const record of changes.set ?? []) next.set(record.key, record);
    const previous = this.#records;
    this.#records = next;
    try {
      await this.#write();
    } catch (error) {
      this.#records = previous;
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#lock.release();
  }

  async #write(): Promise<void> {
    const file: LedgerFile = {
      formatVersion: LEDGER_FORMAT_VERSION,
      salt: this.#salt,
      records: [...this.#records.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    };
    await replaceFile(this.#path, `${JSON.stringify(file, null, 1)}\n`, { what: 'writing the ownership ledger' });
  }
}

async function readLedger(path: string): Promise<LedgerFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return { formatVersion: LEDGER_FORMAT_VERSION, salt: randomBytes(16).toString('hex'), records: [] };
    }
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new LedgerError(`ownership ledger ${path} is not valid JSON; it was not written by this engine or is damaged. Move it aside only if you know every entry it recorded is gone.`);
  }
  const file = parsed as Partial<LedgerFile>;
  if (file.formatVersion !== LEDGER_FORMAT_VERSION) {
    throw new LedgerError(`ownership ledger ${path} has format version ${String(file.formatVersion)}; this engine reads version ${LEDGER_FORMAT_VERSION}`);
  }
  if (typeof file.salt !== 'string' || !Array.isArray(file.records)) {
    throw new LedgerError(`ownership ledger ${path} lacks its salt or records`);
  }
  return file as LedgerFile;
}
