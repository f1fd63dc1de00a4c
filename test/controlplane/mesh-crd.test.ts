// The IpsecMesh CRD (src/crd/mesh-schema.ts, rendered into deploy/crds/) on the real API
// server: defaults, every CEL rule and schema bound refusing what it must (server-side dry
// run: nothing is stored), descriptions that `kubectl explain` shows, printer columns.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { check, kubectl } from '../infra/controlplane/tools.js';

const REPO_ROOT = new URL('../../', import.meta.url).pathname;
const kubeconfig = injectedKubeconfigPath();
const CRD = 'ipsecmeshes.ipsec.xfrm.io';

const manifest = (name: string, spec: string): string => `apiVersion: ipsec.xfrm.io/v1alpha1
kind: IpsecMesh
metadata: {name: ${name}}
spec: ${spec}
`;

async function dryRun(name: string, spec: string): Promise<{ code: number; out: string; object?: { spec: Record<string, unknown> } }> {
  const result = await kubectl(['create', '--dry-run=server', '-o', 'json', '-f', '-'], { kubeconfig, input: manifest(name, spec) });
  const out = `${result.stdout}${result.stderr}`;
  return result.code === 0 ? { code: 0, out, object: JSON.parse(result.stdout) as { spec: Record<string, unknown> } } : { code: result.code, out };
}

beforeAll(async () => {
  const run = (args: string[]) => check(kubectl(args, { kubeconfig }), `kubectl ${args.join(' ')}`);
  await run(['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, `deploy/crds/${CRD}.yaml`)]);
  await run(['wait', '--for=condition=Established', '--timeout=60s', `crd/${CRD}`]);
}, 120_000);

describe('IpsecMesh on the API server', () => {
  it('accepts examples/mesh as it is', async () => {
    const result = await kubectl(['create', '--dry-run=server', '-o', 'json', '-f', join(REPO_ROOT, 'examples/mesh/mesh.yaml')], { kubeconfig });
    expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
    const object = JSON.parse(result.stdout) as { spec: { failClosed: boolean; exemptions: unknown[]; rotation: { interval: string } } };
    expect(object.spec).toMatchObject({ failClosed: true, rotation: { interval: '24h' } });
    expect(object.spec.exemptions).toHaveLength(2);
  });

  it('accepts an empty spec and fills in every default', async () => {
    const result = await dryRun('defaults', '{}');
    expect(result.code, result.out).toBe(0);
    expect(result.object!.spec).toEqual({
      addressFamilies: ['IPv4'],
      addressType: 'InternalIP',
      mode: 'transport',
      aead: 'rfc4106-gcm-aes256',
      esn: true,
      replayWindow: 128,
      failClosed: false,
      rotation: { interval: '24h', gracePeriod: '30s', backstop: '1h', maxConcurrent: 1 },
    });
  });

  it('accepts a full spec', async () => {
    const result = await dryRun(
      'full',
      `{nodeSelector: {matchLabels: {mesh: "on"}}, addressFamilies: [IPv4, IPv6], mode: tunnel, aead: rfc7539esp-chacha20-poly1305,
        esn: false, replayWindow: 32, natTraversal: {}, failClosed: true,
        exemptions: [{protocol: tcp, port: 179}, {protocol: ipv6-icmp}],
        rotation: {interval: 12h, softPacketLimit: 1000000, softByteLimit: 1073741824, gracePeriod: 10s, backstop: 30m, maxConcurrent: 2}}`,
    );
    expect(result.code, result.out).toBe(0);
    expect(result.object!.spec['natTraversal']).toEqual({ sourcePort: 4500, destinationPort: 4500 });
  });

  const refusals: [string, string, RegExp][] = [
    ['esn without a replay window', '{replayWindow: 0}', /esn needs a replayWindow above 0/],
    ['a replay window above 4096', '{replayWindow: 4097}', /replayWindow.*4096/],
    ['an unknown AEAD', '{aead: cbc-aes}', /aead.*Unsupported value/],
    ['an unknown mode', '{mode: beet}', /mode.*Unsupported value/],
    ['a port on icmp', '{exemptions: [{protocol: icmp, port: 7}]}', /port applies to tcp, udp and sctp only/],
    ['ipv6-icmp without IPv6', '{exemptions: [{protocol: ipv6-icmp}]}', /an ipv6-icmp exemption needs the IPv6 family/],
    ['a family twice', '{addressFamilies: [IPv4, IPv4]}', /addressFamilies.*Duplicate value/],
    ['no family', '{addressFamilies: []}', /addressFamilies.*at least 1/],
    ['a rotation interval under 10m', '{rotation: {interval: 5m, backstop: 1m}}', /interval must be at least 10m/],
    ['a backstop not longer than the grace period', '{rotation: {gracePeriod: 10m, backstop: 5m}}', /backstop must be longer than gracePeriod/],
    ['a backstop not shorter than the interval', '{rotation: {interval: 1h, backstop: 2h}}', /backstop must be shorter than interval/],
    ['a duration in days', '{rotation: {interval: 1d}}', /interval.*should match/],
    ['a soft packet limit under 1000', '{rotation: {softPacketLimit: 10}}', /softPacketLimit.*1000/],
    ['a NAT-T port 0', '{natTraversal: {destinationPort: 0}}', /destinationPort.*1/],
  ];
  it.each(refusals)('refuses %s', async (_what, spec, message) => {
    const result = await dryRun('refused', spec);
    expect(result.code, result.out).not.toBe(0);
    expect(result.out).toMatch(message);
  });

  it('explains its fields (kubectl explain)', async () => {
    let out = '';
    // The OpenAPI document is published a moment after the CRD is established.
    for (let attempt = 0; attempt < 30; attempt++) {
      const result = await kubectl(['explain', 'ipsecmesh.spec.rotation.gracePeriod'], { kubeconfig });
      out = `${result.stdout}${result.stderr}`;
      if (result.code === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    // kubectl explain wraps descriptions: compare with whitespace collapsed.
    expect(out.replace(/\s+/g, ' ')).toMatch(/must have carried no packet before it is removed/);
    const spec = (await check(kubectl(['explain', 'ipsecmesh.spec'], { kubeconfig }), 'kubectl explain ipsecmesh.spec')).replace(/\s+/g, ' ');
    expect(spec).toMatch(/No keys are configured or stored in the cluster/);
    for (const field of ['nodeSelector', 'addressFamilies', 'mode', 'aead', 'esn', 'replayWindow', 'natTraversal', 'failClosed', 'exemptions', 'rotation']) {
      expect(spec).toContain(field);
    }
  });

  it('prints its columns', async () => {
    const name = `columns-${process.pid}`;
    await check(kubectl(['create', '-f', '-'], { kubeconfig, input: manifest(name, '{}') }), 'kubectl create');
    try {
      // By full name: the chart test installs copies of the CRDs under test groups with the same
      // short names on the same API server, so `xmesh` may resolve to one of those.
      const table = await check(kubectl(['get', 'ipsecmeshes.ipsec.xfrm.io', name], { kubeconfig }), 'kubectl get ipsecmeshes');
      expect(table.split('\n')[0]).toMatch(/^NAME\s+MODE\s+MEMBERS\s+READY-MEMBERS\s+READY\s+ROTATING\s+AGE/);
      expect(table).toMatch(new RegExp(`^${name}\\s+transport\\s+`, 'm'));
    } finally {
      await kubectl(['delete', 'ipsecmesh', name], { kubeconfig });
    }
  });
});
