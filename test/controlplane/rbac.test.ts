// Least privilege, proven with real ServiceAccount tokens against the real API server: the
// chart's RBAC lets the agent and the controller do their jobs and nothing around them.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { injectedKubeConfig, injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { kubeConfigForServiceAccount } from '../infra/controlplane/kubeconfig.js';
import { check, helm, kubectl } from '../infra/controlplane/tools.js';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';

const suffix = randomBytes(3).toString('hex');
const namespace = `rbac-${suffix}`;
const release = `rbac-${suffix}`;
const group = 'ipsec.xfrm.io';
const version = 'v1alpha1';

/**
 * The HTTP status of a call. 429 is retried: the API server answers it while a CRD's storage
 * re-initialises, which other test files sharing this API server cause by changing CRDs.
 */
async function status(call: () => Promise<unknown>): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      await call();
      return 200;
    } catch (error) {
      const code = (error as { code?: number }).code ?? -1;
      if (code !== 429 || attempt >= 20) return code;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

describe('RBAC of the chart, exercised with ServiceAccount tokens', () => {
  const admin = injectedKubeConfig();
  const kubeconfig = injectedKubeconfigPath();
  let agent: KubeConfig;
  let controller: KubeConfig;
  const saName = `rbac-sa-${suffix}`;

  beforeAll(async () => {
    const run = (args: string[], input?: string) => check(kubectl(args, { kubeconfig, ...(input === undefined ? {} : { input }) }), `kubectl ${args.join(' ')}`);
    await run(['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'deploy/crds')]);
    await run(['wait', '--for=condition=Established', 'crd/securityassociations.ipsec.xfrm.io', 'crd/ipsecpolicies.ipsec.xfrm.io', 'crd/ipsecnodestates.ipsec.xfrm.io', 'crd/ipsecmeshes.ipsec.xfrm.io']);
    await run(['create', 'namespace', namespace]);
    const helmHome = mkdtempSync(join(tmpdir(), 'rbac-helm-'));
    const rendered = await check(
      helm(['template', release, join(REPO_ROOT, 'charts/ipsec-operator'), '--namespace', namespace, '--show-only', 'templates/serviceaccounts.yaml', '--show-only', 'templates/controller-rbac.yaml', '--show-only', 'templates/agent-rbac.yaml'], {
        kubeconfig,
        env: { HELM_CACHE_HOME: helmHome, HELM_CONFIG_HOME: helmHome, HELM_DATA_HOME: helmHome },
      }),
      'helm template',
    );
    await run(['apply', '-f', '-'], rendered);
    const accounts = (await run(['get', 'serviceaccounts', '-n', namespace, '-o', 'name'])).split('\n').map((line) => line.replace('serviceaccount/', '').trim());
    const find = (part: string) => accounts.find((name) => name.includes(part))!;
    agent = await kubeConfigForServiceAccount(admin, { namespace, name: find('agent') });
    controller = await kubeConfigForServiceAccount(admin, { namespace, name: find('controller') });
    await admin.makeApiClient(CoreV1Api).createNamespacedSecret({ namespace, body: { metadata: { name: 'keys' }, stringData: { k: 'v' } } });
    await admin.makeApiClient(CustomObjectsApi).createClusterCustomObject({
      group,
      version,
      plural: 'securityassociations',
      body: {
        apiVersion: `${group}/${version}`,
        kind: 'SecurityAssociation',
        metadata: { name: saName },
        spec: { source: '10.0.0.1', destination: '10.0.0.2', protocol: 'esp', spi: 7, aead: { algorithm: 'rfc4106(gcm(aes))', icvLength: 128, keyRef: { name: 'keys', key: 'k' } } },
      },
    });
  });
  afterAll(async () => {
    await admin.makeApiClient(CustomObjectsApi).deleteClusterCustomObject({ group, version, plural: 'securityassociations', name: saName }).catch(() => undefined);
    await admin.makeApiClient(CustomObjectsApi).deleteClusterCustomObject({ group, version, plural: 'ipsecnodestates', name: `rbac-node-${suffix}` }).catch(() => undefined);
    await kubectl(['delete', 'namespace', namespace, '--wait=false'], { kubeconfig });
    await kubectl(['delete', 'clusterrole,clusterrolebinding', '-l', `app.kubernetes.io/instance=${release}`], { kubeconfig });
  });

  it('lets the agent read what it reconciles and write its own IpsecNodeState', async () => {
    const custom = agent.makeApiClient(CustomObjectsApi);
    expect(await status(() => custom.listClusterCustomObject({ group, version, plural: 'securityassociations' }))).toBe(200);
    expect(await status(() => custom.listClusterCustomObject({ group, version, plural: 'ipsecpolicies' }))).toBe(200);
    expect(await status(() => agent.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace, name: 'keys' }))).toBe(200);
    expect(await status(() => agent.makeApiClient(CoreV1Api).listNode())).toBe(200);
    // IpsecMesh: the meshes, and every node's IpsecNodeState (the peers' public keys and acknowledgements).
    expect(await status(() => custom.listClusterCustomObject({ group, version, plural: 'ipsecmeshes' }))).toBe(200);
    expect(await status(() => custom.listClusterCustomObject({ group, version, plural: 'ipsecnodestates' }))).toBe(200);
    const body = { apiVersion: `${group}/${version}`, kind: 'IpsecNodeState', metadata: { name: `rbac-node-${suffix}` }, spec: { nodeName: 'n' } };
    expect(await status(() => custom.createClusterCustomObject({ group, version, plural: 'ipsecnodestates', body }))).toBe(200);
  });

  it('forbids the agent to change resource specs, read Secrets elsewhere or touch Nodes', async () => {
    const custom = agent.makeApiClient(CustomObjectsApi);
    const patch = () => custom.patchClusterCustomObject({ group, version, plural: 'securityassociations', name: saName, body: { spec: { spi: 8 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    expect(await status(patch)).toBe(403);
    expect(await status(() => custom.deleteClusterCustomObject({ group, version, plural: 'securityassociations', name: saName }))).toBe(403);
    expect(await status(() => agent.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: 'default' }))).toBe(403);
    expect(await status(() => agent.makeApiClient(CoreV1Api).listSecretForAllNamespaces())).toBe(403);
    expect(await status(() => agent.makeApiClient(CoreV1Api).deleteNode({ name: 'any' }))).toBe(403);
  });

  it('lets the controller write status and finalizers, and read Secrets only in its namespace', async () => {
    const custom = controller.makeApiClient(CustomObjectsApi);
    const statusPatch = () => custom.patchClusterCustomObjectStatus(
      { group, version, plural: 'securityassociations', name: saName, body: { status: { observedGeneration: 1 } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(await status(statusPatch)).toBe(200);
    const finalizer = () => custom.patchClusterCustomObject(
      { group, version, plural: 'securityassociations', name: saName, body: { metadata: { finalizers: ['ipsec.xfrm.io/kernel-cleanup'] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(await status(finalizer)).toBe(200);
    expect(await status(() => controller.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace, name: 'keys' }))).toBe(200);
    expect(await status(() => controller.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: 'kube-system' }))).toBe(403);
    expect(await status(() => controller.makeApiClient(CoreV1Api).listSecretForAllNamespaces())).toBe(403);
    expect(await status(() => custom.createClusterCustomObject({ group, version, plural: 'ipsecnodestates', body: { apiVersion: `${group}/${version}`, kind: 'IpsecNodeState', metadata: { name: 'x' }, spec: { nodeName: 'x' } } }))).toBe(403);
    // Release the finalizer so the object can go.
    await admin.makeApiClient(CustomObjectsApi).patchClusterCustomObject(
      { group, version, plural: 'securityassociations', name: saName, body: { metadata: { finalizers: null } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  });
});
