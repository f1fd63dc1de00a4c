// Lets test files (which run in vitest workers) halt and resume the control plane that
// global-setup.ts started in the main process: a loopback HTTP endpoint behind an unguessable
// path. The fail-static e2e test halts the apiserver its agents use, then resumes it on the
// same port and data dir. Only tests that run alone may do this (layers run one at a time,
// and the e2e project runs its files one at a time).
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ControlPlane } from './controlplane.js';

export interface ControlServer {
  /** http://127.0.0.1:<port>/<secret> */
  url: string;
  close(): Promise<void>;
}

/** Serves POST <url>/halt, <url>/resume, <url>/restart and GET <url>/status for `cp`. */
export async function serveControl(cp: ControlPlane): Promise<ControlServer> {
  const secret = randomBytes(16).toString('hex');
  const actions: Record<string, () => Promise<void>> = {
    halt: () => cp.halt(),
    resume: () => cp.resume(),
    restart: () => cp.restart(),
  };
  const server: Server = createServer((req, res) => {
    const [, prefix, action] = (req.url ?? '').split('/');
    const reply = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (prefix !== secret) return reply(404, { error: 'not found' });
    const status = () => ({ server: cp.server, etcdUrl: cp.etcdUrl, running: cp.running });
    if (req.method === 'GET' && action === 'status') return reply(200, status());
    const run = action ? actions[action] : undefined;
    if (req.method !== 'POST' || !run) return reply(404, { error: `no such action: ${req.method} ${action}` });
    run().then(
      () => reply(200, status()),
      (err: unknown) => reply(500, { error: err instanceof Error ? err.message : String(err) }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/${secret}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The client side, for test files: see injectedControlPlane() in inject.ts. */
export class ControlPlaneControl {
  constructor(private readonly url: string) {}

  /** Stops the apiserver and etcd (SIGTERM); data dir and port are kept. */
  halt(): Promise<ControlStatus> {
    return this.call('POST', 'halt');
  }

  /** Starts them again on the same data dir and port; resolves once /readyz answers. */
  resume(): Promise<ControlStatus> {
    return this.call('POST', 'resume');
  }

  restart(): Promise<ControlStatus> {
    return this.call('POST', 'restart');
  }

  status(): Promise<ControlStatus> {
    return this.call('GET', 'status');
  }

  private async call(method: string, action: string): Promise<ControlStatus> {
    const res = await fetch(`${this.url}/${action}`, { method });
    const body = (await res.json()) as ControlStatus & { error?: string };
    if (!res.ok) throw new Error(`control plane ${action} failed: ${body.error ?? res.status}`);
    return body;
  }
}

export interface ControlStatus {
  server: string;
  etcdUrl: string;
  running: boolean;
}
