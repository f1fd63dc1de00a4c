import { Counter, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthServer, parseListenAddress } from '../../src/kube/health.js';

let server: HealthServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

async function start(options: ConstructorParameters<typeof HealthServer>[0] = {}) {
  server = new HealthServer({ address: '127.0.0.1:0', ...options });
  const bound = await server.start();
  const base = `http://127.0.0.1:${bound.port}`;
  const get = async (path: string, method = 'GET') => {
    const response = await fetch(base + path, { method });
    return { status: response.status, body: await response.text(), type: response.headers.get('content-type') };
  };
  return { server, get, port: bound.port };
}

describe('parseListenAddress', () => {
  it.each([
    [':8080', { host: undefined, port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:9090', { host: '::1', port: 9090 }],
    ['localhost:8081', { host: 'localhost', port: 8081 }],
  ])('%s', (address, expected) => {
    expect(parseListenAddress(address)).toEqual(expected);
  });

  it.each(['8080', ':', 'host:99999', '::1:80', 'a:b'])('rejects %j', (address) => {
    expect(() => parseListenAddress(address)).toThrow(/invalid listen address/);
  });
});

describe('HealthServer', () => {
  it('answers /healthz while the process runs', async () => {
    const { get } = await start();
    expect(await get('/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
  });

  it('is ready only when every readiness check passes, and says which failed', async () => {
    let synced = false;
    const { server: health, get } = await start();
    health.addReadinessCheck('informers-synced', () => synced);
    health.addReadinessCheck('leader', () => undefined);
    health.addReadinessCheck('throws', () => {
      if (!synced) throw new Error('kernel socket closed');
    });
    const failing = await get('/readyz');
    expect(failing.status).toBe(503);
    expect(failing.body).toContain('[-]informers-synced failed: not ready');
    expect(failing.body).toContain('[-]throws failed: kernel socket closed');
    expect(failing.body).not.toContain('[+]leader');
    synced = true;
    expect(await get('/readyz')).toMatchObject({ status: 200, body: 'ok\n' });
    const verbose = await get('/readyz?verbose');
    expect(verbose.body).toContain('[+]leader ok');
  });

  it('fails a check that does not answer in time instead of hanging the probe', async () => {
    const { server: health, get } = await start({ checkTimeoutMs: 20 });
    health.addReadinessCheck('stuck', () => new Promise<boolean>(() => undefined));
    const result = await get('/readyz');
    expect(result.status).toBe(503);
    expect(result.body).toContain('[-]stuck failed: no answer within 20 ms');
  });

  it('fails liveness when a liveness check fails', async () => {
    const { server: health, get } = await start();
    health.addLivenessCheck('event-loop', () => 'blocked for 30 s');
    expect(await get('/healthz')).toMatchObject({ status: 503 });
  });

  it('serves the given registry on /metrics, and only that one', async () => {
    const registry = new Registry();
    new Counter({ name: 'ipsec_operator_test_total', help: 'test', registers: [registry] }).inc(3);
    const { get } = await start({ registry });
    const metrics = await get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.type).toBe(registry.contentType);
    expect(metrics.body).toContain('ipsec_operator_test_total 3');
    expect(metrics.body).not.toContain('process_cpu');
  });

  it('answers 404 for /metrics without a registry and for unknown paths, 405 for other methods', async () => {
    const { get } = await start();
    expect((await get('/metrics')).status).toBe(404);
    expect((await get('/nope')).status).toBe(404);
    expect((await get('/healthz', 'POST')).status).toBe(405);
    expect(await get('/healthz', 'HEAD')).toMatchObject({ status: 200, body: '' });
  });

  it('refuses to start twice and reports a port in use', async () => {
    const { server: first, port } = await start();
    await expect(first.start()).rejects.toThrow(/already started/);
    const second = new HealthServer({ address: `127.0.0.1:${port}` });
    await expect(second.start()).rejects.toThrow(/EADDRINUSE/);
  });
});
