// The controller's /readyz across a lost term of leadership, on the real apiserver: a replica
// that was cut off past its renew deadline stops leading and campaigns again, and while it
// waits for the lease it is a ready standby like one that never led. Found on the test node
// (test/node): a former leader kept the readiness check of its stopped term's informers and
// stayed unready for good, which holds up a Deployment rollout with maxUnavailable 0.
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runController } from '../../src/controller/controller.js';
import { silentLogger } from '../../src/kube/logger.js';
import { freePort } from '../infra/free-port.js';
import { injectedApiServer, injectedKubeConfig } from '../infra/controlplane/inject.js';
import { TcpProxy } from './kube-tcp-proxy.js';
import { ensure, eventually, kubeConfigVia } from './kube-support.js';

const ns = `controller-ready-${randomBytes(3).toString('hex')}`;
let admin: KubeConfig;

beforeAll(async () => {
  admin = injectedKubeConfig();
  await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
});

afterAll(async () => {
  await admin.makeApiClient(CoreV1Api).deleteNamespace({ name: ns });
});

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 5_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

const leaderGauge = async (port: number) => Number(/^ipsec_operator_leader (\d)$/m.exec((await get(port, '/metrics')).body)?.[1]);

describe('controller readiness across leadership', () => {
  it('a replica that lost its lease is a ready standby again, not stuck on its stopped term', async () => {
    const proxy = await TcpProxy.start(Number(new URL(injectedApiServer()).port));
    const port = await freePort();
    const stop = new AbortController();
    const run = runController({
      kubeConfig: kubeConfigVia(admin, proxy.url),
      namespace: ns,
      metricsAddress: `127.0.0.1:${port}`,
      leaderElect: true,
      identity: 'replica-cut-off',
      logger: silentLogger,
      signal: stop.signal,
      // Short but valid timings: lease 3 s > renew deadline 2 s > 1.2 * retry 0.5 s.
      leaseDurationMs: 3_000,
      renewDeadlineMs: 2_000,
      retryPeriodMs: 500,
    });
    try {
      await eventually('the replica leads', async () => ensure((await leaderGauge(port)) === 1, 'not leading'));
      // Cut off from the apiserver: the term ends by the renew deadline and the replica
      // campaigns again (through the same dead proxy, so it stays a standby).
      proxy.refuse();
      await eventually('the term ended', async () => ensure((await leaderGauge(port)) === 0, 'still leading'), 20_000);
      const ready = await eventually(
        'the standby ready',
        async () => {
          const answer = await get(port, '/readyz?verbose');
          ensure(answer.status === 200, `/readyz ${answer.status}: ${answer.body}`);
          return answer;
        },
        10_000,
      );
      expect(ready.body).not.toMatch(/caches-synced/);
      expect((await get(port, '/healthz')).status).toBe(200);
    } finally {
      stop.abort();
      await run.catch(() => undefined);
      await proxy.close();
    }
  }, 60_000);
});
