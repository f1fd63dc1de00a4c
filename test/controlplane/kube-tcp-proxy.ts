// A TCP proxy on 127.0.0.1 between a client and the test apiserver, so a test can break the
// network under one client without touching the shared control plane: cut every connection
// (a reset), refuse new ones (an outage), or freeze them (a silent, half-dead connection).
// TLS passes through untouched: the apiserver certificate is valid for 127.0.0.1 on any port.
import { createServer, connect, type Server, type Socket } from 'node:net';

type Mode = 'open' | 'refusing' | 'frozen';

export class TcpProxy {
  private mode: Mode = 'open';
  private readonly pairs = new Set<[Socket, Socket]>();
  accepted = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Listens on 127.0.0.1:<free port> and forwards to 127.0.0.1:<targetPort>. */
  static async start(targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => proxy?.accept(client, targetPort));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, resolve);
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');
    proxy = new TcpProxy(server, address.port);
    return proxy;
  }

  /** The apiserver URL as seen through the proxy. */
  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** Resets every open connection; new ones still go through. */
  cut(): void {
    for (const [client, upstream] of this.pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  /** An outage: open connections are reset and new ones are reset at once. */
  refuse(): void {
    this.mode = 'refusing';
    this.cut();
  }

  /** Silence: no byte moves either way on open or new connections, and nothing is closed. */
  freeze(): void {
    this.mode = 'frozen';
    for (const [client, upstream] of this.pairs) {
      // unpipe, not just pause: pipe() would resume a paused source on the next 'drain'.
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** Back to forwarding (frozen connections resume where they stopped). */
  restore(): void {
    const wasFrozen = this.mode === 'frozen';
    this.mode = 'open';
    if (!wasFrozen) return;
    for (const [client, upstream] of this.pairs) {
      client.pipe(upstream);
      upstream.pipe(client);
    }
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, targetPort: number): void {
    this.accepted++;
    if (this.mode === 'refusing') {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const drop = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    if (this.mode === 'frozen') {
      client.pause();
      upstream.pause();
      return;
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
