// A SIGKILLed agent in the middle of a rotation (the churn run's step on real kernels, where
// one 6.12 run lost a datagram with XfrmOutNoStates on the restarted node): three nodes over
// in-memory kernels (test/support/mesh-agents.ts) all rotating at once, node c's agent stopped
// before each one of its kernel changes in turn (nothing after the stop runs, as after a
// SIGKILL: not the rest of the batch, no rollback), then started again from its state
// directory, ledger and kernel. After every single kernel change of every node, no outbound
// policy may pin an SPI whose SA the node lacks: that is the packet XfrmOutNoStates counts.
// Nor may an outbound SA go before the grace period has passed since a policy last pinned it: a
// packet that found the policy just before its switch still looks for the old SA (the kernel
// resolves templates after the policy lookup, without a lock), and is dropped as XfrmOutNoStates
// too if it is gone (src/agent/mesh-kernel.ts OutboundDrain).
// (MeshCluster's own `lossless` check runs between passes only; a replace of an outbound SA
// or a delete ordered before the policy's switch happens inside one pass.)
import { describe, expect, it } from 'vitest';
import type { KernelChange, KernelOutcome } from '../../src/apply/applier.js';
import type { IpsecMeshObject, MeshRotationRequest } from '../../src/crd/mesh-contract.js';
import { MeshCluster, type SimNode } from '../support/mesh-agents.js';

const UID = '0b7e3f52-6c1d-4e8a-9f20-7d4c3b2a1e0f';
const KILLED = 'c';
const GRACE_MS = 2000;

function meshObject(requests: MeshRotationRequest[] = []): IpsecMeshObject {
  return {
    metadata: { name: 'cluster', uid: UID, generation: 1 },
    spec: { nodeSelector: { matchLabels: { mesh: 'on' } }, rotation: { gracePeriod: `${GRACE_MS / 1000}s`, backstop: '1h', interval: '24h' } },
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

/** SPIs the node's outbound policies pin. */
function pinned(node: SimNode): Set<number> {
  return new Set(node.kernel.policies.filter((policy) => policy.id.direction === 'out').flatMap((policy) => policy.templates.map((template) => template.spi).filter((spi) => spi !== 0)));
}

/**
 * Applies each change on its own, checking every node after it, and that an outbound SA is
 * deleted no sooner than GRACE_MS after the node's policies stopped pinning it; stops the killed
 * node's agent at `stop.at`. The kernel is the node's across a restart: so is what it records.
 */
function watchChanges(cluster: MeshCluster, node: SimNode, stop: Stop, seen: string[]): void {
  const kernel = node.kernel;
  const apply = kernel.apply.bind(kernel);
  let pinnedNow = pinned(node);
  const unpinnedAt = new Map<number, number>();
  kernel.apply = async (changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]> => {
    const outcomes: KernelOutcome[] = [];
    for (const change of changes) {
      if (node.name === KILLED && stop.count >= 0 && ++stop.count === stop.at) {
        stop.reached?.();
        return new Promise(() => undefined);
      }
      if (change.op === 'delete-state' && change.id.destination !== node.address) {
        const since = cluster.clock - (unpinnedAt.get(change.id.spi) ?? -Infinity);
        if (pinnedNow.has(change.id.spi) || since < GRACE_MS) seen.push(`${node.name} deleted its outbound SA 0x${change.id.spi.toString(16)} ${pinnedNow.has(change.id.spi) ? 'while pinned' : `${since} ms after its policy stopped pinning it`}`);
      }
      outcomes.push(...(await apply([change])));
      const after = pinned(node);
      for (const spi of pinnedNow) if (!after.has(spi)) unpinnedAt.set(spi, cluster.clock);
      pinnedNow = after;
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
  // The drained SAs went: one outbound SA per peer is left on every node.
  for (const node of cluster.nodes) expect(node.kernel.states.filter((sa) => sa.source === node.address).length, node.name).toBe(2);
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
