// The API server stopped for 30 seconds: the kernels keep exactly what they had and traffic
// flows (fail static); afterwards the agents and the controller catch up without a restart
// (an edit made after the outage converges and is reported). Uses a control plane of its own,
// since it stops it.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { startControlPlane, type ControlPlane } from '../infra/controlplane/controlplane.js';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';
import { startCluster, type Cluster } from '../infra/cluster/cluster.js';
import { warmCrypto } from '../support/vm-cli.js';
import { resourceStates, timed, waitFor } from './support.js';

const vm = vmFromInject();
const EXAMPLE = join(REPO_ROOT, 'examples/host-to-host');
const OUTAGE_MS = 30_000;

describe('API server outage', () => {
  let controlPlane: ControlPlane;
  let cluster: Cluster;
  const tables = async (name: string) => (await cluster.topology.node(name).sh('ip xfrm state; ip xfrm policy')).stdout.replace(/anti-replay context:.*$/gm, '');

  beforeAll(async () => {
    await warmCrypto(vm);
    controlPlane = await startControlPlane();
    cluster = await startCluster({ vm, kubeconfigPath: controlPlane.kubeconfigPath, nodes: ['a', 'b'], log: (line) => console.log(`[e2e] ${line}`) });
    await cluster.kubectl(['apply', '-f', EXAMPLE]);
    await waitFor('every resource Ready', async () => {
      const states = await resourceStates(cluster);
      return states.length > 0 && states.every((state) => state.ready === 'True');
    }, 300_000, 1000);
  });
  afterAll(async () => {
    if (controlPlane && !controlPlane.running) await controlPlane.resume().catch(() => undefined);
    if (cluster) {
      await cluster.kubectl(['delete', '-f', EXAMPLE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
      await waitFor('every object gone', async () => ((await resourceStates(cluster)).length === 0 ? true : undefined), 180_000, 1000).catch(() => undefined);
      await cluster.stop();
    }
    await controlPlane?.stop();
  });

  it('keeps the kernel and the traffic as they were while the API server is down, then catches up without a restart', async () => {
    const before = { a: await tables('a'), b: await tables('b') };
    await controlPlane.halt();
    const started = Date.now();
    try {
      while (Date.now() - started < OUTAGE_MS) {
        const ping = await cluster.topology.node('a').sh(`ping -c 2 -W 5 198.51.100.2`);
        expect(ping.stdout).toMatch(/2 packets transmitted, 2 (packets )?received/);
        await new Promise((resolve) => setTimeout(resolve, 5000));
      }
      expect(await tables('a')).toBe(before.a);
      expect(await tables('b')).toBe(before.b);
      for (const name of ['a', 'b']) expect((await vm.logs(cluster.agents.get(name)!.id)).running).toBe(true);
    } finally {
      await controlPlane.resume();
    }

    // Same processes: an edit after the outage reaches the kernel and the status.
    await cluster.kubectl(['patch', 'ipsecpolicy', 'a-out', '--type=merge', '-p', '{"spec":{"priority":60}}']);
    await timed('caught up after the outage', () =>
      waitFor('the edit in node a\'s kernel and a-out Ready for its new generation', async () => {
        const policy = await cluster.topology.node('a').sh('ip xfrm policy get src 198.51.100.1/32 dst 198.51.100.2/32 dir out');
        const object = JSON.parse(await cluster.kubectl(['get', 'ipsecpolicy', 'a-out', '-o', 'json'])) as {
          metadata: { generation: number };
          status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] };
        };
        const ready = object.status?.conditions?.find((condition) => condition.type === 'Ready')?.status === 'True';
        return policy.stdout.includes('priority 60') && object.status?.observedGeneration === object.metadata.generation && ready;
      }, 180_000, 1000),
    );
    for (const name of ['a', 'b']) expect((await vm.logs(cluster.agents.get(name)!.id)).running).toBe(true);
  });
});
