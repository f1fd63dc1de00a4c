// A SIGKILLed agent in the middle of a rotation (the churn run's step on real kernels, where
// one 6.12 run lost a datagram with XfrmOutNoStates on the restarted node): three nodes over
// in-memory kernels (test/support/mesh-agents.ts) all rotating at once, node c's agent stopped
// before each one of its kernel changes in turn (nothing after the stop runs, as after a
// SIGKILL: not the rest of the batch, no rollback), then started again from its state
// directory, ledger and kernel. After every single kernel change of every node, no outbound
// policy may pin an SPI whose SA the node lacks: that is the packet XfrmOutNoStates counts.
// (MeshCluster's own `lossless` check runs between passes only; a replace of an outbound SA
// or a delete ordered before the policy's switch happens inside one pass.)
import { describe, expect, it } from 'vitest';
import type { KernelChange, KernelOutcome } from '../../src/apply/applier.js';
import type { IpsecMeshObject, MeshRotationRequest } from '../../src/crd/mesh-contract.js';
import { MeshCluster, type SimNode } from '../support/mesh-agents.js';

const UID = '0b7e3f52-6c1d-4e8a-9f20-7d4c3b2a1e0f';
const KILLED = 'c';

function meshObject(requests: MeshRotationRequest[] = []): IpsecMeshObject {
  return {
    metadata: { name: 'cluster', uid: UID, generation: 1 },
    spec: { nodeSelector: { matchLabels: { mesh: 'on' } }, rotation: { gracePeriod: '2s', backstop: '1h', interval: '24h' } },
    status: requests.length > 0 ? { rotationRequests: requests } : {},
  };
}

/** Outbound policies whose template pins an SPI the node holds no outbound SA for. */
function pinsWithoutSa(cluster: MeshCluster): string[] {
  const problems: string[] = [];
  for (const sender of cluster.nodes) {
    for (const policy of sender.kernel.policies) {
      if (policy.id.direction !== 'out') continue;
      for (const template of policy.templates) {
        if (template.spi !== 0 && !sender.kernel.states.some((sa) => sa.id.spi === template.spi && sa.source === sender.address)) {
          problems.push(`${sender.name} pins SPI 0x${template.spi.toString(16)} without an SA`);
        }
      }
    }
  }
  return problems;
}

interface Stop {
  /** The killed node's change before which its agent stops (0: never). */
  readonly at: number;
  count: number;
  reached?: () => void;
}

/** Applies each change on its own, checking every node after it; stops the killed node's agent at `stop.at`. */
function watchChanges(cluster: MeshCluster, node: SimNode, stop: Stop, seen: string[]): void {
  const kernel = node.kernel;
  const apply = kernel.apply.bind(kernel);
  kernel.apply = async (changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]> => {
    const outcomes: KernelOutcome[] = [];
    for (const change of changes) {
      if (node.name === KILLED && stop.count >= 0 && ++stop.count === stop.at) {
        stop.reached?.();
        return new Promise(() => undefined);
      }
      outcomes.push(...(await apply([change])));
      for (const problem of pinsWithoutSa(cluster)) seen.push(`${problem}, after ${node.name}'s ${change.op}`);
    }
    return outcomes;
  };
}

/** The three nodes rotate at once; c's agent is stopped at its change `at` and started again. Returns what was seen and whether the stop was reached. */
async function rotationWithKill(at: number): Promise<{ killed: boolean; changes: number; seen: string[] }> {
  const cluster = new MeshCluster(meshObject());
  for (const [name, address] of [['a', '192.0.2.1'], ['b', '192.0.2.2'], ['c', '192.0.2.3']] as const) cluster.add(name, address, { mesh: 'on' });
  await cluster.settle();
  const seen: string[] = [];
  const stop: Stop = { at, count: 0 };
  for (const node of cluster.nodes) watchChanges(cluster, node, stop, seen);
  cluster.mesh = meshObject(['a', 'b', 'c'].map((node, i) => ({ node, requestId: `${i + 1}-${node}`, reason: 'Manual', requestedAt: '2027-01-15T08:00:00Z' })));
  let killed = false;
  for (let round = 0; round < 30 && !killed; round++) {
    for (const node of cluster.nodes) {
      const reached = new Promise<'killed'>((resolve) => (stop.reached = () => resolve('killed')));
      if ((await Promise.race([cluster.pass(node).then(() => 'passed' as const), reached])) === 'killed') {
        killed = true;
        break;
      }
    }
    cluster.clock += 3000;
  }
  const changes = stop.count;
  stop.count = -1;
  if (killed) cluster.restart(cluster.node(KILLED));
  await cluster.settle(40, 3000);
  for (const name of ['a', 'b', 'c']) expect(cluster.report(name)!.rotation, name).toMatchObject({ state: 'Done', generation: 2 });
  return { killed, changes, seen };
}

describe('an agent SIGKILLed at any kernel change of a rotation', () => {
  it('never leaves an outbound policy pinning an SPI without its SA, on any node, at any change', async () => {
    const whole = await rotationWithKill(0);
    expect(whole.seen).toEqual([]);
    // A run without a stop counts c's changes through the rotation; then a stop before each of them.
    expect(whole.changes).toBeGreaterThan(10);
    for (let at = 1; at <= whole.changes; at++) {
      const run = await rotationWithKill(at);
      expect({ at, killed: run.killed, seen: run.seen }).toEqual({ at, killed: true, seen: [] });
    }
  }, 600_000);
});
