/**
 * The connection layer between message builders and the socket: sequence numbers, matching
 * each reply to its request (by nlmsg_seq and our port id), acknowledgements, multipart dumps
 * ending in NLMSG_DONE (retried when NLM_F_DUMP_INTR says the table changed underneath), a
 * timeout per request, and pipelined batches.
 *
 * Every request except dumps carries NLM_F_ACK, so each one ends with exactly one NLMSG_ERROR
 * (errno 0 = success) and a GET's data reply arrives before that ack. The kernel processes a
 * datagram synchronously inside sendmsg, so when `send` resolves all replies are queued on the
 * socket; batches bound the number of unanswered requests so those replies fit in the receive
 * buffer (an overflow would drop acks: ENOBUFS).
 */
import { parseAcknowledgement, parseDone } from './ack.js';
import { NetlinkCodecError } from './codec-error.js';
import { NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR } from './constants.js';
import { errnoNumber } from './errno.js';
import { NetlinkError, NetlinkTimeoutError } from './error.js';
import { messageSpace, parseMessages, writeMessage, type NetlinkMessage } from './message.js';

/** What the connection needs from a socket (src/netlink/socket.ts NetlinkSocket fits). */
export interface NetlinkTransport {
  readonly portId: number;
  send(datagram: Uint8Array): Promise<void>;
  onMessage(handler: ((datagram: Buffer) => void) | undefined): unknown;
  onError(handler: ((error: Error & { errno: number; code: string }) => void) | undefined): unknown;
  close(): void;
}

/** A request body and how to send it (XfrmRequest has this shape). */
export interface NetlinkRequest {
  readonly type: number;
  /** NLM_F_* besides NLM_F_REQUEST; NLM_F_DUMP makes it a dump. */
  readonly flags: number;
  readonly body: Buffer;
  /** Names the request in errors. */
  readonly operation: string;
  /** The type of data replies to collect (GET replies, dump entries). */
  readonly replyType?: number;
}

export interface ConnectionOptions {
  /** Silence allowed before a request (or a dump, between two of its replies) fails. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Dump attempts before giving up when NLM_F_DUMP_INTR keeps coming. Default 5. */
  readonly maxDumpAttempts?: number;
  /** Unanswered requests allowed at once in a batch. Default 256. */
  readonly maxInFlight?: number;
  /** Largest datagram a batch packs. Default 64 KiB. */
  readonly maxDatagramBytes?: number;
}

/** The outcome of one request of a batch, in the order given. */
export type BatchOutcome =
  | { readonly ok: true; readonly replies: readonly NetlinkMessage[] }
  | { readonly ok: false; readonly error: NetlinkError | NetlinkCodecError };

interface Pending {
  readonly request: NetlinkRequest;
  readonly sequence: number;
  readonly replies: NetlinkMessage[];
  interrupted: boolean;
  readonly settle: (outcome: BatchOutcome) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const DEFAULTS = {
  requestTimeoutMs: 10_000,
  maxDumpAttempts: 5,
  maxInFlight: 256,
  maxDatagramBytes: 64 * 1024,
} as const;

export class NetlinkConnection {
  readonly #transport: NetlinkTransport;
  readonly #options: Required<ConnectionOptions>;
  readonly #pending = new Map<number, Pending>();
  #sequence: number;
  #closed = false;
  /** Dumps run one at a time: the kernel refuses a second dump on a socket (EBUSY). */
  #dumpQueue: Promise<unknown> = Promise.resolve();

  constructor(transport: NetlinkTransport, options: ConnectionOptions = {}) {
    this.#transport = transport;
    this.#options = { ...DEFAULTS, ...stripUndefined(options) };
    for (const [name, value] of Object.entries(this.#options)) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`ConnectionOptions.${name} must be a positive integer, got ${value}`);
    }
    // Any start works (replies are matched per socket); a time-based one keeps logs of
    // successive connections from showing the same numbers.
    this.#sequence = (Date.now() % 0x7fff_0000) + 1;
    transport.onMessage((datagram) => this.#receive(datagram));
    transport.onError((error) => this.#transportError(error));
  }

  get portId(): number {
    return this.#transport.portId;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Requests waiting for their answer (for tests and metrics). */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Sends one request with NLM_F_ACK and resolves with its data replies (possibly none) once
   * the kernel acknowledges it; rejects with NetlinkError when the kernel refuses it.
   */
  async request(request: NetlinkRequest): Promise<NetlinkMessage[]> {
    if ((request.flags & NLM_F_DUMP) === NLM_F_DUMP) return this.dump(request);
    const [outcome] = await this.batch([request], { maxInFlight: 1 });
    if (!outcome) throw new Error('unreachable: batch of one returned nothing');
    if (!outcome.ok) throw outcome.error;
    return [...outcome.replies];
  }

  /**
   * Runs a dump to completion and resolves with every entry. When the kernel marks the dump
   * inconsistent (NLM_F_DUMP_INTR: the table changed while it was being walked) the whole dump
   * is repeated, up to maxDumpAttempts times.
   */
  dump(request: NetlinkRequest): Promise<NetlinkMessage[]> {
    const run = this.#dumpQueue.then(() => this.#dumpWithRetries(request));
    this.#dumpQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * Pipelines many requests: packs as many as fit into each datagram (maxDatagramBytes), keeps at
   * most maxInFlight unanswered, and resolves with one outcome per request, in order. A refused
   * request does not stop the others (the kernel processes every message of a datagram). Never
   * rejects for a request's failure; rejects only if the connection is closed before sending.
   */
  async batch(
    requests: readonly NetlinkRequest[],
    options: { readonly maxInFlight?: number; readonly maxDatagramBytes?: number } = {},
  ): Promise<BatchOutcome[]> {
    this.#assertOpen();
    const maxInFlight = options.maxInFlight ?? this.#options.maxInFlight;
    const maxDatagramBytes = options.maxDatagramBytes ?? this.#options.maxDatagramBytes;
    const outcomes: Array<BatchOutcome | undefined> = new Array(requests.length).fill(undefined);
    // One promise for the whole batch, not one per request: with 10,000 requests the per-request
    // promises and their Promise.all were garbage the first (unoptimised) batch paid for.
    let unsettled = 0;
    let allSent = false;
    let settledAll: () => void = () => undefined;
    const settled = new Promise<void>((resolve) => {
      settledAll = resolve;
    });
    let inFlight = 0;
    let wake: (() => void) | undefined;
    let next = 0;
    while (next < requests.length) {
      if (this.#closed) {
        for (let i = next; i < requests.length; i += 1) outcomes[i] = { ok: false, error: this.#closedError(requests[i]!, 0) };
        break;
      }
      const chunk: number[] = [];
      let size = 0;
      while (next < requests.length && inFlight + chunk.length < maxInFlight) {
        const space = messageSpace(requests[next]!.body.length);
        if (chunk.length > 0 && size + space > maxDatagramBytes) break;
        chunk.push(next);
        size += space;
        next += 1;
      }
      if (chunk.length === 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      const datagram = Buffer.alloc(size);
      let offset = 0;
      const sent: Pending[] = [];
      for (const index of chunk) {
        const request = requests[index]!;
        const sequence = this.#nextSequence();
        offset += writeMessage(datagram, offset, this.#header(request, NLM_F_REQUEST | NLM_F_ACK | request.flags, sequence), request.body);
        inFlight += 1;
        unsettled += 1;
        sent.push(
          this.#register(request, sequence, (outcome) => {
            outcomes[index] = outcome;
            inFlight -= 1;
            unsettled -= 1;
            wake?.();
            if (allSent && unsettled === 0) settledAll();
          }),
        );
      }
      try {
        await this.#transport.send(datagram);
      } catch (error) {
        for (const pending of sent) this.#fail(pending, sendError(pending, error));
      }
    }
    allSent = true;
    if (unsettled > 0) await settled;
    return outcomes.map((outcome, i) => outcome ?? { ok: false, error: this.#closedError(requests[i]!, 0) });
  }

  /** Rejects everything still waiting and closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of [...this.#pending.values()]) this.#fail(pending, this.#closedError(pending.request, pending.sequence));
    this.#transport.onMessage(undefined);
    this.#transport.onError(undefined);
    this.#transport.close();
  }

  async #dumpWithRetries(request: NetlinkRequest): Promise<NetlinkMessage[]> {
    for (let attempt = 1; ; attempt += 1) {
      this.#assertOpen();
      const sequence = this.#nextSequence();
      const result = await new Promise<{ outcome: BatchOutcome; interrupted: boolean }>((resolve) => {
        const pending = this.#register(request, sequence, (outcome) => resolve({ outcome, interrupted: pending.interrupted }));
        const datagram = Buffer.alloc(messageSpace(request.body.length));
        writeMessage(datagram, 0, this.#header(request, NLM_F_REQUEST | NLM_F_DUMP | request.flags, sequence), request.body);
        this.#transport.send(datagram).catch((error: unknown) => this.#fail(pending, sendError(pending, error)));
      });
      if (!result.outcome.ok) throw result.outcome.error;
      if (!result.interrupted) return [...result.outcome.replies];
      if (attempt >= this.#options.maxDumpAttempts) {
        throw new NetlinkError({
          operation: request.operation,
          errno: errnoNumber('EINTR'),
          sequence,
          detail: `the dump was interrupted by concurrent changes (NLM_F_DUMP_INTR) ${attempt} times in a row`,
        });
      }
    }
  }

  #register(request: NetlinkRequest, sequence: number, settle: (outcome: BatchOutcome) => void): Pending {
    const pending: Pending = { request, sequence, replies: [], interrupted: false, settle, timer: undefined };
    pending.timer = setTimeout(() => {
      this.#fail(pending, new NetlinkTimeoutError(request.operation, sequence, this.#options.requestTimeoutMs));
    }, this.#options.requestTimeoutMs);
    this.#pending.set(sequence, pending);
    return pending;
  }

  #complete(pending: Pending, outcome: BatchOutcome): void {
    if (this.#pending.get(pending.sequence) !== pending) return; // already settled
    this.#pending.delete(pending.sequence);
    clearTimeout(pending.timer);
    pending.settle(outcome);
  }

  #fail(pending: Pending, error: NetlinkError | NetlinkCodecError): void {
    this.#complete(pending, { ok: false, error });
  }

  #receive(datagram: Buffer): void {
    let messages: NetlinkMessage[];
    try {
      messages = parseMessages(datagram);
    } catch (error) {
      // A datagram we cannot frame may have held any request's answer: none can be trusted.
      const codecError = error instanceof NetlinkCodecError ? error : new NetlinkCodecError('netlink datagram', String(error));
      for (const pending of [...this.#pending.values()]) this.#fail(pending, codecError);
      return;
    }
    for (const message of messages) this.#dispatch(message);
  }

  #dispatch(message: NetlinkMessage): void {
    // Replies to our requests carry our port id; anything else (or a late answer after a
    // timeout) is not ours to interpret.
    if (message.portId !== this.#transport.portId) return;
    const pending = this.#pending.get(message.sequence);
    if (!pending) return;
    try {
      if (message.type === NLMSG_ERROR) {
        const ack = parseAcknowledgement(message);
        if (ack.errno === 0) this.#complete(pending, { ok: true, replies: pending.replies });
        else {
          this.#fail(
            pending,
            new NetlinkError({ operation: pending.request.operation, errno: ack.errno, sequence: pending.sequence, extendedAck: ack.extendedAck }),
          );
        }
        return;
      }
      if ((message.flags & NLM_F_DUMP_INTR) !== 0) pending.interrupted = true;
      if (message.type === NLMSG_DONE) {
        const done = parseDone(message);
        if (done.errno !== 0) {
          this.#fail(
            pending,
            new NetlinkError({ operation: pending.request.operation, errno: done.errno, sequence: pending.sequence, extendedAck: done.extendedAck }),
          );
        } else this.#complete(pending, { ok: true, replies: pending.replies });
        return;
      }
      if (pending.request.replyType !== undefined && message.type === pending.request.replyType) {
        pending.replies.push(message);
        // A long dump is progress, not silence: the timeout counts from the last reply.
        pending.timer?.refresh();
      }
    } catch (error) {
      this.#fail(pending, error instanceof NetlinkCodecError ? error : new NetlinkCodecError(pending.request.operation, String(error)));
    }
  }

  #transportError(error: Error & { errno: number; code: string; fatal?: boolean }): void {
    // ENOBUFS: the receive buffer overflowed and the kernel dropped messages, possibly our
    // acks. Nothing in flight can be trusted to complete.
    const detail =
      error.code === 'ENOBUFS'
        ? 'the receive buffer overflowed and replies were lost; the request may or may not have been applied'
        : `the socket failed: ${error.message}`;
    for (const pending of [...this.#pending.values()]) {
      this.#fail(pending, new NetlinkError({ operation: pending.request.operation, errno: error.errno, sequence: pending.sequence, detail, cause: error }));
    }
    if (error.fatal === true) this.close();
  }

  /**
   * nlmsg_pid carries our port id: the kernel copies it into the notifications a change causes,
   * which is how a listener recognises its own changes (requests sent with 0 look like the
   * kernel's own).
   */
  #header(request: NetlinkRequest, flags: number, sequence: number): { type: number; flags: number; sequence: number; portId: number } {
    return { type: request.type, flags, sequence, portId: this.#transport.portId };
  }

  #nextSequence(): number {
    // nlmsg_seq is a u32; skip 0, which kernel-originated messages use.
    this.#sequence = this.#sequence >= 0xffff_ffff ? 1 : this.#sequence + 1;
    return this.#sequence;
  }

  #assertOpen(): void {
    if (this.#closed) throw this.#closedError(undefined, 0);
  }

  #closedError(request: NetlinkRequest | undefined, sequence: number): NetlinkError {
    return new NetlinkError({
      operation: request?.operation ?? 'netlink request',
      errno: errnoNumber('ECANCELED'),
      sequence,
      detail: 'the connection was closed before the kernel answered',
    });
  }
}

function sendError(pending: Pending, error: unknown): NetlinkError {
  const errno = typeof (error as { errno?: unknown }).errno === 'number' ? Math.abs((error as { errno: number }).errno) : errnoNumber('EIO');
  return new NetlinkError({
    operation: pending.request.operation,
    errno,
    sequence: pending.sequence,
    detail: `sending failed: ${error instanceof Error ? error.message : String(error)}`,
    cause: error,
  });
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
