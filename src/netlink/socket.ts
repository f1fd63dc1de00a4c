/**
 * One NETLINK_XFRM socket, owned by the native addon in native/ (C++, node-addon-api).
 *
 * This layer moves datagrams and nothing else: what goes into `send` is a buffer of one or more
 * complete nlmsgs, and each datagram the kernel sends arrives whole at `onMessage`. Framing,
 * sequence numbers, acks and dumps are the business of the layers above.
 *
 * Decisions worth knowing:
 * - NETLINK_EXT_ACK is on by default, so refusals come with the kernel's reason text and the
 *   offset of the offending attribute.
 * - NETLINK_CAP_ACK is on by default: an error reply carries only the failed request's 16-byte
 *   header, not the whole request. The requester still has its request (the header's sequence
 *   number finds it, and the extended-ack offset points into it), and big failing batches do not
 *   fill the receive buffer with echoes. Pass `capAck: false` to get the echoes.
 * - NETLINK_NO_ENOBUFS is never set: when the receive buffer overflows the kernel drops
 *   messages, and `onError` gets ENOBUFS (`code === 'ENOBUFS'`, `fatal === false`) so the owner
 *   can resynchronise with a dump. The socket stays usable. After an overflow the kernel drops
 *   everything for this socket (replies too) until its queue has been read empty, so ENOBUFS is
 *   reported after the datagrams that were still queued: a request sent from the error handler
 *   gets its reply.
 * - The kernel handles XFRM requests inside sendto: when `send` resolves, every reply and ack of
 *   the datagram is already queued here (2,000 policy adds in one datagram: ~5–50 ms, during
 *   which the event loop waits). Each queued datagram costs ~830 bytes of receive buffer
 *   (measured on 6.18: an ack or a policy event), so the default buffer (208 KiB) holds about
 *   256: a batch with more acked requests needs a larger `receiveBufferBytes` or loses acks.
 * - Datagrams whose sender is not the kernel (nl_pid ≠ 0) are dropped in the addon.
 * - Event loop: the socket watches for input only while a message handler is set and it is not
 *   paused, so an open socket with no handler never keeps the process alive. With a handler it
 *   does, like a listening net.Server, until `close()`; `unref()` lets the process exit anyway
 *   (for a monitor that should not hold a CLI open). A send waiting for buffer space keeps the
 *   process alive unless unref'd.
 * - An open socket is never garbage-collected (it holds an fd and kernel state): close it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { errnoCode } from './errno.js';

/** XFRM multicast groups (enum xfrm_nlgroups in linux/xfrm.h), for `NetlinkSocketOptions.groups`. */
export const XfrmMulticastGroup = {
  ACQUIRE: 1,
  EXPIRE: 2,
  SA: 3,
  POLICY: 4,
  AEVENTS: 5,
  REPORT: 6,
  MIGRATE: 7,
  MAPPING: 8,
} as const;
export type XfrmMulticastGroupNumber = (typeof XfrmMulticastGroup)[keyof typeof XfrmMulticastGroup];

const GROUP_MIN = XfrmMulticastGroup.ACQUIRE;
const GROUP_MAX = XfrmMulticastGroup.MAPPING;
/** The kernel doubles the requested size and caps it at INT_MAX/2; above this we refuse. */
const MAX_BUFFER_BYTES = 2 ** 30;
/** Where `ip netns add NAME` bind-mounts named namespaces. */
const NAMED_NETNS_DIR = '/run/netns';
const PACKAGE_NAME = 'ipsec-operator';
const ADDON_FILE = join('native', 'build', 'Release', 'xfrm_netlink.node');
const BUILD_COMMAND = 'npx node-gyp rebuild --directory native';

export interface NetlinkSocketOptions {
  /**
   * Network namespace to open the socket in: a name as `ip netns` uses it (a file under
   * /run/netns) or an absolute path to a namespace file (e.g. /proc/PID/ns/net). Default: the
   * calling thread's namespace. Only the socket lives there; the process stays where it is.
   */
  readonly netns?: string;
  /** XFRM multicast groups to join (XfrmMulticastGroup, 1..8). Joining needs CAP_NET_ADMIN. */
  readonly groups?: readonly number[];
  /**
   * Receive buffer size to request (SO_RCVBUFFORCE, falling back to SO_RCVBUF, which is capped
   * by net.core.rmem_max, when not privileged). The kernel doubles it for bookkeeping; see
   * `receiveBufferBytes` on the socket for what it granted. Default: the kernel's default.
   */
  readonly receiveBufferBytes?: number;
  /**
   * Send buffer size to request (SO_SNDBUFFORCE/SO_SNDBUF). A datagram larger than the granted
   * size minus 32 bytes is refused with EMSGSIZE, so big batches need this raised.
   */
  readonly sendBufferBytes?: number;
  /** NETLINK_EXT_ACK: the kernel explains refusals. Default true. */
  readonly extendedAck?: boolean;
  /** NETLINK_CAP_ACK: error replies do not echo the request's payload. Default true. */
  readonly capAck?: boolean;
}

export type MessageHandler = (datagram: Buffer) => void;
export type ErrorHandler = (error: NetlinkSocketError) => void;

/** A failed socket operation: which system call, which errno, and what to do about it. */
export class NetlinkSocketError extends Error {
  override readonly name = 'NetlinkSocketError';
  /** Positive errno, e.g. 105. */
  readonly errno: number;
  /** errno name, e.g. 'ENOBUFS' (see errno.ts). */
  readonly code: string;
  /** The system call that failed, e.g. 'recvmsg', 'setns', 'sendto'. */
  readonly syscall: string;
  /**
   * For errors delivered to `onError`: true when reading stopped because of it. ENOBUFS is
   * never fatal: reading goes on after it.
   */
  readonly fatal: boolean;

  constructor(message: string, details: { errno: number; syscall: string; fatal?: boolean; cause?: unknown }) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.errno = Math.abs(details.errno);
    this.code = errnoCode(details.errno);
    this.syscall = details.syscall;
    this.fatal = details.fatal ?? false;
  }
}

/** The shape of the native class (native/src/xfrm_socket.h). */
interface NativeSocket {
  readonly portId: number;
  readonly netnsCookie: bigint | undefined;
  readonly receiveBufferBytes: number;
  readonly sendBufferBytes: number;
  readonly closed: boolean;
  /** true: written; false: queued until writable, `done` reports the outcome. Throws on failure. */
  send(datagram: Uint8Array, done: (error: NativeError | null) => void): boolean;
  startReading(): void;
  stopReading(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

interface NativeSocketConstructor {
  new (
    config: { netnsPath?: string; groups: number[]; receiveBufferBytes?: number; sendBufferBytes?: number; extendedAck: boolean; capAck: boolean },
    onDatagram: (datagram: Buffer) => void,
    onError: (error: NativeError) => void,
  ): NativeSocket;
}

/** What the addon throws or reports: an Error with errno (positive), syscall and maybe fatal. */
interface NativeError extends Error {
  errno?: number;
  syscall?: string;
  fatal?: boolean;
}

export class NetlinkSocket {
  /** The port id (nl_pid) the kernel assigned; replies and our own notifications carry it. */
  readonly portId: number;
  /** Absolute path of the namespace file the socket was opened in, or undefined for "here". */
  readonly netnsPath: string | undefined;
  /**
   * The kernel's cookie of the socket's network namespace (SO_NETNS_COOKIE): unique per
   * namespace within one boot, never reused. undefined on kernels before 5.14.
   */
  readonly netnsCookie: bigint | undefined;
  /** Receive buffer the kernel granted (SO_RCVBUF, already doubled by the kernel). */
  readonly receiveBufferBytes: number;
  /** Send buffer the kernel granted (SO_SNDBUF); datagrams must be at most this minus 32 bytes. */
  readonly sendBufferBytes: number;

  readonly #native: NativeSocket;
  #messageHandler: MessageHandler | undefined;
  #errorHandler: ErrorHandler | undefined;
  #paused = false;

  private constructor(native: NativeSocket, netnsPath: string | undefined) {
    this.#native = native;
    this.netnsPath = netnsPath;
    this.portId = native.portId;
    this.netnsCookie = native.netnsCookie;
    this.receiveBufferBytes = native.receiveBufferBytes;
    this.sendBufferBytes = native.sendBufferBytes;
  }

  /**
   * Opens, configures and binds a NETLINK_XFRM socket (nl_pid chosen by the kernel). Throws
   * NetlinkSocketError when a step fails (e.g. code 'ENOENT' for a missing namespace, 'EPERM'
   * without root), and a plain Error when the addon is not built.
   */
  static open(options: NetlinkSocketOptions = {}): NetlinkSocket {
    const netnsPath = options.netns === undefined ? undefined : resolveNetnsPath(options.netns);
    const config = {
      ...(netnsPath === undefined ? {} : { netnsPath }),
      groups: validateGroups(options.groups ?? []),
      ...(options.receiveBufferBytes === undefined
        ? {}
        : { receiveBufferBytes: validateBufferBytes('receiveBufferBytes', options.receiveBufferBytes) }),
      ...(options.sendBufferBytes === undefined
        ? {}
        : { sendBufferBytes: validateBufferBytes('sendBufferBytes', options.sendBufferBytes) }),
      extendedAck: options.extendedAck ?? true,
      capAck: options.capAck ?? true,
    };
    const { XfrmSocket } = loadAddon();
    // The native callbacks need the instance, which exists only after construction.
    let socket: NetlinkSocket | undefined;
    let native: NativeSocket;
    try {
      native = new XfrmSocket(
        config,
        (datagram) => {
          if (socket !== undefined) socket.#deliverMessage(datagram);
        },
        (error) => {
          if (socket !== undefined) socket.#deliverError(error);
        },
      );
    } catch (error) {
      throw toSocketError(error, 'open');
    }
    socket = new NetlinkSocket(native, netnsPath);
    return socket;
  }

  /** True once `close()` ran. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /**
   * Sends one datagram (one or more complete nlmsgs, kept together) to the kernel. Resolves once
   * the kernel took it — for XFRM that is after it processed the requests, so their replies are
   * already queued on this socket. Never drops silently: if the socket buffer is full the
   * datagram waits for space, in order with later sends. Rejects with NetlinkSocketError.
   */
  send(datagram: Uint8Array): Promise<void> {
    if (!(datagram instanceof Uint8Array) || datagram.byteLength === 0) {
      return Promise.reject(new TypeError('NetlinkSocket.send: the datagram must be a non-empty Uint8Array'));
    }
    return new Promise<void>((resolve, reject) => {
      try {
        const written = this.#native.send(datagram, (error) => {
          if (error === null) resolve();
          else reject(toSocketError(error, 'send', datagram.byteLength, this.sendBufferBytes));
        });
        if (written) resolve();
      } catch (error) {
        reject(toSocketError(error, 'send', datagram.byteLength, this.sendBufferBytes));
      }
    });
  }

  /**
   * Sets (or with undefined, removes) the handler that gets each datagram from the kernel as its
   * own Buffer. Setting it starts reading (unless paused); removing it stops reading, and then
   * unread datagrams wait in the kernel buffer. One handler at a time: it replaces the previous.
   */
  onMessage(handler: MessageHandler | undefined): this {
    this.#messageHandler = handler;
    this.#updateReading();
    return this;
  }

  /**
   * Sets (or removes) the handler for receive errors. ENOBUFS means the kernel dropped messages
   * because the receive buffer was full: resynchronise. With no handler set, a receive error is
   * thrown as an uncaught exception, like an 'error' event nobody listens to.
   */
  onError(handler: ErrorHandler | undefined): this {
    this.#errorHandler = handler;
    return this;
  }

  /** Stops reading; datagrams wait in the kernel buffer (and may overflow it: ENOBUFS). */
  pause(): this {
    this.#paused = true;
    this.#updateReading();
    return this;
  }

  /** Undoes `pause()`. */
  resume(): this {
    this.#paused = false;
    this.#updateReading();
    return this;
  }

  /** Let an open socket that is reading keep the process alive (the default). */
  ref(): this {
    this.#native.ref();
    return this;
  }

  /** Let the process exit even while this socket is open and reading. */
  unref(): this {
    this.#native.unref();
    return this;
  }

  /**
   * Closes the socket: stops reading, closes the fd, rejects sends still waiting for buffer
   * space (ECANCELED). Safe to call more than once, and from inside a handler.
   */
  close(): void {
    if (this.#native.closed) return;
    this.#messageHandler = undefined;
    this.#errorHandler = undefined;
    this.#native.close();
  }

  #updateReading(): void {
    if (this.#native.closed) return;
    if (this.#messageHandler !== undefined && !this.#paused) {
      try {
        this.#native.startReading();
      } catch (error) {
        throw toSocketError(error, 'read');
      }
    } else {
      this.#native.stopReading();
    }
  }

  #deliverMessage(datagram: Buffer): void {
    this.#messageHandler?.(datagram);
  }

  #deliverError(nativeError: NativeError): void {
    const error = fromNative(nativeError, 'read');
    if (this.#errorHandler === undefined) throw error;
    this.#errorHandler(error);
  }
}

/** A name under /run/netns, or an absolute path. Checked before any system call. */
export function resolveNetnsPath(netns: string): string {
  if (typeof netns !== 'string' || netns.length === 0 || netns.includes('\0')) {
    throw new TypeError(`netns must be a namespace name or an absolute path, got ${JSON.stringify(netns)}`);
  }
  if (isAbsolute(netns)) return netns;
  if (netns.includes('/') || netns === '.' || netns === '..') {
    throw new TypeError(
      `netns ${JSON.stringify(netns)} is neither a name under ${NAMED_NETNS_DIR} (no slashes) nor an absolute path`,
    );
  }
  return join(NAMED_NETNS_DIR, netns);
}

function validateGroups(groups: readonly number[]): number[] {
  for (const group of groups) {
    if (!Number.isInteger(group) || group < GROUP_MIN || group > GROUP_MAX) {
      throw new RangeError(
        `groups: ${String(group)} is not an XFRM multicast group (XFRMNLGRP_* is ${GROUP_MIN}..${GROUP_MAX})`,
      );
    }
  }
  return [...new Set(groups)];
}

function validateBufferBytes(option: string, bytes: number): number {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_BUFFER_BYTES) {
    throw new RangeError(`${option} must be an integer from 1 to ${MAX_BUFFER_BYTES}, got ${String(bytes)}`);
  }
  return bytes;
}

type Operation = 'open' | 'send' | 'read';

/** Extra words for the errnos people will actually meet, keyed by operation and code. */
function hintFor(operation: Operation, code: string, syscall: string, size?: number, sendBufferBytes?: number): string {
  switch (`${operation}:${code}`) {
    case 'open:ENOENT':
      return syscall === 'open' ? ' Does the network namespace exist (ip netns add NAME)?' : '';
    case 'open:EINVAL':
      return syscall === 'setns' ? ' The path is not a network namespace file.' : '';
    case 'open:EPERM':
    case 'open:EACCES':
      return ' Opening XFRM sockets in other namespaces and joining groups needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns).';
    case 'open:EPROTONOSUPPORT':
      return ' The kernel has no NETLINK_XFRM (CONFIG_XFRM_USER; try modprobe xfrm_user).';
    case 'send:EMSGSIZE':
      return ` The ${size ?? '?'}-byte datagram exceeds the send buffer (${sendBufferBytes ?? '?'} bytes, minus 32): split the batch or open with a larger sendBufferBytes.`;
    case 'read:ENOBUFS':
      return ' The receive buffer overflowed and the kernel dropped messages: resynchronise (dump), and consider a larger receiveBufferBytes.';
    default:
      return '';
  }
}

/** Native errors (they carry errno) become NetlinkSocketError; anything else passes through. */
function toSocketError(error: unknown, operation: Operation, size?: number, sendBufferBytes?: number): unknown {
  if (!(error instanceof Error) || typeof (error as NativeError).errno !== 'number') return error;
  return fromNative(error as NativeError, operation, size, sendBufferBytes);
}

function fromNative(native: NativeError, operation: Operation, size?: number, sendBufferBytes?: number): NetlinkSocketError {
  const errno = native.errno ?? 0;
  const syscall = native.syscall ?? 'unknown';
  const code = errnoCode(errno);
  return new NetlinkSocketError(`${native.message} (${code})${hintFor(operation, code, syscall, size, sendBufferBytes)}`, {
    errno,
    syscall,
    fatal: native.fatal ?? false,
  });
}

let addon: { XfrmSocket: NativeSocketConstructor } | undefined;

/** The addon's exports, loaded on first use, for the other native classes (src/xfrm/udp-encap-socket.ts). */
export function nativeAddon(): Readonly<Record<string, unknown>> {
  return loadAddon() as unknown as Readonly<Record<string, unknown>>;
}

/** Loads the addon once, on first use, so importing this module never needs it built. */
function loadAddon(): { XfrmSocket: NativeSocketConstructor } {
  if (addon !== undefined) return addon;
  const root = findPackageRoot();
  const path = join(root, ADDON_FILE);
  try {
    addon = createRequire(import.meta.url)(path) as { XfrmSocket: NativeSocketConstructor };
  } catch (error) {
    const why = existsSync(path) ? `it failed to load: ${(error as Error).message}` : 'the file does not exist';
    throw new Error(
      `The NETLINK_XFRM addon is not built or failed to load (${path}): ${why}. ` +
        `Build it from ${root} with \`${BUILD_COMMAND}\` (needs make, g++ and python3).`,
      { cause: error },
    );
  }
  return addon;
}

/** The directory of this package's package.json, from src/netlink/ (vitest) or dist/netlink/ (tsc). */
function findPackageRoot(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && isOurManifest(manifest)) return dir;
    if (dirname(dir) === dir) {
      throw new Error(`Cannot find the ${PACKAGE_NAME} package.json above ${start} to locate the NETLINK_XFRM addon.`);
    }
  }
}

function isOurManifest(path: string): boolean {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    return false;
  }
}

