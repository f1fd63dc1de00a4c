// The malformed corpus against the real API server (server-side dry run: nothing is stored):
// every case the corpus says the cluster refuses is refused by kubectl or the apiserver; every
// case it says the cluster accepts is accepted by the apiserver and then judged by the
// controller's own decision (src/controller/analysis.ts, on the objects exactly as the server
// returned them) with the corpus's reason, with no key bytes in the message that would go to
// status and Events. test/e2e/invalid.test.ts runs the accepted cases through the running
// controller and agents in the VM.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { check, kubectl } from '../infra/controlplane/tools.js';
import { judge, viewFacts, type ClusterView } from '../../src/controller/analysis.js';
import type { IpsecResource } from '../../src/crd/types.js';
import { CORPUS, SECRET, keyFingerprints, type MalformedCase } from '../unit/fixtures/malformed/corpus.js';

const REPO_ROOT = new URL('../../', import.meta.url).pathname;
const kubeconfig = injectedKubeconfigPath();
const namespace = `invalid-input-${randomBytes(3).toString('hex')}`;
const secret = SECRET.replace('namespace: ipsec-operator', `namespace: ${namespace}`);
const refused = CORPUS.filter((entry) => entry.cluster === 'server' || entry.cluster === 'client');
const accepted = CORPUS.filter((entry): entry is MalformedCase & { cluster: { reason: string } } => typeof entry.cluster === 'object');

interface Item {
  kind: string;
  metadata: { name: string; creationTimestamp?: string };
  data?: Record<string, string>;
}

beforeAll(async () => {
  const run = (args: string[]) => check(kubectl(args, { kubeconfig }), `kubectl ${args.join(' ')}`);
  // Only the two CRDs under test: a broken neighbour in deploy/crds must not hide these results.
  for (const crd of ['securityassociations', 'ipsecpolicies']) await run(['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, `deploy/crds/${crd}.ipsec.xfrm.io.yaml`)]);
  await run(['wait', '--for=condition=Established', 'crd/securityassociations.ipsec.xfrm.io', 'crd/ipsecpolicies.ipsec.xfrm.io']);
  await run(['create', 'namespace', namespace]);
}, 120_000);
afterAll(async () => {
  await kubectl(['delete', 'namespace', namespace, '--wait=false'], { kubeconfig });
});

describe('the API server and the malformed corpus', () => {
  it('classifies every case of the corpus', () => {
    expect(refused.length + accepted.length).toBeGreaterThanOrEqual(100);
    for (const entry of [...refused, ...accepted]) expect(entry.sent, entry.name).toBeDefined();
  });

  it.each(refused.map((entry) => [entry.name, entry] as [string, MalformedCase]))('refuses %s', async (_name, entry) => {
    const result = await kubectl(['apply', '--dry-run=server', '-n', namespace, '-f', '-'], { kubeconfig, input: entry.sent! });
    expect(result.code, `${result.stdout}${result.stderr}`.slice(0, 2000)).not.toBe(0);
  }, 60_000);

  // Where the CLI is stricter than the cluster: kubectl turns these into valid objects.
  const cliOnly = CORPUS.filter((entry) => entry.cluster === 'cli' && entry.sent !== undefined && entry.name !== 'unsupported kind');
  it.each(cliOnly.map((entry) => [entry.name, entry] as [string, MalformedCase]))('takes %s, which only the CLI refuses', async (_name, entry) => {
    const result = await kubectl(['apply', '--dry-run=server', '-n', namespace, '-f', '-'], { kubeconfig, input: entry.sent! });
    expect(result.code, result.stderr).toBe(0);
  }, 60_000);

  it.each(accepted.map((entry) => [entry.name, entry] as [string, MalformedCase & { cluster: { reason: string } }]))(
    'accepts %s, which the controller reports with its reason',
    async (_name, entry) => {
      const result = await kubectl(['apply', '--dry-run=server', '-o', 'json', '-f', '-'], { kubeconfig, input: `${secret}---\n${entry.sent!}` });
      expect(result.code, result.stderr).toBe(0);
      const output = JSON.parse(result.stdout) as { kind: string; items?: Item[] } & Item;
      const items = output.kind === 'List' ? output.items ?? [] : [output];
      const stored = items.find((item) => item.kind === 'Secret')!;
      const resources = items.filter((item) => item.kind !== 'Secret') as unknown as (IpsecResource & { metadata: { creationTimestamp?: string } })[];
      const view: ClusterView = {
        resources,
        nodes: new Map([['a', { 'ipsec.xfrm.io/node': 'a' }]]),
        secrets: new Map([['keys', new Map(Object.entries(stored.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')]))]]),
        reports: new Map(),
      };
      const facts = viewFacts(view);
      // The case's resource is the last one of what was sent (the younger, for collisions).
      const subject = resources.at(-1)!;
      const verdict = judge(subject, facts);
      expect(verdict.ready).toBe(false);
      expect(verdict.reason, verdict.message).toBe(entry.cluster.reason);
      for (const fingerprint of keyFingerprints()) expect(verdict.message.includes(fingerprint), fingerprint).toBe(false);
    },
    60_000,
  );
});
