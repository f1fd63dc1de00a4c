import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { IPSEC_KINDS, KubeConfigError, ipsecCollectionPath, ipsecObjectPath, loadKubeConfig } from '../../src/kube/client.js';
import { listAllPages, setInactivityTimeout } from '../../src/kube/list-watch.js';

const dir = mkdtempSync(join(tmpdir(), 'ipsec-kube-client-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfigFile(name: string, server: string, context = name): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      `current-context: ${context}`,
      `clusters: [{name: ${name}, cluster: {server: "${server}"}}]`,
      `users: [{name: ${name}, user: {token: t-${name}}}]`,
      `contexts: [{name: ${name}, context: {cluster: ${name}, user: ${name}}}]`,
    ].join('\n'),
  );
  return path;
}

describe('loadKubeConfig', () => {
  const a = kubeconfigFile('a', 'https://127.0.0.1:6443');
  const b = kubeconfigFile('b', 'https://127.0.0.2:6443');
  const none = { inClusterTokenPath: join(dir, 'no-token'), homeConfigPath: join(dir, 'no-home') };

  it('prefers an explicit path', () => {
    const kc = loadKubeConfig({ path: a, env: { KUBECONFIG: b }, ...none });
    expect(kc.getCurrentCluster()?.server).toBe('https://127.0.0.1:6443');
  });

  it('reads $KUBECONFIG, merging a list of files with the first current-context winning', () => {
    const kc = loadKubeConfig({ env: { KUBECONFIG: `${b}:${a}` }, ...none });
    expect(kc.getCurrentCluster()?.server).toBe('https://127.0.0.2:6443');
    expect(kc.getClusters().map((cluster) => cluster.name).sort()).toEqual(['a', 'b']);
  });

  it('falls back to the home kubeconfig, and explains when there is nothing', () => {
    expect(loadKubeConfig({ env: {}, inClusterTokenPath: none.inClusterTokenPath, homeConfigPath: a }).getCurrentCluster()?.name).toBe('a');
    expect(() => loadKubeConfig({ env: {}, ...none })).toThrow(KubeConfigError);
    expect(() => loadKubeConfig({ path: join(dir, 'missing.yaml'), env: {} })).toThrow(KubeConfigError);
  });

  it('uses the in-cluster ServiceAccount when running in a Pod', () => {
    const token = join(dir, 'token');
    writeFileSync(token, 'x');
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    // loadFromCluster reads process.env itself.
    process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    try {
      const kc = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' }, inClusterTokenPath: token, homeConfigPath: a });
      expect(kc.getCurrentCluster()?.server).toBe('https://10.96.0.1:443');
    } finally {
      for (const [key, value] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });
});

describe('ipsec.xfrm.io paths', () => {
  it('are cluster-scoped collection and object paths', () => {
    expect(ipsecCollectionPath('securityassociations')).toBe('/apis/ipsec.xfrm.io/v1alpha1/securityassociations');
    expect(ipsecObjectPath('ipsecnodestates', 'node-1')).toBe('/apis/ipsec.xfrm.io/v1alpha1/ipsecnodestates/node-1');
    expect(IPSEC_KINDS.ipsecpolicies).toBe('IpsecPolicy');
  });
});

describe('list+watch binding', () => {
  it('can raise the inactivity timeout of the installed client-node Watch (a private field)', () => {
    const watch = new Watch(new KubeConfig());
    setInactivityTimeout(watch, 123_456);
    expect((watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs).toBe(123_456);
  });

  it('reads every page and keeps the first page resourceVersion', async () => {
    const requests: Array<string | undefined> = [];
    const pages = [
      { items: [1, 2], metadata: { resourceVersion: '10', _continue: 'p2' } },
      { items: [3], metadata: { resourceVersion: '10', continue: 'p3' } },
      { items: [4], metadata: { resourceVersion: '10' } },
    ];
    const result = await listAllPages<number>({
      pageSize: 2,
      labelSelector: 'a=b',
      listPage: async (request) => {
        requests.push(request.continueToken);
        expect(request).toMatchObject({ limit: 2, labelSelector: 'a=b' });
        const page = pages.shift();
        if (page === undefined) throw new Error('asked for too many pages');
        return page;
      },
    });
    expect(result).toEqual({ items: [1, 2, 3, 4], resourceVersion: '10' });
    expect(requests).toEqual([undefined, 'p2', 'p3']);
  });

  it('refuses a list without a resourceVersion (a watch from "" would miss changes)', async () => {
    await expect(listAllPages({ listPage: async () => ({ items: [] }) })).rejects.toThrow(/resourceVersion/);
  });
});
