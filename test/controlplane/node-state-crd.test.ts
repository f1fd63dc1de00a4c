// The bounded IpsecNodeState (src/crd/node-state.ts, the schema rendered into deploy/crds/) on
// the real API server: a status as an agent computes it for 10,000 applied resources, and the
// largest one it can write (256 listed failures with the longest names and cut messages),
// are accepted and read back whole; the CEL rules refuse Applied reports and over-long lists
// beside `applied`; a status of the first format (an agent not yet upgraded) is still taken.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { injectedKubeConfig, injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { check, kubectl } from '../infra/controlplane/tools.js';
import { IpsecResources } from '../../src/kube/client.js';
import { nodeStateStatus, type NodeStateInputs, type ResourceOutcome } from '../../src/agent/node-state-report.js';
import { MAX_LISTED_REPORTS, resourceStanding, type IpsecNodeState } from '../../src/crd/node-state.js';

const REPO_ROOT = new URL('../../', import.meta.url).pathname;
const kubeconfig = injectedKubeconfigPath();
const CRD = 'ipsecnodestates.ipsec.xfrm.io';
const suffix = randomBytes(3).toString('hex');
const FIELD_MANAGER = 'ipsec-operator-agent';

let resources: IpsecResources;
const names: string[] = [];

const inputs = (reports: readonly ResourceOutcome[]): NodeStateInputs => ({
  converged: true,
  reports,
  kernelStates: 0,
  kernelPolicies: reports.length,
  owned: [],
  lastSync: new Date(),
  conditions: [],
  now: new Date(),
  agentVersion: 'test',
  kernelRelease: '6.1.0-test',
  algorithms: { aead: ['rfc4106(gcm(aes))'] },
  driftRepairs: 0,
  encapsulationSockets: [],
});

async function node(label: string): Promise<string> {
  const name = `${label}-${suffix}`;
  names.push(name);
  await resources.apply('ipsecnodestates', { metadata: { name }, spec: { nodeName: name } }, FIELD_MANAGER);
  return name;
}

const write = (name: string, status: Record<string, unknown>) => resources.statusWriter(FIELD_MANAGER).write('ipsecnodestates', name, undefined, status);

beforeAll(async () => {
  const run = (args: string[]) => check(kubectl(args, { kubeconfig }), `kubectl ${args.join(' ')}`);
  await run(['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, `deploy/crds/${CRD}.yaml`)]);
  await run(['wait', '--for=condition=Established', '--timeout=60s', `crd/${CRD}`]);
  resources = new IpsecResources(injectedKubeConfig());
}, 120_000);

afterAll(async () => {
  for (const name of names) await resources.delete('ipsecnodestates', name).catch(() => undefined);
});

describe('the bounded IpsecNodeState on the API server', () => {
  it('a node with 10,000 applied resources: one small object, read back as written', async () => {
    const name = await node('ten-thousand');
    const reports = Array.from({ length: 10_000 }, (_, i): ResourceOutcome => ({ kind: 'IpsecPolicy', name: `policy-${i}`, uid: `uid-${i}`, generation: 2, state: 'Applied', reason: 'Applied', entries: 1 }));
    const status = nodeStateStatus(inputs(reports));
    await write(name, { ...status });
    const stored = (await resources.get<IpsecNodeState>('ipsecnodestates', name))!;
    const bytes = Buffer.byteLength(JSON.stringify(stored));
    console.log(`IpsecNodeState of 10,000 applied resources, as stored: ${bytes} bytes`);
    expect(stored.status?.applied).toEqual(status.applied);
    expect(resourceStanding(stored.status)).toEqual({ format: 'digest', applied: status.applied, reports: [], unlisted: 0 });
    expect(bytes).toBeLessThan(4096);
  });

  it('the largest status an agent writes (256 listed failures, 253-character names, cut messages) is accepted', async () => {
    const name = await node('worst');
    const reports = Array.from({ length: 10_000 }, (_, i): ResourceOutcome => ({ kind: 'IpsecPolicy', name: `p${i}-`.padEnd(253, 'x'), generation: 2, state: 'Failed', reason: 'KernelRejected', message: 'E'.repeat(4096), entries: 1 }));
    const status = nodeStateStatus(inputs(reports));
    await write(name, { ...status });
    const stored = (await resources.get<IpsecNodeState>('ipsecnodestates', name))!;
    const bytes = Buffer.byteLength(JSON.stringify(stored));
    console.log(`IpsecNodeState of 10,000 failed resources, as stored: ${bytes} bytes`);
    expect(stored.status?.resources).toHaveLength(MAX_LISTED_REPORTS);
    expect(stored.status?.unlistedReports).toBe(10_000 - MAX_LISTED_REPORTS);
    expect(bytes).toBeLessThan(400_000);
  });

  it('refuses Applied reports and more than 256 reports beside applied, and unlistedReports without it; nothing stored', async () => {
    const name = await node('refused');
    const good = nodeStateStatus(inputs([{ kind: 'IpsecPolicy', name: 'p', uid: 'u', generation: 1, state: 'Applied', entries: 1 }]));
    await write(name, { ...good });
    const failed = { kind: 'IpsecPolicy', name: 'f', generation: 1, state: 'Failed', reason: 'KernelRejected', message: 'no' };
    await expect(write(name, { ...good, resources: [{ ...failed, state: 'Applied' }] })).rejects.toThrow(/applied resources are counted in applied, not listed/);
    const many = Array.from({ length: MAX_LISTED_REPORTS + 1 }, (_, i) => ({ ...failed, name: `f${i}` }));
    await expect(write(name, { ...good, resources: many })).rejects.toThrow(/at most 256 resources are listed beside applied/);
    const { applied: _applied, ...withoutApplied } = good;
    await expect(write(name, { ...withoutApplied, unlistedReports: 3 })).rejects.toThrow(/unlistedReports goes with applied/);
    expect((await resources.get<IpsecNodeState>('ipsecnodestates', name))!.status?.applied).toEqual(good.applied);
  });

  it('still takes a status of the first format (an agent not yet upgraded), read as such', async () => {
    const name = await node('legacy');
    const legacy = { agentVersion: 'old', resources: [{ kind: 'IpsecPolicy', name: 'p', generation: 1, state: 'Applied', reason: 'Applied', entries: 1 }] };
    await write(name, legacy);
    const stored = (await resources.get<IpsecNodeState>('ipsecnodestates', name))!;
    expect(resourceStanding(stored.status)).toEqual({ format: 'legacy', reports: legacy.resources });
  });
});
