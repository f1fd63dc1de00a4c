/**
 * A few agents' mesh work (src/agent/mesh-worker.ts) over in-memory kernels, for unit tests:
 * each node has a FakeKernel (the kernel's rules, not the planner's), an in-memory ownership
 * store and its own state directory; a pass is what the agent's node worker does (prepare,
 * converge through the real engine, dump, publish, "write" the status). The cluster is plain
 * objects the test edits: Nodes, the IpsecMesh (its status.rotationRequests), and the
 * IpsecNodeStates the passes write.
 *
 * `lossless()` is the check that matters: every outbound policy of the mesh pins an SA whose
 * receiver holds an inbound SA with the same SPI, addresses and key bytes.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Node } from '@kubernetes/client-node';
import { converge } from '../../src/engine/converge.js';
import type { IpsecMeshObject, NodeMeshReport } from '../../src/crd/mesh-contract.js';
import type { IpsecNodeState } from '../../src/crd/node-state.js';
import { MeshWorker } from '../../src/agent/mesh-worker.js';
import { createLogger } from '../../src/kube/logger.js';
import type { SecurityAssociation } from '../../src/xfrm/types.js';
import { FakeKernel } from './fake-kernel.js';
import { MemoryOwnership } from './ownership.js';

export interface SimNode {
  readonly name: string;
  address: string;
  labels: Record<string, string>;
  bootId: string;
  kernel: FakeKernel;
  ownership: MemoryOwnership;
  readonly stateDirectory: string;
  worker: MeshWorker;
  reports: NodeMeshReport[] | undefined;
}

export class MeshCluster {
  readonly nodes: SimNode[] = [];
  /** Undefined: the mesh was deleted. */
  mesh: IpsecMeshObject | undefined;
  clock = 1_800_000_000_000;
  /** Every line every agent logged (debug included), for the no-key-bytes check. */
  readonly logs: string[] = [];
  readonly #logger = createLogger({ level: 'debug', write: (line) => void this.logs.push(line) });

  constructor(mesh: IpsecMeshObject | undefined) {
    this.mesh = mesh;
  }

  add(name: string, address: string, labels: Record<string, string> = {}): SimNode {
    const node: SimNode = {
      name,
      address,
      labels,
      bootId: `${name}-boot-1`,
      kernel: new FakeKernel(),
      ownership: new MemoryOwnership(),
      stateDirectory: mkdtempSync(join(tmpdir(), `mesh-${name}-`)),
      worker: undefined as unknown as MeshWorker,
      reports: undefined,
    };
    node.worker = this.workerFor(node);
    this.nodes.push(node);
    return node;
  }

  /** A new agent process on the node (same state directory, same kernel, nothing in memory). */
  restart(node: SimNode): void {
    node.worker = this.workerFor(node);
  }

  /** The node rebooted: a new boot id, an empty kernel; the state directory survives. */
  reboot(node: SimNode): void {
    node.bootId = `${node.name}-boot-${Number(node.bootId.split('-').at(-1)) + 1}`;
    node.kernel = new FakeKernel();
    node.ownership = new MemoryOwnership();
    node.worker = this.workerFor(node);
  }

  node(name: string): SimNode {
    const found = this.nodes.find((n) => n.name === name);
    if (!found) throw new Error(`no node ${name}`);
    return found;
  }

  private workerFor(node: SimNode): MeshWorker {
    return new MeshWorker({
      nodeName: node.name,
      stateDirectory: node.stateDirectory,
      bootId: node.bootId,
      caches: { snapshot: () => ({ meshes: this.mesh ? [this.mesh] : [], nodes: this.nodeObjects(), nodeStates: this.nodeStates() }) },
      logger: this.#logger.child({ node: node.name }),
      now: () => this.clock,
    });
  }

  nodeObjects(): V1Node[] {
    return this.nodes.map((n) => ({ metadata: { name: n.name, labels: n.labels }, status: { addresses: [{ type: 'InternalIP', address: n.address }] } }));
  }

  nodeStates(): IpsecNodeState[] {
    return this.nodes.filter((n) => n.reports !== undefined).map((n) => ({ metadata: { name: n.name }, spec: { nodeName: n.name }, status: { meshes: n.reports! } }));
  }

  /** One agent pass on one node; returns the kernel changes it made. */
  async pass(node: SimNode): Promise<number> {
    const ownerOf = (key: string) => node.ownership.records().get(key)?.resource;
    const prepared = await node.worker.prepare(node.kernel, ownerOf, [...node.ownership.records().values()].map((r) => r.resource));
    const result = await converge(node.kernel, node.ownership, { desired: prepared.desired, prune: true, dryRun: false, conflicts: 'skip', protect: prepared.protect });
    if (result.outcome !== 'applied') throw new Error(`${node.name}: converge ${result.outcome}`);
    const observed = await node.kernel.dump();
    const reports = await node.worker.publish(prepared, observed, ownerOf, new Map());
    if (reports !== undefined) {
      node.reports = reports;
      node.worker.committed();
    }
    return result.plan.steps.length;
  }

  /** Passes on every node in turn, checking `lossless` after each, until a whole round changes nothing. */
  async settle(maxRounds = 20, advanceMs = 1000, options: { check?: boolean } = {}): Promise<number> {
    for (let round = 1; round <= maxRounds; round++) {
      let changes = 0;
      const before = JSON.stringify(this.nodes.map((n) => n.reports));
      for (const node of this.nodes) {
        changes += await this.pass(node);
        const loss = options.check === false ? [] : this.lossless();
        if (loss.length > 0) throw new Error(`after a pass of ${node.name} in round ${round}: ${loss.join('; ')}`);
      }
      this.clock += advanceMs;
      if (changes === 0 && JSON.stringify(this.nodes.map((n) => n.reports)) === before) return round;
    }
    throw new Error(`the mesh did not settle in ${maxRounds} rounds`);
  }

  report(name: string): NodeMeshReport | undefined {
    return this.node(name).reports?.find((r) => r.uid === this.mesh?.metadata.uid);
  }

  /** Every pinned outbound SA has its twin at the receiver. Returns the broken links. */
  lossless(): string[] {
    const problems: string[] = [];
    const byAddress = new Map(this.nodes.map((n) => [n.address, n]));
    for (const sender of this.nodes) {
      for (const policy of sender.kernel.policies) {
        if (policy.id.direction !== 'out') continue;
        for (const template of policy.templates) {
          if (template.spi === 0) continue;
          const out = sender.kernel.states.find((sa) => sa.id.spi === template.spi && sa.source === sender.address);
          if (!out) {
            problems.push(`${sender.name} pins SPI ${template.spi} without an SA`);
            continue;
          }
          const receiver = byAddress.get(out.id.destination);
          const twin = receiver?.kernel.states.find((sa) => sa.id.spi === out.id.spi && sa.id.destination === out.id.destination && sa.source === out.source);
          if (!twin) problems.push(`${sender.name} sends on SPI ${out.id.spi} to ${receiver?.name ?? out.id.destination}, which has no such SA`);
          else if (!keyBytes(twin).equals(keyBytes(out))) problems.push(`${sender.name} -> ${receiver!.name} SPI ${out.id.spi}: the keys differ`);
        }
      }
    }
    return problems;
  }
}

export function keyBytes(sa: SecurityAssociation): Buffer {
  if (sa.algorithms.kind !== 'aead') throw new Error('not an AEAD SA');
  return sa.algorithms.aead.key.reveal();
}
