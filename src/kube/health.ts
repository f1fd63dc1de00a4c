/**
 * The process's one HTTP endpoint for the kubelet and Prometheus (node:http, no framework):
 *   /healthz  liveness: the process answers (plus any registered liveness checks);
 *   /readyz   readiness: every registered check passes (caches synced, leader work started...);
 *   /metrics  the given prom-client Registry in the text exposition format.
 * Failing checks answer 503 with one `[-]name failed: reason` line each, as the API server's
 * own /readyz does; `?verbose` lists passing checks too. Each check is bounded in time so a
 * stuck dependency makes the probe fail instead of hang.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { silentLogger, type Logger } from './logger.js';

/** Passes when it returns true/undefined; fails when it returns false, a string (the reason), or throws. */
export type HealthCheck = () => boolean | string | void | Promise<boolean | string | void>;

export interface HealthServerOptions {
  /** `host:port`, `:port` (all interfaces) or `[v6]:port`. Default `:8080`. */
  address?: string;
  /** Served on /metrics; without it /metrics is 404. */
  registry?: Registry;
  logger?: Logger;
  /** Per-check time limit; default 5 s. */
  checkTimeoutMs?: number;
}

export interface ListenAddress {
  /** Undefined: all interfaces. */
  host: string | undefined;
  port: number;
}

export function parseListenAddress(address: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  const port = Number(match?.[3]);
  if (match === null || !(port >= 0 && port <= 65535)) throw new Error(`invalid listen address ${JSON.stringify(address)}: expected host:port, :port or [v6]:port`);
  const host = match[1] ?? match[2];
  return { host: host === '' || host === undefined ? undefined : host, port };
}

export class HealthServer {
  private readonly readiness = new Map<string, HealthCheck>();
  private readonly liveness = new Map<string, HealthCheck>();
  private readonly logger: Logger;
  private readonly checkTimeoutMs: number;
  private server: Server | undefined;

  constructor(private readonly options: HealthServerOptions = {}) {
    this.logger = (options.logger ?? silentLogger).child({ component: 'health' });
    this.checkTimeoutMs = options.checkTimeoutMs ?? 5_000;
  }

  addReadinessCheck(name: string, check: HealthCheck): void {
    this.readiness.set(name, check);
  }

  /** Removes a readiness check, only if it is still this one (a later owner may have replaced it). */
  removeReadinessCheck(name: string, check: HealthCheck): void {
    if (this.readiness.get(name) === check) this.readiness.delete(name);
  }

  addLivenessCheck(name: string, check: HealthCheck): void {
    this.liveness.set(name, check);
  }

  /** Listens; resolves with the bound address (useful with port 0). */
  async start(): Promise<AddressInfo> {
    if (this.server !== undefined) throw new Error('health server already started');
    const { host, port } = parseListenAddress(this.options.address ?? ':8080');
    const server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        this.logger.error('health endpoint failed', { error });
        if (!response.headersSent) response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        response.end('internal error\n');
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const bound = server.address() as AddressInfo;
    this.logger.info('serving /healthz, /readyz, /metrics', { address: bound.address, port: bound.port });
    return bound;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Prometheus keeps connections alive: close them or close() waits for their timeout.
      server.closeAllConnections();
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://health.invalid');
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(response, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
    switch (url.pathname) {
      case '/healthz':
      case '/livez':
        return this.report(response, this.liveness, url.searchParams.has('verbose'));
      case '/readyz':
        return this.report(response, this.readiness, url.searchParams.has('verbose'));
      case '/metrics': {
        const registry = this.options.registry;
        if (registry === undefined) return send(response, 404, 'no metrics registry\n');
        return send(response, 200, await registry.metrics(), { 'content-type': registry.contentType });
      }
      default:
        return send(response, 404, 'not found\n');
    }
  }

  private async report(response: ServerResponse, checks: Map<string, HealthCheck>, verbose: boolean): Promise<void> {
    const results = await Promise.all([...checks].map(async ([name, check]) => ({ name, failure: await this.run(check) })));
    const failed = results.filter((result) => result.failure !== undefined);
    const lines = results
      .filter((result) => verbose || result.failure !== undefined)
      .map((result) => (result.failure === undefined ? `[+]${result.name} ok` : `[-]${result.name} failed: ${result.failure}`));
    const verdict = failed.length === 0 ? 'ok' : `${failed.length} check(s) failed`;
    send(response, failed.length === 0 ? 200 : 503, [...lines, verdict].join('\n') + '\n');
  }

  /** Undefined when the check passed, else why it failed. */
  private async run(check: HealthCheck): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`no answer within ${this.checkTimeoutMs} ms`), this.checkTimeoutMs);
      });
      const outcome = await Promise.race([Promise.resolve().then(check), timeout]);
      if (outcome === undefined || outcome === true) return undefined;
      if (outcome === false) return 'not ready';
      return outcome;
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    } finally {
      clearTimeout(timer);
    }
  }
}

function send(response: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}
