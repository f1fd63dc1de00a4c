// A scrape relay for agents that listen inside the test VM (10.0.2.15:<port>), which the host
// cannot reach: a loopback HTTP server whose /metrics fetches the guest's /metrics through the
// VM's control server (busybox wget in the guest) and returns it in the text exposition format.
//
// A scrape must answer within Prometheus' scrape_timeout; a guest fetch through the control
// server on a loaded machine sometimes takes longer. So a scrape waits briefly for a fresh
// fetch and otherwise answers with the last body fetched successfully, if it is recent
// (maxAgeMs); an agent that stops answering makes the relay fail (502) once that is stale.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { VmClient } from '../vm/client.js';

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const GUEST_ADDRESS = '10.0.2.15';

export interface MetricsRelay {
  /** http://127.0.0.1:<port> (scrape path /metrics). */
  readonly url: string;
  /** host:port, Prometheus' `instance` of this target. */
  readonly address: string;
  readonly guestPort: number;
  /** Scrapes answered / guest fetches failed, for the test's printout. */
  readonly stats: { served: number; servedCached: number; failures: number; lastError?: string };
  close(): Promise<void>;
}

export interface RelayOptions {
  /** How long a scrape waits for a fresh guest fetch before using the last good body. */
  readonly freshWaitMs?: number;
  /** The last good body is used at most this long after it was fetched. */
  readonly maxAgeMs?: number;
}

export async function startMetricsRelay(vm: VmClient, guestPort: number, options: RelayOptions = {}): Promise<MetricsRelay> {
  const freshWaitMs = options.freshWaitMs ?? 1200;
  const maxAgeMs = options.maxAgeMs ?? 20_000;
  const stats: MetricsRelay['stats'] = { served: 0, servedCached: 0, failures: 0 };
  let last: { body: string; at: number } | undefined;
  let inFlight: Promise<string> | undefined;

  const fetchGuest = (): Promise<string> => {
    inFlight ??= vm
      .exec(['wget', '-qO-', `http://${GUEST_ADDRESS}:${guestPort}/metrics`], { timeoutMs: 30_000 })
      .then((result) => {
        if (result.exitCode !== 0) throw new Error(`wget of the guest's :${guestPort}/metrics: exit ${String(result.exitCode)} ${result.stderr.trim()}`);
        last = { body: result.stdout, at: Date.now() };
        return result.stdout;
      })
      .catch((error: unknown) => {
        stats.failures++;
        stats.lastError = String(error).slice(0, 300);
        throw error;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };

  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404).end('not found\n');
      return;
    }
    const fresh = fetchGuest();
    const timer = new Promise<'slow'>((resolve) => setTimeout(() => resolve('slow'), freshWaitMs).unref());
    const send = (body: string, cached: boolean) => {
      stats.served++;
      if (cached) stats.servedCached++;
      response.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE }).end(body);
    };
    const fail = (error: unknown) => {
      if (!response.headersSent) response.writeHead(502, { 'content-type': 'text/plain' }).end(`${String(error)}\n`);
    };
    Promise.race([fresh, timer]).then(
      (result) => {
        if (result !== 'slow') return send(result, false);
        if (last && Date.now() - last.at <= maxAgeMs) return send(last.body, true);
        fresh.then((body) => send(body, false), fail);
      },
      (error: unknown) => {
        if (last && Date.now() - last.at <= maxAgeMs) send(last.body, true);
        else fail(error);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    guestPort,
    stats,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
