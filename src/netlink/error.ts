/**
 * A kernel refusal as data: which operation, the errno (number and name), the kernel's own
 * explanation and the offset it points at (extended ack), and the request's sequence number.
 * Compare with the helpers (`isNotFound`, `isExists`) or with `code`, never with the text.
 */
import { errnoCode, errnoDescription, errnoNumber, type ErrnoName } from './errno.js';
import type { ExtendedAck } from './ack.js';

export interface NetlinkErrorDetails {
  /** What was asked, e.g. `XFRM_MSG_DELPOLICY dir out 10.0.0.0/24 -> 10.0.1.0/24`. */
  readonly operation: string;
  /** Positive errno. */
  readonly errno: number;
  readonly sequence: number;
  readonly extendedAck?: ExtendedAck;
  /** Our own explanation, used when the kernel gave none (timeouts, lost replies). */
  readonly detail?: string;
  readonly cause?: unknown;
}

export class NetlinkError extends Error {
  override readonly name: string = 'NetlinkError';
  readonly operation: string;
  /** Positive errno, e.g. 2. */
  readonly errno: number;
  /** errno name, e.g. 'ENOENT'. */
  readonly code: string;
  /** NLMSGERR_ATTR_MSG: the kernel's reason, when it gave one. */
  readonly kernelMessage: string | undefined;
  /** NLMSGERR_ATTR_OFFS: offset of the offending attribute from the start of the request. */
  readonly kernelOffset: number | undefined;
  /** NLMSGERR_ATTR_MISS_TYPE: the required attribute that was missing. */
  readonly missingAttribute: number | undefined;
  /** Our own explanation when the kernel gave none (timeouts, lost replies). */
  readonly detail: string | undefined;
  /** nlmsg_seq of the request. */
  readonly sequence: number;

  constructor(details: NetlinkErrorDetails) {
    const code = errnoCode(details.errno);
    const reason = details.extendedAck?.message;
    const explanation = reason ?? details.detail;
    super(
      `${details.operation}: ${code} (${errnoDescription(details.errno)})${explanation ? `: ${explanation}` : ''}`,
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.operation = details.operation;
    this.errno = Math.abs(details.errno);
    this.code = code;
    this.kernelMessage = reason;
    this.kernelOffset = details.extendedAck?.offset;
    this.missingAttribute = details.extendedAck?.missingType;
    this.detail = details.detail;
    this.sequence = details.sequence;
  }

  /** Same as `code === name`, typed. */
  is(name: ErrnoName): boolean {
    return this.errno === errnoNumber(name);
  }
}

function errnoOf(error: unknown): number | undefined {
  if (error instanceof NetlinkError) return error.errno;
  if (error !== null && typeof error === 'object' && 'errno' in error && typeof error.errno === 'number') {
    return Math.abs(error.errno);
  }
  return undefined;
}

/**
 * The object does not exist: ENOENT (policies) or ESRCH (SAs: the kernel's state lookups
 * answer "no such process").
 */
export function isNotFound(error: unknown): boolean {
  const errno = errnoOf(error);
  return errno === errnoNumber('ENOENT') || errno === errnoNumber('ESRCH');
}

/** The object already exists (EEXIST): an add of something already there. */
export function isExists(error: unknown): boolean {
  return errnoOf(error) === errnoNumber('EEXIST');
}

/** A request that got no answer in time. The kernel may or may not have applied it. */
export class NetlinkTimeoutError extends NetlinkError {
  override readonly name = 'NetlinkTimeoutError';

  constructor(operation: string, sequence: number, timeoutMs: number) {
    super({
      operation,
      errno: errnoNumber('ETIMEDOUT'),
      sequence,
      detail: `no reply within ${timeoutMs} ms (seq ${sequence}); the kernel may or may not have applied it`,
    });
  }
}
