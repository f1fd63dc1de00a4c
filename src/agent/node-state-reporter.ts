/**
 * Writes this node's IpsecNodeState after each reconcile: creates the object when missing
 * (spec.nodeName only) and server-side-applies the status computed by ./node-state-report.ts.
 * It keeps the conditions last written, so that lastTransitionTime moves only on a change,
 * and the status last written: a reconcile that finds nothing new (the status equal to it,
 * times kept until the heartbeat, see ./node-state-report.ts) sends no request at all. Once a
 * heartbeat it reads the object back and writes, so one deleted or changed by someone else is
 * put right within HEARTBEAT_SECONDS.
 *
 * As a runnable it starts before the workers and stops after them: a report is only ever
 * written by a running agent, and a report asked for after stop is refused rather than sent
 * to an API server the agent has stopped talking to.
 */
import { release } from 'node:os';
import type { IpsecResources, IpsecStatusWriter } from '../kube/client.js';
import type { Condition } from '../kube/conditions.js';
import { statusEqual } from '../kube/status.js';
import type { Runnable } from '../kube/runnables.js';
import type { IpsecNodeState, IpsecNodeStateSpec, IpsecNodeStateStatus } from '../crd/node-state.js';
import { nodeStateStatus, type NodeStateInputs } from './node-state-report.js';
import { supportedAlgorithms } from './kernel-info.js';
import { VERSION } from '../version.js';

export const AGENT_FIELD_MANAGER = 'ipsec-operator-agent';

/** What a reconcile knows; the reporter adds the node's constants and the conditions. */
export type NodeStateFacts = Omit<NodeStateInputs, 'conditions' | 'now' | 'agentVersion' | 'kernelRelease' | 'algorithms' | 'previous' | 'heartbeatSeconds'>;

export class NodeStateReporter {
  readonly runnable: Runnable;
  private conditions: Condition[] = [];
  /** The status this agent last wrote (or found equal on the server). */
  private written: IpsecNodeStateStatus | undefined;
  private stopped = false;
  private readonly statusWriter: IpsecStatusWriter;

  constructor(
    private readonly resources: IpsecResources,
    private readonly nodeName: string,
  ) {
    this.statusWriter = resources.statusWriter(AGENT_FIELD_MANAGER);
    this.runnable = {
      name: 'node-state reporter',
      start: () => {
        this.stopped = false;
      },
      stop: () => {
        this.stopped = true;
      },
    };
  }

  async report(facts: NodeStateFacts): Promise<void> {
    if (this.stopped) throw new Error('the node-state reporter has stopped');
    // Mesh reports unknown this pass (the mesh caches have not synced): the ones last written
    // stay. Withdrawing them would tell every peer this node left its meshes. After a restart
    // they are read back from the API server.
    let existing: IpsecNodeState | undefined | null = null;
    let meshes = facts.meshes;
    if (meshes === undefined) {
      if (this.written === undefined) {
        existing = await this.resources.get<IpsecNodeState>('ipsecnodestates', this.nodeName);
        meshes = existing?.status?.meshes;
      } else meshes = this.written.meshes;
    }
    const status = nodeStateStatus({
      ...facts,
      ...(meshes !== undefined ? { meshes } : {}),
      conditions: this.conditions,
      now: new Date(),
      agentVersion: VERSION,
      kernelRelease: release(),
      algorithms: await supportedAlgorithms(),
      previous: this.written,
    });
    this.conditions = status.conditions;
    if (this.written !== undefined && statusEqual(this.written, status)) return;
    if (existing === null) existing = await this.resources.get<IpsecNodeState>('ipsecnodestates', this.nodeName);
    if (!existing) await this.resources.apply('ipsecnodestates', { metadata: { name: this.nodeName }, spec: { nodeName: this.nodeName } satisfies IpsecNodeStateSpec }, AGENT_FIELD_MANAGER);
    await this.statusWriter.write('ipsecnodestates', this.nodeName, existing?.status, { ...status });
    this.written = status;
  }
}
