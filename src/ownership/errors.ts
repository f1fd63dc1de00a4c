/**
 * The one error type of the ownership layer, and the translation of file-system failures on the
 * state directory into messages that say what is wrong and where.
 *
 * A read-only or full state directory used to surface as a bare ENOENT or ENOSPC from deep inside
 * a write; the operator then had to guess which file, and whether the ledger was damaged. Here
 * every such failure names the directory and the condition, and carries `code` so that callers
 * (the CLI's exit status, the agent's node state) can branch without parsing text.
 */

/**
 * Why a ledger operation failed. File-system conditions keep their errno name (EROFS, EACCES,
 * EPERM, ENOSPC, EDQUOT, EIO, ...); `LOCKED` means another engine holds the ledger; `INVALID`
 * means the file's contents are not a ledger this engine reads.
 */
export type LedgerErrorCode = 'LOCKED' | 'INVALID' | 'CLOSED' | (string & {});

export class LedgerError extends Error {
  override readonly name = 'LedgerError';
  readonly code: LedgerErrorCode;
  /** The state directory concerned, when the failure is about one. */
  readonly directory: string | undefined;

  constructor(message: string, options: { readonly code?: LedgerErrorCode; readonly directory?: string; readonly cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code ?? 'INVALID';
    this.directory = options.directory;
  }
}

/**
 * A LedgerError for a failed file-system call in `directory`. `doing` says what we were doing, in
 * a few words ("writing the ledger", "creating the lock file"); `consequence`, when given, says
 * what the failure left behind ("the previous ledger is intact"). Non-errno errors pass through.
 */
export function fileSystemError(error: unknown, directory: string, doing: string, consequence?: string): Error {
  if (error instanceof LedgerError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string') return error instanceof Error ? error : new Error(String(error));
  const tail = consequence === undefined ? '' : `; ${consequence}`;
  const say = (what: string) => new LedgerError(`${what} (${doing})${tail}`, { code, directory, cause: error });
  switch (code) {
    case 'EROFS':
      return say(`state directory ${directory} is on a read-only file system; ipsec-operator needs it writable (for the agent: a hostPath volume that is not readOnly)`);
    case 'EACCES':
    case 'EPERM':
      return say(`permission denied on state directory ${directory}; run as a user that may write it (root for the agent), or fix its owner and mode`);
    case 'ENOSPC':
      return say(`no space left on the file system of state directory ${directory}; free some space and retry`);
    case 'EDQUOT':
      return say(`disk quota exceeded on state directory ${directory}; raise the quota or free some space and retry`);
    case 'ENOTDIR':
      return say(`state directory ${directory} (or one of its parents) is not a directory`);
    default:
      return say(`file-system error in state directory ${directory}: ${(error as Error).message}`);
  }
}
