// IpsecMesh on real kernels (issue 12): the real control plane and controller on the host, one
// agent per node in the test VM (test/infra/cluster), three nodes on a bridge. An IpsecMesh
// (transport, IPv4) selects them; shown: the mesh becomes Ready, ESP SAs exist for all six
// directions (the sender's outbound SA and its twin at the receiver, same SPI), and numbered UDP
// traffic in every direction (25/s each, test/infra/vm/guest/traffic-node.mjs) loses nothing
// while a rotation requested with the rotate annotation runs and completes; from `ip -s xfrm
// state` dumps taken through the run no (key, SPI) counter restarted; XfrmInNoStates and
// XfrmInStateSeqError did not move; no byte of any SA key the dumps showed is in any API object
// (Secrets and Events included), in the controller's or the agents' logs or in their metrics.
// Instruments: test/support/traffic-proof.ts, proven on the real kernel by
// test/kernel/vm/traffic-proof.test.ts.
//
// Kept out of `npm test` (its own project, `npm run test:e2e-mesh`) until node churn, repeated
// rotations, a killed agent and a reboot are in it and it passes reliably under CI's time bound.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { startCluster, type Cluster } from '../infra/cluster/cluster.js';
import type { TopologyNode } from '../infra/vm/topology.js';
import { warmCrypto } from '../support/vm-cli.js';
import { directionCounts, dumpedKeys, parseStateDump, parseTrafficSummary, parseXfrmStat, scanKeys, SequenceTracker, xfrmStatIncrease } from '../support/traffic-proof.js';
import { timed, waitFor } from '../e2e/support.js';

const vm = vmFromInject();
const TRAFFIC_NODE = fileURLToPath(new URL('../infra/vm/guest/traffic-node.mjs', import.meta.url));
const NODES = ['a', 'b', 'c'];
const MESH = 'e2e-mesh';
const MESH_LABEL = 'ipsec.xfrm.io/mesh';
const RATE = 25; // datagrams per second per direction (the floor is 20)
const PORT = 7000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface MeshStatus {
  keyGeneration?: number;
  lastRotationTime?: string;
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
  members?: { selected?: number; ready?: number; rotating?: number };
  nodes?: { name: string; generation?: number; lastRotationTime?: string }[];
  rotationRequests?: unknown[];
}

let cluster: Cluster;
const node = (name: string): TopologyNode => cluster.topology.node(name);
const address = (name: string) => node(name).ipv4!;
const tracker = new SequenceTracker();
const keys: Buffer[] = [];
const timings: string[] = [];

const meshStatus = async (): Promise<MeshStatus> => (JSON.parse(await cluster.kubectl(['get', 'ipsecmesh', MESH, '-o', 'json'])) as { status?: MeshStatus }).status ?? {};
const condition = (status: MeshStatus, type: string) => status.conditions?.find((c) => c.type === type);

/** Every node's SA dump into the tracker (and its keys into the scan list); returns the dumps. */
const sample = async (): Promise<Map<string, string>> => {
  const dumps = new Map<string, string>();
  for (const name of NODES) {
    const dump = (await node(name).sh('ip -s xfrm state')).stdout;
    tracker.observe(name, dump);
    for (const key of dumpedKeys(dump)) if (!keys.some((known) => known.equals(key))) keys.push(key);
    dumps.set(name, dump);
  }
  return dumps;
};
const xfrmStats = async () => new Map(await Promise.all(NODES.map(async (name) => [name, parseXfrmStat((await node(name).sh('cat /proc/net/xfrm_stat')).stdout)] as const)));

/** For every ordered pair: the SPIs of the ESP SAs the sender holds to the receiver that the receiver holds too. */
const pairedSpis = (dumps: Map<string, string>) => {
  const out = new Map<string, number[]>();
  for (const from of NODES) {
    for (const to of NODES) {
      if (from === to) continue;
      const held = (name: string) => parseStateDump(dumps.get(name)!).filter((sa) => sa.protocol === 'esp' && sa.source === address(from) && sa.destination === address(to)).map((sa) => sa.spi);
      const atReceiver = new Set(held(to));
      out.set(`${from}->${to}`, held(from).filter((spi) => atReceiver.has(spi)));
    }
  }
  return out;
};

/** Starts a traffic node in every namespace; returns a stop that collects the directions' counts. */
const startTraffic = async () => {
  const ids: string[] = [];
  for (const name of NODES) {
    const peers = NODES.filter((peer) => peer !== name).map(address).join(',');
    const { id } = await vm.spawn({ argv: ['ip', 'netns', 'exec', node(name).netns, 'node', TRAFFIC_NODE, '--self', address(name), '--peers', peers, '--port', String(PORT), '--rate', String(RATE), '--drain-ms', '3000'] });
    ids.push(id);
  }
  for (const id of ids) {
    while (!(await vm.logs(id)).stdout.includes('ready')) {
      const status = await vm.logs(id);
      if (!status.running) throw new Error(`a traffic node exited: ${status.stderr}`);
      await sleep(250);
    }
  }
  for (const id of ids) await vm.kill(id, 'SIGUSR1'); // all listen: start sending
  return async () => {
    const summaries = [];
    for (const id of ids) await vm.kill(id, 'SIGTERM');
    for (const id of ids) {
      const status = await vm.wait(id, 60_000);
      expect(status.running, 'traffic node still running after SIGTERM').toBe(false);
      summaries.push(parseTrafficSummary(status.stdout));
    }
    return directionCounts(summaries);
  };
};

const meshManifest = () => `apiVersion: ipsec.xfrm.io/v1alpha1
kind: IpsecMesh
metadata:
  name: ${MESH}
spec:
  nodeSelector: {matchLabels: {${MESH_LABEL}: ${MESH}}}
  addressFamilies: [IPv4]
  mode: transport
  aead: rfc4106-gcm-aes256
  rotation:
    interval: 24h
    gracePeriod: 3s
    backstop: 10m
    maxConcurrent: 1
`;

describe('IpsecMesh on real kernels: three nodes, zero loss through a rotation', () => {
  beforeAll(async () => {
    await warmCrypto(vm);
    cluster = await timed('cluster started', () => startCluster({ vm, kubeconfigPath: injectedKubeconfigPath(), nodes: NODES, log: (line) => console.log(`[e2e-mesh] ${line}`) }));
    await cluster.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/ipsecmeshes.ipsec.xfrm.io']);
    // The Node objects have no kubelet: their InternalIP (the mesh's node address) is written here.
    for (const name of NODES) {
      await cluster.kubectl(['patch', 'node', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { addresses: [{ type: 'InternalIP', address: address(name) }, { type: 'Hostname', address: name }] } })]);
      await cluster.kubectl(['label', 'node', name, `${MESH_LABEL}=${MESH}`, '--overwrite']);
    }
  });
  afterAll(async () => {
    if (!cluster) return;
    for (const name of NODES) console.log(`[e2e-mesh] agent ${name} log tail:\n${(await cluster.agentLogs(name).catch(() => '')).slice(-4000)}`);
    console.log(`[e2e-mesh] controller log tail:\n${cluster.controllerLogs().slice(-4000)}`);
    console.log(`[e2e-mesh] timings:\n${timings.join('\n')}`);
    await cluster.kubectl(['delete', 'ipsecmesh', MESH, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await cluster.stop();
  });

  it('becomes Ready with ESP SAs for all six directions', async () => {
    const started = Date.now();
    await cluster.kubectl(['apply', '-f', '-'], meshManifest());
    const status = await waitFor(
      'the mesh Ready',
      async () => {
        const status = await meshStatus();
        return condition(status, 'Ready')?.status === 'True' ? status : undefined;
      },
      300_000,
      1000,
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}\nstatus: ${JSON.stringify(await meshStatus().catch(() => ({})))}`);
    });
    timings.push(`Ready after apply: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(status.members).toMatchObject({ selected: 3, ready: 3 });
    const spis = pairedSpis(await sample());
    console.log(`[e2e-mesh] SPIs per direction: ${JSON.stringify(Object.fromEntries(spis))}`);
    for (const [direction, held] of spis) expect(held.length, `${direction}: an SA at both ends`).toBeGreaterThanOrEqual(1);
    const table = await cluster.kubectl(['get', 'ipsecmesh', '-o', 'wide']);
    console.log(`[e2e-mesh] kubectl get ipsecmesh -o wide:\n${table}`);
  });

  it('carries numbered traffic in every direction with 0 lost while a rotation runs and completes', async () => {
    const before = await xfrmStats();
    const generationsBefore = new Map(((await meshStatus()).nodes ?? []).map((entry) => [entry.name, entry.generation ?? 0]));
    const stop = await startTraffic();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await sample().catch(() => undefined);
        await sleep(1000);
      }
    })();
    let counts;
    try {
      await sleep(3000);
      const started = Date.now();
      await cluster.kubectl(['annotate', 'ipsecmesh', MESH, 'ipsec.xfrm.io/rotate=now', '--overwrite']);
      await waitFor(
        'the rotation round completed (every node on a new generation, Rotating False, Ready)',
        async () => {
          const status = await meshStatus();
          const nodes = status.nodes ?? [];
          const allRotated = NODES.every((name) => (nodes.find((entry) => entry.name === name)?.generation ?? 0) > (generationsBefore.get(name) ?? 0));
          return allRotated && condition(status, 'Rotating')?.status === 'False' && condition(status, 'Ready')?.status === 'True' && (status.rotationRequests ?? []).length === 0;
        },
        600_000,
        1000,
      ).catch(async (error: Error) => {
        throw new Error(`${error.message}\nstatus: ${JSON.stringify(await meshStatus().catch(() => ({})))}`);
      });
      timings.push(`rotation round completed (status): ${((Date.now() - started) / 1000).toFixed(1)} s`);
      // The old generation's SAs leave after the grace period: one SA per direction again.
      await waitFor(
        'the old SAs removed (one SA per direction)',
        async () => {
          const dumps = await sample();
          return NODES.every((name) => parseStateDump(dumps.get(name)!).filter((sa) => sa.protocol === 'esp').length === 4);
        },
        300_000,
        1000,
      );
      timings.push(`rotation complete, old SAs gone: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      await sleep(3000);
    } finally {
      sampling = false;
      await sampler;
      counts = await stop();
    }
    await sample();
    const increase = new Map([...(await xfrmStats())].map(([name, after]) => [name, xfrmStatIncrease(before.get(name)!, after)]));
    const summary = counts.map((count) => `${count.from}->${count.to} ${count.received}/${count.sent}`).join(', ');
    console.log(`[e2e-mesh] traffic through the rotation: ${summary}; ${tracker.samples} dumps, ${tracker.pairs.size} (key, SPI) pairs; xfrm_stat changes: ${JSON.stringify(Object.fromEntries([...increase].map(([name, moved]) => [name, Object.fromEntries(moved)])))}`);
    timings.push(`traffic: ${summary}`);
    expect(counts).toHaveLength(6);
    for (const count of counts) {
      expect(count.sent, `${count.from}->${count.to}`).toBeGreaterThanOrEqual(RATE * 5);
      expect({ lost: count.lost, missing: count.missing }, `${count.from}->${count.to}`).toEqual({ lost: 0, missing: [] });
    }
    expect(tracker.restarts).toEqual([]);
    // Six SAs of the first generation and six of the second, each seen in the dumps.
    expect(tracker.pairs.size).toBeGreaterThanOrEqual(12);
    for (const [name, moved] of increase) {
      expect({ node: name, XfrmInNoStates: moved.get('XfrmInNoStates') ?? 0, XfrmInStateSeqError: moved.get('XfrmInStateSeqError') ?? 0 }).toEqual({ node: name, XfrmInNoStates: 0, XfrmInStateSeqError: 0 });
    }
  });

  it('left no byte of any SA key the kernels showed in any API object (Secrets and Events included), any log or any metric', async () => {
    await sample();
    // Every key the dumps showed through the run: both generations of all six directions at least.
    expect(keys.length).toBeGreaterThanOrEqual(12);
    const sources = new Map<string, string>();
    const kinds = (await cluster.kubectl(['api-resources', '--verbs=list', '-o', 'name'])).split('\n').filter((kind) => kind.trim() !== '');
    const everything = await cluster.kubectl(['get', kinds.join(','), '--all-namespaces', '-o', 'json']);
    expect(everything).toContain(MESH);
    expect(kinds).toContain('secrets');
    expect(kinds).toContain('events');
    sources.set('API objects', everything);
    sources.set('controller log', cluster.controllerLogs());
    const controllerMetrics = await (await fetch(`http://127.0.0.1:${cluster.controllerMetricsPort}/metrics`)).text();
    expect(controllerMetrics).toContain('ipsec_operator_mesh');
    sources.set('controller metrics', controllerMetrics);
    for (const name of NODES) {
      const log = await cluster.agentLogs(name);
      expect(log).toContain('mesh: rotation done');
      sources.set(`agent ${name} log`, log);
      // The agent serves on the VM's user-network address, reachable from inside the guest.
      const metrics = await vm.sh(`wget -q -T 10 -O - http://10.0.2.15:${cluster.agents.get(name)!.metricsPort}/metrics`);
      expect(metrics.stdout).toContain('ipsec_operator_');
      sources.set(`agent ${name} metrics`, metrics.stdout);
    }
    const findings = scanKeys(keys, sources);
    console.log(`[e2e-mesh] key scan: ${keys.length} keys over ${sources.size} sources (${[...sources.values()].reduce((total, text) => total + text.length, 0)} characters): ${findings.length} findings`);
    expect(findings).toEqual([]);
  });
});
