/**
 * XfrmMonitor: the kernel's XFRM notifications as an async iterable of typed XfrmEvents,
 * like `ip xfrm monitor`.
 *
 * It uses its own socket, joined to the wanted multicast groups (ACQUIRE, EXPIRE, SA and POLICY
 * by default) and never used for requests, so a notification can never be mistaken for a reply.
 * When the kernel drops notifications because the receive buffer is full it reports ENOBUFS;
 * the monitor then yields `{ kind: 'overrun' }` (resynchronise from a dump) and keeps going.
 * A consumer that falls behind is handled the same way: past a high-water mark the monitor stops
 * reading, the kernel's buffer fills, and the loss surfaces as an overrun rather than as
 * unbounded memory. `close()` (or leaving a for-await loop) ends the iteration.
 */
import { NetlinkCodecError } from '../netlink/codec-error.js';
import { parseMessages } from '../netlink/message.js';
import { NetlinkSocket, XfrmMulticastGroup } from '../netlink/socket.js';
import { decodeEvent, type XfrmEvent } from './events.js';

export type XfrmMonitorGroup = 'acquire' | 'expire' | 'sa' | 'policy' | 'aevents' | 'report' | 'migrate' | 'mapping';

const GROUP_NUMBERS: Readonly<Record<XfrmMonitorGroup, number>> = {
  acquire: XfrmMulticastGroup.ACQUIRE,
  expire: XfrmMulticastGroup.EXPIRE,
  sa: XfrmMulticastGroup.SA,
  policy: XfrmMulticastGroup.POLICY,
  aevents: XfrmMulticastGroup.AEVENTS,
  report: XfrmMulticastGroup.REPORT,
  migrate: XfrmMulticastGroup.MIGRATE,
  mapping: XfrmMulticastGroup.MAPPING,
};

export const DEFAULT_MONITOR_GROUPS: readonly XfrmMonitorGroup[] = ['acquire', 'expire', 'sa', 'policy'];

export interface XfrmMonitorOptions {
  /** Network namespace: a name under /run/netns or an absolute path. Default: this process's. */
  readonly netns?: string;
  readonly groups?: readonly XfrmMonitorGroup[];
  /** Receive buffer to ask for. Default 4 MiB. */
  readonly receiveBufferBytes?: number;
  /** Events queued for a slow consumer before the monitor stops reading. Default 10,000. */
  readonly highWaterMark?: number;
}

/** What the monitor needs from a socket (NetlinkSocket fits). */
export interface MonitorTransport {
  onMessage(handler: ((datagram: Buffer) => void) | undefined): unknown;
  onError(handler: ((error: Error & { errno: number; code: string; fatal?: boolean }) => void) | undefined): unknown;
  pause(): unknown;
  resume(): unknown;
  close(): void;
}

export class XfrmMonitor implements AsyncIterable<XfrmEvent> {
  readonly #transport: MonitorTransport;
  readonly #queue: XfrmEvent[] = [];
  readonly #highWaterMark: number;
  #waiting: { resolve: (result: IteratorResult<XfrmEvent>) => void; reject: (error: unknown) => void } | undefined;
  #failure: Error | undefined;
  #closed = false;
  #paused = false;
  #iterating = false;

  constructor(transport: MonitorTransport, options: Pick<XfrmMonitorOptions, 'highWaterMark'> = {}) {
    this.#transport = transport;
    this.#highWaterMark = options.highWaterMark ?? 10_000;
    transport.onMessage((datagram) => this.#receive(datagram));
    transport.onError((error) => this.#error(error));
  }

  /** Opens a socket joined to `groups` and starts listening at once (events are queued until read). */
  static open(options: XfrmMonitorOptions = {}): XfrmMonitor {
    const groups = options.groups ?? DEFAULT_MONITOR_GROUPS;
    const socket = NetlinkSocket.open({
      ...(options.netns === undefined ? {} : { netns: options.netns }),
      groups: groups.map((group) => GROUP_NUMBERS[group]),
      receiveBufferBytes: options.receiveBufferBytes ?? 4 * 1024 * 1024,
    });
    return new XfrmMonitor(socket, options);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Events decoded and not yet read. */
  get queued(): number {
    return this.#queue.length;
  }

  [Symbol.asyncIterator](): AsyncIterator<XfrmEvent> {
    if (this.#iterating) throw new Error('XfrmMonitor supports one consumer: it is already being iterated');
    this.#iterating = true;
    return {
      next: () => this.#next(),
      return: async () => {
        this.close();
        return { done: true, value: undefined };
      },
    };
  }

  /** Stops listening and ends the iteration (a pending `next()` resolves as done). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#transport.onMessage(undefined);
    this.#transport.onError(undefined);
    this.#transport.close();
    this.#queue.length = 0;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.resolve({ done: true, value: undefined });
  }

  #next(): Promise<IteratorResult<XfrmEvent>> {
    const event = this.#queue.shift();
    if (event) {
      if (this.#paused && this.#queue.length <= this.#highWaterMark / 2) {
        this.#paused = false;
        this.#transport.resume();
      }
      return Promise.resolve({ done: false, value: event });
    }
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  #push(event: XfrmEvent): void {
    if (this.#closed) return;
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = undefined;
      waiting.resolve({ done: false, value: event });
      return;
    }
    this.#queue.push(event);
    if (!this.#paused && this.#queue.length >= this.#highWaterMark) {
      this.#paused = true;
      this.#transport.pause();
    }
  }

  #receive(datagram: Buffer): void {
    let messages;
    try {
      messages = parseMessages(datagram);
    } catch (error) {
      this.#push({ kind: 'overrun', reason: 'undecodable', detail: (error as Error).message });
      return;
    }
    for (const message of messages) {
      try {
        const event = decodeEvent(message);
        if (event) this.#push(event);
      } catch (error) {
        const detail = error instanceof NetlinkCodecError ? error.message : String(error);
        this.#push({ kind: 'overrun', reason: 'undecodable', detail });
      }
    }
  }

  #error(error: Error & { code: string; fatal?: boolean }): void {
    if (error.code === 'ENOBUFS' && error.fatal !== true) {
      this.#push({ kind: 'overrun', reason: 'ENOBUFS', detail: error.message });
      return;
    }
    // A fatal socket error: no more events can come. Fail the iteration once the queue drains.
    this.#failure = error;
    this.#transport.onMessage(undefined);
    this.#transport.onError(undefined);
    const waiting = this.#waiting;
    if (waiting && this.#queue.length === 0) {
      this.#waiting = undefined;
      waiting.reject(error);
    }
  }
}
