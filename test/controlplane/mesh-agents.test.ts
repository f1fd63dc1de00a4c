// IpsecMesh on the real API server, end to end but for the kernel: three agents' node workers
// (src/agent/node-worker.ts with the mesh worker, the real mesh caches and node-state reporter
// against the apiserver, each over an in-memory kernel that follows the kernel's rules,
// test/support/fake-kernel.ts, and a real ledger on disk) and the controller's mesh reconciler
// (src/controller/mesh-controller.ts, real informers, status writes and annotation removal).
// Shown: the IpsecNodeState schema takes what the agents write and refuses malformed reports;
// the mesh becomes Ready; `ipsec.xfrm.io/rotate=now` makes one request per node, each is
// acknowledged (Rotating) and completes (Done), the round completes and the mesh is Ready again
// on the new generations. Only the mesh part of the controller runs: the whole controller would
// also act on the other test files' resources in this shared apiserver.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type V1Node } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { injectedKubeConfig, injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { check, kubectl } from '../infra/controlplane/tools.js';
import { eventually, ensure } from './kube-support.js';
import { IpsecResources, coreListerWatcher } from '../../src/kube/client.js';
import { Informer } from '../../src/kube/informer.js';
import { EventRecorder, kubeEventSink } from '../../src/kube/events.js';
import { createLogger } from '../../src/kube/logger.js';
import { MeshMetrics, meshReconciler } from '../../src/controller/mesh-controller.js';
import type { IpsecMeshObject, NodeMeshReport } from '../../src/crd/mesh-contract.js';
import type { IpsecMeshStatus } from '../../src/crd/mesh-object.js';
import type { IpsecNodeState } from '../../src/crd/node-state.js';
import { MESH_ROTATE_ANNOTATION } from '../../src/crd/mesh-schema.js';
import { API_GROUP, API_VERSION } from '../../src/crd/types.js';
import { Ledger } from '../../src/ownership/ledger.js';
import { AgentMetrics } from '../../src/agent/agent-metrics.js';
import { AgentEncapSockets } from '../../src/agent/encap-sockets.js';
import { DriftWatch } from '../../src/agent/drift-watch.js';
import { MeshCaches } from '../../src/agent/mesh-caches.js';
import { MeshWorker } from '../../src/agent/mesh-worker.js';
import { NodeStateReporter } from '../../src/agent/node-state-reporter.js';
import { NodeWorker } from '../../src/agent/node-worker.js';
import { FakeKernel } from '../support/fake-kernel.js';
import { keyBytes } from '../support/mesh-agents.js';
import type { SecurityAssociation } from '../../src/xfrm/types.js';

const REPO_ROOT = new URL('../../', import.meta.url).pathname;
const kubeconfig = injectedKubeconfigPath();
const kc = injectedKubeConfig();
const suffix = randomBytes(3).toString('hex');
const LABEL = 'mesh-agents-test';
const MESH = `mesh-agents-${suffix}`;
const NODES = ['a', 'b', 'c'].map((n, i) => ({ name: `mesh-${suffix}-${n}`, address: `198.51.100.${11 + i}` }));
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const resources = new IpsecResources(kc);

interface Agent {
  name: string;
  kernel: FakeKernel;
  ledger: Ledger;
  caches: MeshCaches;
  worker: NodeWorker;
  dir: string;
}
const agents: Agent[] = [];
let stopped = false;
const loops: Promise<void>[] = [];
const failures: string[] = [];
const controllerInformers: Informer<never>[] = [];
// Everything the agents and the controller log (debug included) and their metrics registries,
// and every SA key the kernels ever held: for the check that no key byte left the kernels.
const logs: string[] = [];
const logger = createLogger({ level: 'debug', write: (line) => void logs.push(line) });
const registries: Registry[] = [];
const keysSeen = new Set<string>();
const recordKeys = () => {
  for (const agent of agents) for (const sa of agent.kernel.states) keysSeen.add(keyBytes(sa).toString('hex'));
};

async function startAgent(node: { name: string }): Promise<Agent> {
  const dir = mkdtempSync(join(tmpdir(), `mesh-agent-${node.name}-`));
  const kernel = new FakeKernel();
  const ledger = await Ledger.open(join(dir, 'ledger.json'));
  const agentLogger = logger.child({ component: 'agent', node: node.name });
  const caches = new MeshCaches({ kubeConfig: kc, resources, logger: agentLogger });
  const registry = new Registry();
  registries.push(registry);
  const mesh = new MeshWorker({ nodeName: node.name, stateDirectory: dir, bootId: `${node.name}-boot`, caches, logger: agentLogger });
  const worker = new NodeWorker({
    nodeName: node.name,
    netns: undefined,
    resyncSeconds: 60,
    logger: agentLogger,
    // The hand-written resources are not this test's: none (another file's SA must not reach these kernels).
    caches: { snapshot: () => ({ resources: [], secrets: new Map(), node: { metadata: { name: node.name, labels: { [LABEL]: suffix } } } }) },
    kernel: { handles: () => ({ tables: kernel as never, ledger }) },
    drift: new DriftWatch({ ownPortId: () => 0, owns: () => false, trigger: () => undefined }),
    metrics: new AgentMetrics(registry, { perSaMetrics: false, readXfrmStat: async () => new Map() }),
    encapSockets: new AgentEncapSockets({ netns: undefined, registry }),
    reporter: new NodeStateReporter(resources, node.name),
    mesh,
  });
  await caches.runnable.start(new AbortController().signal);
  const agent = { name: node.name, kernel, ledger, caches, worker, dir };
  loops.push(
    (async () => {
      while (!stopped) {
        try {
          await worker.reconcile();
          recordKeys();
        } catch (error) {
          failures.push(`${node.name}: ${(error as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })(),
  );
  return agent;
}

function startController(): void {
  const controllerLogger = logger.child({ component: 'controller' });
  const registry = new Registry();
  registries.push(registry);
  const nodes = new Informer<V1Node>(coreListerWatcher(kc, 'nodes'), { resource: 'nodes' });
  const meshes = resources.informer<IpsecMeshObject>('ipsecmeshes');
  const nodeStates = resources.informer<IpsecNodeState>('ipsecnodestates');
  for (const informer of [nodes, meshes, nodeStates]) {
    informer.start();
    controllerInformers.push(informer as Informer<never>);
  }
  const reconciler = meshReconciler({
    meshes,
    nodes,
    nodeStates,
    statusWriter: resources.statusWriter('ipsec-operator-controller'),
    api: custom,
    events: new EventRecorder(kubeEventSink(kc), { component: 'ipsec-operator-controller', defaultNamespace: 'default', logger: controllerLogger }),
    metrics: new MeshMetrics(registry),
    logger: controllerLogger,
    requeueAfter: () => undefined, // the loop below looks again anyway
  });
  loops.push(
    (async () => {
      while (!stopped) {
        try {
          if ([nodes, meshes, nodeStates].every((informer) => informer.hasSynced())) await reconciler.reconcile(MESH);
        } catch (error) {
          failures.push(`controller: ${(error as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })(),
  );
}

const meshStatus = async (): Promise<IpsecMeshStatus> =>
  ((await custom.getClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: 'ipsecmeshes', name: MESH })) as { status?: IpsecMeshStatus }).status ?? {};
const condition = (status: Awaited<ReturnType<typeof meshStatus>>, type: string) => status.conditions?.find((c) => c.type === type);
const addressOf = (agent: Agent) => NODES.find((node) => node.name === agent.name)!.address;
const reportOf = async (node: string): Promise<NodeMeshReport | undefined> => {
  const state = (await custom.getClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: 'ipsecnodestates', name: node })) as IpsecNodeState;
  return state.status?.meshes?.find((m) => m.mesh === MESH);
};

beforeAll(async () => {
  const run = (args: string[]) => check(kubectl(args, { kubeconfig }), `kubectl ${args.join(' ')}`);
  for (const crd of ['ipsecnodestates', 'ipsecmeshes']) await run(['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, `deploy/crds/${crd}.ipsec.xfrm.io.yaml`)]);
  // Right after the CRD is created (here, or by another file at the same time) it may have no
  // conditions yet, and kubectl wait then fails instead of waiting: ask again.
  await eventually('the CRDs established', () => run(['wait', '--for=condition=Established', '--timeout=30s', 'crd/ipsecnodestates.ipsec.xfrm.io', 'crd/ipsecmeshes.ipsec.xfrm.io']), 60_000);
  for (const node of NODES) {
    await core.createNode({ body: { metadata: { name: node.name, labels: { [LABEL]: suffix } } } });
    await core.patchNodeStatus(
      { name: node.name, body: { status: { addresses: [{ type: 'InternalIP', address: node.address }, { type: 'Hostname', address: node.name }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
  await custom.createClusterCustomObject({
    group: API_GROUP,
    version: API_VERSION,
    plural: 'ipsecmeshes',
    body: { apiVersion: `${API_GROUP}/${API_VERSION}`, kind: 'IpsecMesh', metadata: { name: MESH }, spec: { nodeSelector: { matchLabels: { [LABEL]: suffix } }, rotation: { interval: '10m', gracePeriod: '1s', backstop: '5m' } } },
  });
  for (const node of NODES) agents.push(await startAgent(node));
  startController();
}, 120_000);

afterAll(async () => {
  stopped = true;
  await Promise.all(loops);
  for (const agent of agents) {
    await agent.caches.runnable.stop?.();
    await agent.ledger.close();
    rmSync(agent.dir, { recursive: true, force: true });
  }
  for (const informer of controllerInformers) informer.stop();
  await custom.deleteClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: 'ipsecmeshes', name: MESH }).catch(() => undefined);
  for (const node of NODES) {
    await custom.deleteClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: 'ipsecnodestates', name: node.name }).catch(() => undefined);
    await core.deleteNode({ name: node.name }).catch(() => undefined);
  }
}, 60_000);

describe('three agents and the controller on a real API server', () => {
  it('reach Ready: every pair keyed both ways, as the agents wrote it and the controller read it', async () => {
    const status = await eventually(
      'the mesh Ready',
      async () => {
        const status = await meshStatus();
        ensure(condition(status, 'Ready')?.status === 'True', `Ready: ${JSON.stringify(condition(status, 'Ready'))}; agent failures: ${failures.slice(-3).join(' | ')}`);
        return status;
      },
      90_000,
    );
    expect(status.members).toEqual({ selected: 3, ready: 3, rotating: 0 });
    for (const node of NODES) {
      const report = (await reportOf(node.name))!;
      expect(report.readyPeers).toBe(2);
      expect(report.advertisement.addresses).toEqual({ inet: node.address });
      expect(report.advertisement.generations.map((g) => g.generation)).toEqual([1]);
    }
    // Each pinned outbound SA has its twin, key and all, at its receiver.
    for (const sender of agents) {
      for (const sa of sender.kernel.states.filter((s) => s.source === NODES.find((n) => n.name === sender.name)!.address)) {
        const receiver = agents[NODES.findIndex((n) => n.address === sa.id.destination)]!;
        const twin = receiver.kernel.states.find((s) => s.id.spi === sa.id.spi && s.id.destination === sa.id.destination);
        expect(twin && keyBytes(twin).equals(keyBytes(sa))).toBe(true);
      }
    }
  });

  it('stores what the agents write and refuses malformed reports', async () => {
    const report = (await reportOf(NODES[0]!.name))!;
    const name = `mesh-schema-${suffix}`;
    await custom.createClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: 'ipsecnodestates', body: { apiVersion: `${API_GROUP}/${API_VERSION}`, kind: 'IpsecNodeState', metadata: { name }, spec: { nodeName: name } } });
    try {
      const write = (meshes: unknown[]) =>
        custom.patchClusterCustomObjectStatus(
          { group: API_GROUP, version: API_VERSION, plural: 'ipsecnodestates', name, body: { status: { meshes } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
      const stored = (await write([report])) as IpsecNodeState;
      expect(stored.status?.meshes).toEqual([report]);
      const ad = report.advertisement;
      const malformed: [string, unknown][] = [
        ['no advertisement', { ...report, advertisement: undefined }],
        ['a public key that is not 32 bytes of base64', { ...report, advertisement: { ...ad, generations: [{ generation: 1, publicKey: 'AAAA' }] } }],
        ['a reserved SPI', { ...report, advertisement: { ...ad, inbound: [{ ...ad.inbound[0]!, spi: 17 }] } }],
        ['an unknown family', { ...report, advertisement: { ...ad, outbound: [{ ...ad.outbound[0]!, family: 'IPv4' }] } }],
        ['an unknown rotation state', { ...report, rotation: { requestId: 'x', state: 'Started', generation: 1, startedAt: '2026-12-02T00:00:00Z' } }],
        ['no peer counts', { mesh: report.mesh, uid: report.uid, advertisement: ad }],
      ];
      for (const [what, bad] of malformed) {
        const refused = await write([bad]).then(
          () => undefined,
          (error: { code?: number }) => error.code,
        );
        expect(refused, what).toBe(422);
      }
    } finally {
      await custom.deleteClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: 'ipsecnodestates', name }).catch(() => undefined);
    }
  });

  it('rotates on the rotate annotation: each request acknowledged and done, the round completes, Ready again on new keys', async () => {
    const before = new Map(agents.map((agent) => [agent.name, new Set(agent.kernel.states.map((sa) => keyBytes(sa).toString('hex')))]));
    await custom.patchClusterCustomObject(
      { group: API_GROUP, version: API_VERSION, plural: 'ipsecmeshes', name: MESH, body: { metadata: { annotations: { [MESH_ROTATE_ANNOTATION]: 'now' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const acknowledged = new Set<string>();
    const status = await eventually(
      'the rotation round completed',
      async () => {
        for (const node of NODES) {
          const rotation = (await reportOf(node.name))?.rotation;
          if (rotation !== undefined) acknowledged.add(`${node.name}:${rotation.requestId}:${rotation.state}`);
        }
        const status = await meshStatus();
        ensure(status.keyGeneration === 1 && status.lastRotationTime !== undefined, `round: ${JSON.stringify(condition(status, 'Rotating'))}; failures: ${failures.slice(-3).join(' | ')}`);
        ensure(condition(status, 'Ready')?.status === 'True', `Ready: ${JSON.stringify(condition(status, 'Ready'))}`);
        return status;
      },
      180_000,
    );
    expect(condition(status, 'Rotating')).toMatchObject({ status: 'False', reason: 'Idle' });
    expect(status.rotationRequests ?? []).toEqual([]);
    expect(status.nodes?.every((node) => node.lastRotationTime !== undefined && node.generation === 2)).toBe(true);
    const mesh = (await custom.getClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: 'ipsecmeshes', name: MESH })) as IpsecMeshObject;
    expect(mesh.metadata.annotations?.[MESH_ROTATE_ANNOTATION]).toBeUndefined();
    for (const node of NODES) {
      const report = (await reportOf(node.name))!;
      expect(report.rotation).toMatchObject({ state: 'Done', generation: 2 });
      expect(report.rotation!.requestId).toMatch(new RegExp(`-${node.name}$`));
      expect(report.advertisement.generations.map((g) => g.generation)).toEqual([2]);
    }
    // The acknowledgement was seen for at least one request while it was under way (polling may miss a fast one).
    expect([...acknowledged].some((entry) => entry.endsWith(':Rotating')) || [...acknowledged].length >= 3).toBe(true);
    // Every node sends on keys none had before the rotation once the round is done...
    const isOld = (agent: Agent, sa: SecurityAssociation) => before.get(agent.name)!.has(keyBytes(sa).toString('hex'));
    const oldKeys = (agent: Agent) => agent.kernel.states.filter((sa) => isOld(agent, sa));
    for (const agent of agents) {
      const pinned = agent.kernel.policies
        .filter((policy) => policy.id.direction === 'out')
        .flatMap((policy) => policy.templates.filter((template) => template.spi !== 0))
        .map((template) => agent.kernel.states.find((sa) => sa.id.spi === template.spi && sa.source === addressOf(agent)));
      expect(pinned.length, `${agent.name}: outbound policies pinning SAs`).toBe(NODES.length - 1);
      expect(pinned.map((sa) => sa !== undefined && !isOld(agent, sa)), `${agent.name} sends on new keys`).toEqual(pinned.map(() => true));
    }
    // ...and the old inbound SAs go once idle for the grace period (1 s, rule 5 of
    // src/mesh/rotation.ts): they may outlive "Done" by that much and a pass or two, not longer.
    await eventually(
      'the old inbound SAs removed',
      async () => {
        for (const agent of agents) ensure(oldKeys(agent).length === 0, `${agent.name} still holds ${oldKeys(agent).length} SAs of the old generation`);
      },
      20_000,
    );
    // And no key byte went into any object the API server holds for the mesh.
    const objects = JSON.stringify([await meshStatus(), ...(await Promise.all(NODES.map((n) => reportOf(n.name))))]);
    for (const agent of agents) for (const sa of agent.kernel.states) expect(objects).not.toContain(keyBytes(sa).toString('base64'));
  });

  it('left no byte of any SA key in any object of the API server (Secrets and Events included), any log line or any metric', async () => {
    recordKeys();
    // Both generations of every pair: 6 SAs before the rotation, 6 after.
    expect(keysSeen.size).toBeGreaterThanOrEqual(12);
    const kinds = (await check(kubectl(['api-resources', '--verbs=list', '-o', 'name'], { kubeconfig }), 'kubectl api-resources')).split('\n').filter((kind) => kind.trim() !== '');
    const everything = await check(kubectl(['get', kinds.join(','), '--all-namespaces', '-o', 'json'], { kubeconfig }), 'kubectl get everything');
    expect(everything).toContain(MESH);
    const metrics = (await Promise.all(registries.map((registry) => registry.metrics()))).join('\n');
    expect(metrics).toContain('ipsec_operator_mesh_members');
    expect(logs.some((line) => line.includes('rotation started'))).toBe(true);
    const haystacks = { objects: everything, logs: logs.join(''), metrics };
    for (const hex of keysSeen) {
      const key = Buffer.from(hex, 'hex');
      for (const [where, text] of Object.entries(haystacks)) {
        for (const form of [hex, key.toString('base64'), key.subarray(0, 16).toString('hex'), key.subarray(0, 12).toString('base64')]) {
          expect(text.includes(form), `a key (as ${form.length} characters) in the ${where}`).toBe(false);
        }
      }
    }
  });
});
