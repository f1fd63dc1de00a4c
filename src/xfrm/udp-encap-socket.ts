/**
 * A UDP socket with UDP_ENCAP set, owned by the native addon (native/src/udp_encap.cc).
 *
 * Linux decapsulates ESP-in-UDP (RFC 3948, `encap espinudp` SAs) only for datagrams that
 * arrive on a UDP socket with this option: the socket's receive hook hands them to XFRM before
 * anything is queued. Sending needs no socket (the SA adds the UDP header). So the socket just
 * has to exist, bound to the local address and port an SA receives on, in the network
 * namespace whose XFRM tables hold the SA; nothing ever reads from it.
 *
 * It is bound without SO_REUSEADDR, so a port another process holds (an IKE daemon) makes
 * `open` fail with EADDRINUSE rather than split the port's traffic between two sockets.
 */
import { isIP } from 'node:net';

import { errnoCode } from '../netlink/errno.js';
import { nativeAddon, resolveNetnsPath } from '../netlink/socket.js';

export type UdpEncapsulation = 'espinudp' | 'espinudp-nonike';
export const UDP_ENCAPSULATIONS: readonly UdpEncapsulation[] = ['espinudp', 'espinudp-nonike'];

export interface UdpEncapSocketOptions {
  /** A name under /run/netns or an absolute namespace path; default the calling thread's namespace. */
  readonly netns?: string;
  /** A local IPv4 or IPv6 address (an SA's destination on the node that receives with it). */
  readonly address: string;
  /** 1..65535 (an SA's encapsulation destinationPort). */
  readonly port: number;
  readonly encapsulation: UdpEncapsulation;
}

/** A failed open: which system call, which errno. */
export class UdpEncapSocketError extends Error {
  override readonly name = 'UdpEncapSocketError';
  readonly errno: number;
  /** e.g. 'EADDRINUSE' (another process holds the port), 'EADDRNOTAVAIL' (not a local address). */
  readonly code: string;
  readonly syscall: string;

  constructor(message: string, errno: number, syscall: string) {
    super(message);
    this.errno = Math.abs(errno);
    this.code = errnoCode(errno);
    this.syscall = syscall;
  }
}

interface NativeUdpEncapSocket {
  readonly closed: boolean;
  readonly address: string;
  readonly port: number;
  readonly encapsulation: string | null;
  close(): void;
}

type NativeConstructor = new (config: { netnsPath?: string; address: string; port: number; encapsulation: string }) => NativeUdpEncapSocket;

export class UdpEncapSocket {
  readonly #native: NativeUdpEncapSocket;
  /** The address and port the kernel bound (getsockname). */
  readonly address: string;
  readonly port: number;
  readonly netnsPath: string | undefined;

  private constructor(native: NativeUdpEncapSocket, netnsPath: string | undefined) {
    this.#native = native;
    this.address = native.address;
    this.port = native.port;
    this.netnsPath = netnsPath;
  }

  /** Creates, configures and binds the socket. Throws TypeError/RangeError before any system call, UdpEncapSocketError after. */
  static open(options: UdpEncapSocketOptions): UdpEncapSocket {
    validate(options);
    const netnsPath = options.netns === undefined ? undefined : resolveNetnsPath(options.netns);
    const Native = nativeAddon().UdpEncapSocket as NativeConstructor | undefined;
    if (typeof Native !== 'function') {
      throw new Error('The native addon has no UdpEncapSocket: rebuild it (npx node-gyp rebuild --directory native)');
    }
    try {
      return new UdpEncapSocket(
        new Native({ ...(netnsPath === undefined ? {} : { netnsPath }), address: options.address, port: options.port, encapsulation: options.encapsulation }),
        netnsPath,
      );
    } catch (error) {
      const native = error as Error & { errno?: number; syscall?: string };
      if (typeof native.errno !== 'number') throw error;
      const code = errnoCode(native.errno);
      throw new UdpEncapSocketError(`${native.message} (${code})${hint(code, options.encapsulation)}`, native.errno, native.syscall ?? 'unknown');
    }
  }

  /** The encapsulation the kernel holds for the socket now (getsockopt), or undefined once closed. */
  get encapsulation(): string | undefined {
    return this.#native.encapsulation ?? undefined;
  }

  get closed(): boolean {
    return this.#native.closed;
  }

  /** Closes the socket: from then on the kernel no longer decapsulates on this port. Idempotent. */
  close(): void {
    this.#native.close();
  }
}

function validate(options: UdpEncapSocketOptions): void {
  if (isIP(options.address) === 0) throw new TypeError(`address ${JSON.stringify(options.address)} is not an IPv4 or IPv6 address`);
  if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
    throw new RangeError(`port must be an integer from 1 to 65535, got ${String(options.port)}`);
  }
  if (!UDP_ENCAPSULATIONS.includes(options.encapsulation)) {
    throw new TypeError(`encapsulation must be ${UDP_ENCAPSULATIONS.join(' or ')}, got ${JSON.stringify(options.encapsulation)}`);
  }
}

function hint(code: string, encapsulation: UdpEncapsulation): string {
  switch (code) {
    case 'EADDRINUSE':
      return ' Another process holds this port (`ss -ulpn` shows which).';
    case 'EADDRNOTAVAIL':
      return ' The address is not one of this network namespace.';
    case 'ENOPROTOOPT':
      if (encapsulation === 'espinudp-nonike') return ' This kernel does not offer espinudp-nonike (measured: the 6.18 kernel of the build machines refuses it, the 6.1 of Debian 12 accepts it): use espinudp.';
      return ' This kernel cannot decapsulate ESP in UDP for this address family (CONFIG_XFRM; IPv6 needs Linux 5.8+ with IPv6 ESP).';
    case 'EACCES':
      return ' Ports below 1024 need CAP_NET_BIND_SERVICE.';
    case 'EPERM':
      return ' Entering another network namespace needs root (CAP_SYS_ADMIN).';
    default:
      return '';
  }
}
