// IpsecMesh on real kernels (issue 12): the real control plane and controller on the host, one
// agent per node in the test VM (test/infra/cluster), three nodes on a bridge. An IpsecMesh
// (transport, IPv4) selects them; shown: the mesh becomes Ready, ESP SAs exist for all six
// directions (the sender's outbound SA and its twin at the receiver, same SPI), and numbered UDP
// traffic in every direction (25/s each, test/infra/vm/guest/traffic-node.mjs) loses nothing
// while a rotation round requested with the rotate annotation runs and completes (maxConcurrent
// 2: two nodes' rotations overlap, the third waits, and no more than two ever rotate at once);
// the agents' mesh metrics say what the round did (peers, generation, one rotation each with
// its duration); from `ip -s xfrm
// state` dumps taken through the run no (key, SPI) counter restarted; XfrmInNoStates and
// XfrmInStateSeqError did not move; no byte of any SA key the dumps showed is in any API object
// (Secrets and Events included), in the controller's or the agents' logs or in their metrics.
// Instruments: test/support/traffic-proof.ts (proven on the real kernel by
// test/kernel/vm/traffic-proof.test.ts) through ./support.ts. Churn: ./mesh-churn.test.ts.
//
// In `npm test` (layer e2e-mesh; e2e-mesh-6.12 runs it on the second kernel). Its time is the
// rotation protocol's: the agents resync every RESYNC_SECONDS (an old SA's idleness is seen
// at a pass), the grace period is 3 s.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { metricValue } from '../support/metrics-text.js';
import { meshManifest, MeshRun, startMeshRun } from './support.js';

const vm = vmFromInject();
const NODES = ['a', 'b', 'c'];
const MESH = 'e2e-mesh';
const MAX_CONCURRENT = 2;
/** The agents' full resync: the pass that sees an old SA idle for the grace period (the harness's default is 10). */
const RESYNC_SECONDS = 5;

let run: MeshRun;

describe('IpsecMesh on real kernels: three nodes, zero loss through a rotation', () => {
  beforeAll(async () => {
    run = await startMeshRun(vm, { kubeconfigPath: injectedKubeconfigPath(), mesh: MESH, nodes: NODES, resyncSeconds: RESYNC_SECONDS });
  });
  afterAll(async () => {
    await run?.finish(); // undefined when beforeAll failed
  });

  it('becomes Ready with ESP SAs for all six directions', async () => {
    const started = Date.now();
    await run.cluster.kubectl(['apply', '-f', '-'], meshManifest(MESH, MAX_CONCURRENT));
    const status = await run.readyWith(NODES.length, 'the mesh Ready with every node a ready member', 300_000);
    run.timings.push(`Ready after apply: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(status.members).toMatchObject({ selected: 3, ready: 3 });
    const spis = run.pairedSpis(await run.sample(), NODES);
    console.log(`[e2e-mesh] SPIs per direction: ${JSON.stringify(Object.fromEntries(spis))}`);
    for (const [direction, held] of spis) expect(held.length, `${direction}: an SA at both ends`).toBeGreaterThanOrEqual(1);
    console.log(`[e2e-mesh] kubectl get ipsecmesh -o wide:\n${await run.cluster.kubectl(['get', 'ipsecmesh', '-o', 'wide'])}`);
  });

  it('carries numbered traffic in every direction with 0 lost while a rotation runs and completes', async () => {
    const generationsBefore = await run.generations();
    let mostRotating = 0;
    await run.underTraffic(`one rotation round (maxConcurrent ${MAX_CONCURRENT})`, NODES, NODES, async () => {
      const started = Date.now();
      await run.cluster.kubectl(['annotate', 'ipsecmesh', MESH, 'ipsec.xfrm.io/rotate=now', '--overwrite']);
      await run.roundCompleted(NODES, generationsBefore, 600_000, (status) => {
        mostRotating = Math.max(mostRotating, status.members?.rotating ?? 0, (status.nodes ?? []).filter((entry) => entry.rotating === true).length);
      });
      run.timings.push(`rotation round completed (status): ${((Date.now() - started) / 1000).toFixed(1)} s`);
      // The old generation's SAs leave after the grace period: one SA per direction again.
      await run.waitSettled(NODES, 'the old SAs removed (one SA per direction)');
      run.timings.push(`rotation complete, old SAs gone: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    });
    run.timings.push(`most nodes rotating at once: ${mostRotating}`);
    expect(mostRotating, 'nodes rotating at once').toBeGreaterThanOrEqual(1);
    expect(mostRotating, 'nodes rotating at once (maxConcurrent)').toBeLessThanOrEqual(MAX_CONCURRENT);
    // Six SAs of the first generation pair and six more after each of the three nodes' rotations.
    expect(run.tracker.pairs.size).toBeGreaterThanOrEqual(12);
  });

  it('left no byte of any SA key the kernels showed in any API object (Secrets and Events included), any log or any metric', async () => {
    const scan = await run.scanEverything();
    expect(run.keys.length).toBeGreaterThanOrEqual(12);
    expect(scan.findings).toEqual([]);
  });

  it("exports each node's side of the mesh in the agent's metrics: peers ready, generation, one rotation with its duration", () => {
    for (const name of NODES) {
      const text = run.agentMetrics.get(name);
      expect(text, `agent ${name} metrics scraped by the key scan`).toBeDefined();
      const series = (metric: string) => metricValue(text!, `ipsec_operator_mesh_node_${metric}{mesh="${MESH}"}`);
      const seen = {
        node: name,
        expected: metricValue(text!, `ipsec_operator_mesh_node_peers{mesh="${MESH}",state="expected"}`),
        ready: metricValue(text!, `ipsec_operator_mesh_node_peers{mesh="${MESH}",state="ready"}`),
        generation: series('key_generation'),
        rotating: series('rotating'),
        rotations: series('rotations_total'),
        durations: series('rotation_duration_seconds_count'),
      };
      console.log(`[e2e-mesh] agent ${name} mesh metrics: ${JSON.stringify({ ...seen, durationSum: series('rotation_duration_seconds_sum'), sequenceSpaceUsed: series('sequence_space_used_ratio') })}`);
      expect(seen).toEqual({ node: name, expected: 2, ready: 2, generation: 2, rotating: 0, rotations: 1, durations: 1 });
      const used = series('sequence_space_used_ratio');
      expect(used).toBeGreaterThanOrEqual(0);
      expect(used).toBeLessThan(0.01);
      expect(series('rotation_duration_seconds_sum')).toBeGreaterThan(0);
    }
  });
});
