/**
 * One reconcile pass of the agent, the work-queue workers' job: from the caches to the kernel,
 * then the bookkeeping that one kernel dump after the pass serves (metrics, the encapsulation
 * sockets, the node state). Sequence marks are the engine's (../engine/sequence-rule.ts): it
 * persists them in the ledger from its own dumps; between passes the kernel's reports do
 * (./sequence-watch.ts), for the owned SAs of the last dump.
 *
 * Level-based, two keys: `node` reconciles the whole node (every cache change, the resync, a
 * drift event that names no identity); `drift` repairs just the identities kernel events named
 * (./drift-watch.ts, ./drift-repair.ts) against what the last full pass desired, and hands
 * anything it cannot settle alone to a full pass. A pass before every cache has synced does
 * nothing and comes back later (fail static).
 *
 * A drift event that arrives while a full pass runs does not wait for the whole pass (up to a
 * second at 10,000 entries): the pass lets the pending targeted repair run at its safe points,
 * where the repair's result cannot be lost or applied twice (see `safePoint`). The ledger's
 * compaction runs after the pass, off the repair's path.
 */
import type { Logger } from '../kube/logger.js';
import type { OpenKernelTables } from '../engine/kernel.js';
import type { KernelTables } from '../engine/converge.js';
import { readDevices } from '../engine/devices.js';
import type { Ledger } from '../ownership/ledger.js';
import { inboundStateKeys, type ObservedTables } from '../plan/planner.js';
import { stateKey } from '../plan/identity.js';
import { retiredUsage } from '../engine/sequence-rule.js';
import { describeState } from '../plan/describe.js';
import type { ExpiredState, SecurityAssociation } from '../xfrm/types.js';
import { reconcileNode, type NodeInputs, type NodeReconcileResult } from './node-reconciler.js';
import type { AgentMetrics } from './agent-metrics.js';
import type { AgentEncapSockets } from './encap-sockets.js';
import type { NodeCaches } from './node-caches.js';
import type { KernelAccess } from './kernel-access.js';
import type { Concern, DriftWatch, TouchedIdentity } from './drift-watch.js';
import { concernOf, repairBasis, repairTouched, targetedInputs, touchedStateKeys, type RepairBasis, type TargetedRepair } from './drift-repair.js';
import type { NodeStateReporter } from './node-state-reporter.js';
import type { SequenceWatch } from './sequence-watch.js';
import type { AgentEvents } from './agent-events.js';
import { UsageRetention } from '../ownership/retention.js';
import type { MeshWorker } from './mesh-worker.js';

/** The work queue's key of a full pass: the whole node is reconciled at once. */
export const NODE_KEY = 'node';
/** The work queue's key of a targeted drift repair: the identities the drift watch gathered. */
export const DRIFT_KEY = 'drift';
/** How soon a pass that found the caches unsynced or our Node missing comes back. */
export const UNSYNCED_RETRY_MS = 1000;
export const NODE_MISSING_RETRY_MS = 5000;

export interface NodeWorkerParts {
  readonly nodeName: string;
  readonly netns: string | undefined;
  readonly resyncSeconds: number;
  readonly logger: Logger;
  readonly caches: Pick<NodeCaches, 'snapshot'>;
  readonly kernel: Pick<KernelAccess, 'handles'>;
  readonly drift: DriftWatch;
  readonly metrics: AgentMetrics;
  readonly encapSockets: AgentEncapSockets;
  readonly reporter: Pick<NodeStateReporter, 'report'>;
  /** Told the owned SAs of each pass's dump, whose AEVENTS reports become marks (./sequence-watch.ts). */
  readonly sequences?: Pick<SequenceWatch, 'track' | 'retrack'>;
  /** Queues a full pass (a targeted repair that leaves work to one); absent: it runs at once. */
  readonly requestFull?: () => void;
  /** Events on resources whose key this node will not install again (./agent-events.ts). */
  readonly events?: Pick<AgentEvents, 'reports'>;
  /** How long the usage history keeps an unused key (../ownership/retention.ts); default its USAGE_RETENTION_SECONDS. */
  readonly usageRetentionSeconds?: number;
  /** The IpsecMeshes' part of each pass (./mesh-worker.ts); absent: no mesh work. */
  readonly mesh?: Pick<MeshWorker, 'prepare' | 'publish' | 'committed'>;
}

export class NodeWorker {
  /** Resources set aside as KernelDidNotKeep until they change (see NodeInputs.notKept). */
  private readonly notKept: NonNullable<NodeInputs['notKept']> = new Map();
  private lastSyncAt: Date | undefined;
  private readonly retention: UsageRetention;
  /**
   * The SAs of the last pass's dump, by identity key: an expiry names an SA without its key
   * (ExpiredState), and the key is what the usage history retires.
   */
  private lastStates = new Map<string, SecurityAssociation>();
  /** Bumped on every change of what the desired tables are built from (desiredChanged). */
  private generation = 0;
  /** What the last full pass desired, for targeted repairs, and the generation it was built from. */
  private basis: (RepairBasis & { readonly generation: number }) | undefined;

  constructor(private readonly parts: NodeWorkerParts) {
    this.retention = new UsageRetention(parts.usageRetentionSeconds);
  }

  /** When the kernel last matched everything that could be applied (readiness, node state). */
  get lastSync(): Date | undefined {
    return this.lastSyncAt;
  }

  /**
   * The caches (or the meshes) changed: the desired tables of the last full pass may be stale,
   * so targeted repairs wait for the full pass that the change queued.
   */
  desiredChanged(): void {
    this.generation += 1;
  }

  /**
   * The drift watch's filter: whether an identity someone else touched is ours (./drift-repair.ts
   * concernOf). Once what the desired tables are built from changed, and until a full pass built
   * them again from the changed caches, only the ledger can say an identity is ours: anything
   * else may be newly desired and asks for a full pass. A full pass running from unchanged
   * caches builds the same tables as the basis, so another program's churn meanwhile (an IKE
   * daemon's rekeys) still queues nothing.
   */
  concern(touched: TouchedIdentity): Concern {
    const fresh = this.basis !== undefined && this.basis.generation === this.generation;
    return concernOf(touched, fresh ? this.basis : undefined, this.parts.kernel.handles().ledger.records());
  }

  async reconcile(key: string = NODE_KEY): Promise<{ requeueAfter?: number }> {
    if (key === DRIFT_KEY) return this.repairDrift();
    return this.fullPass(this.generation);
  }

  /**
   * A full pass's safe point: a targeted repair the drift watch holds runs now, inline (the
   * queue's `drift` key, run after the pass, then finds nothing). The pass calls it only where
   * it has no kernel change of its own in flight and none planned from an older dump:
   * - before its (first) dump, as long as it applied nothing: the dump then shows the repair's
   *   result and the ledger its settled records, so the plan neither undoes nor repeats it;
   * - after reconcileNode returned (its changes applied, verified, settled; the basis rebuilt):
   *   the repair plans against this pass's desired tables, the pass's later dump shows it;
   * - after that dump and its bookkeeping, before the report (an API call).
   * One writer still: the repair is awaited by the pass, never run beside it. A repair left to a
   * full pass queues one (never nested in this one); one whose basis is stale (the caches
   * changed) stays gathered for the `drift` key after the pass, whose basis is then fresh.
   */
  private async safePoint(): Promise<void> {
    // One turn of the event loop first: the monitor's events read meanwhile are observed.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!this.parts.drift.repairPending) return;
    await this.repairDrift({ inline: true });
  }

  /**
   * A targeted drift repair (./drift-repair.ts): the identities gathered, read, planned and
   * applied alone. Without a fresh basis (no full pass yet, the caches changed since) it leaves
   * them to the full pass that is queued; when the repair leaves anything to a full pass (a
   * conflict to report, a mesh entry, an error), it queues one and hands the identities back.
   */
  private async repairDrift(how: { readonly inline?: boolean } = {}): Promise<{ requeueAfter?: number }> {
    const { kernel, drift, metrics, logger } = this.parts;
    const taken = drift.takeTouched();
    if (taken === undefined) return {};
    const basis = this.basis;
    if (basis === undefined || basis.generation !== this.generation) {
      drift.putBackTouched(taken);
      return {};
    }
    const { tables, ledger } = kernel.handles();
    const inputs = targetedInputs(taken.touched, basis, ledger.records());
    if ('full' in inputs) {
      logger.debug('drift left to a full reconcile', { why: inputs.full });
      drift.putBackTouched(taken);
      return this.fullInstead(how);
    }
    const expired = drift.takeExpired();
    try {
      await retireExpired(expired, (state) => dumpedIncarnation(this.lastStates, state), ledger, logger);
    } catch (error) {
      drift.putBackExpired(expired);
      drift.putBackTouched(taken);
      throw error;
    }
    let repair: TargetedRepair;
    try {
      repair = await repairTouched(inputs, basis, tables, ledger);
    } catch (error) {
      logger.warn('targeted drift repair failed; a full reconcile follows', { error: error instanceof Error ? error.message : String(error) });
      drift.putBackTouched(taken);
      return this.fullInstead(how);
    }
    metrics.recordApply(repair.applied, repair.failures);
    metrics.driftRepairPasses.inc({ path: 'targeted' });
    if (repair.changes > 0) {
      drift.repaired(repair.changes);
      metrics.driftRepairs.inc(repair.changes);
      logger.warn('repaired drift: owned kernel entries had been changed or removed by someone else', {
        changes: repair.changes,
        path: 'targeted',
        identities: inputs.keys.size,
        elapsedMs: Date.now() - taken.since,
      });
    }
    try {
      await this.refreshStates(inputs, tables);
    } catch {
      repair = { ...repair, full: repair.full ?? 'the repaired SAs could not be read back for the bookkeeping' };
    }
    if (repair.full !== undefined) {
      logger.info('targeted drift repair leaves the rest to a full reconcile', { why: repair.full });
      drift.putBackTouched(taken);
      return this.fullInstead(how);
    }
    return {};
  }

  /** Queues the full pass, or (no queue: tests) runs it now. */
  private async fullInstead(how: { readonly inline?: boolean }): Promise<{ requeueAfter?: number }> {
    if (this.parts.requestFull) {
      this.parts.requestFull();
      return {};
    }
    // Inside a full pass (no queue): the identities stay gathered; the caller's next pass takes them.
    if (how.inline) return {};
    await this.reconcile(NODE_KEY);
    return {};
  }

  /**
   * After a targeted repair of SAs: what the last dump showed of them is replaced by what the
   * kernel holds now (an expiry of an SA added again must find its key, ./node-worker.ts
   * retireExpired; its sequence reports must count, ./sequence-watch.ts). One GETSA each.
   */
  private async refreshStates(inputs: Parameters<typeof touchedStateKeys>[0], tables: Pick<OpenKernelTables, 'read'>): Promise<void> {
    const keys = touchedStateKeys(inputs);
    if (keys.size === 0) return;
    const now = await tables.read({ states: inputs.ids.states, policies: [] });
    for (const key of keys) this.lastStates.delete(key);
    const found = now.states.filter((sa) => keys.has(stateKey(sa.id)));
    for (const sa of found) this.lastStates.set(stateKey(sa.id), sa);
    this.parts.sequences?.retrack(keys, found);
  }

  private async fullPass(generation: number): Promise<{ requeueAfter: number }> {
    const { caches, kernel, drift, metrics, encapSockets, logger, netns } = this.parts;
    const view = caches.snapshot();
    if (view === undefined) return { requeueAfter: UNSYNCED_RETRY_MS };
    if (!view.node) {
      // Without our Node we cannot evaluate nodeSelectors; acting would mean guessing.
      logger.warn('node object not found; leaving the kernel as it is', { node: this.parts.nodeName });
      return { requeueAfter: NODE_MISSING_RETRY_MS };
    }
    const { tables, ledger } = kernel.handles();
    // Listing interfaces spawns `ip`; only pay for it when a selector names a device, so a
    // drift repair is not slowed down by it.
    const needsDevices = view.resources.some((resource) => resource.spec.selector?.device !== undefined);
    const devices = needsDevices ? await readDevices(netns) : { indexByName: new Map<string, number>() };
    const suspicion = drift.take();
    const expired = drift.takeExpired();
    try {
      await retireExpired(expired, (state) => dumpedIncarnation(this.lastStates, state), ledger, logger);
    } catch (error) {
      drift.putBackExpired(expired);
      throw error;
    }
    const ownerOf = (key: string) => ledger.records().get(key)?.resource;
    const meshPass = await this.parts.mesh?.prepare(tables, ownerOf, [...ledger.records().values()].map((record) => record.resource));
    const result = await reconcileNode(
      {
        ...(meshPass ? { extra: { desired: meshPass.desired, protect: meshPass.protect } } : {}),
        resources: view.resources,
        secrets: view.secrets,
        nodeLabels: view.node.metadata?.labels ?? {},
        resolveDevice: (name) => devices.indexByName.get(name),
        notKept: this.notKept,
      },
      withSafePointBeforeDump(tables, () => this.safePoint()),
      ledger,
    );
    metrics.recordApply(result.applied, result.failures);
    this.basis = { ...repairBasis(result.basis.desired, result.basis.protect, new Set(result.setAside.keys()), ledger.records()), generation };
    await this.safePoint();
    if (suspicion.suspected) metrics.driftRepairPasses.inc({ path: 'full' });
    if (suspicion.suspected && result.changes > 0) {
      drift.repaired(result.changes);
      metrics.driftRepairs.inc(result.changes);
      // elapsedMs: from the kernel event that revealed the drift to the repair being applied.
      logger.warn('repaired drift: owned kernel entries had been changed or removed by someone else', {
        changes: result.changes,
        path: 'full',
        ...(suspicion.since === undefined ? {} : { elapsedMs: Date.now() - suspicion.since }),
      });
    }
    if (result.converged) {
      this.lastSyncAt = new Date();
      metrics.lastSync.set(this.lastSyncAt.getTime() / 1000);
    }
    metrics.resourcesFailed.set(result.reports.filter((report) => report.state === 'Failed').length);
    metrics.recordRekeyRequired(result.reports);
    this.parts.events?.reports(result.reports, view.resources);
    // One dump after the reconcile serves the metrics and the node state.
    const observed = await tables.dump();
    this.lastStates = new Map(observed.states.map((sa) => [stateKey(sa.id), sa]));
    this.recordTables(observed, ledger);
    this.parts.sequences?.track(observed.states);
    await this.forgetUnusedKeys(result.desiredKeys, observed, ledger);
    encapSockets.sync(observed.states, (sa) => ledger.records().get(stateKey(sa.id))?.resource);
    const meshes = meshPass ? await this.parts.mesh!.publish(meshPass, observed, ownerOf, result.setAside) : undefined;
    await this.safePoint();
    await this.parts.reporter.report({
      ...(meshes !== undefined ? { meshes } : {}),
      converged: result.converged,
      reports: result.reports,
      kernelStates: observed.states.length,
      kernelPolicies: observed.policies.length,
      owned: ledger.records().values(),
      lastSync: this.lastSyncAt,
      driftRepairs: drift.totalRepairs,
      encapsulationSockets: encapSockets.reports(),
    });
    if (meshes !== undefined) {
      this.parts.mesh!.committed();
      metrics.mesh.record(meshes);
    }
    // At the end, where a rewrite of the whole snapshot delays no repair (../ownership/ledger.ts deferCompaction).
    await ledger.compactIfDue();
    return { requeueAfter: this.parts.resyncSeconds * 1000 };
  }

  /** The usage history's retention: keys no desired SA and no kernel SA has used for long go. */
  private async forgetUnusedKeys(desired: NodeReconcileResult['desiredKeys'], observed: ObservedTables, ledger: Ledger): Promise<void> {
    const inUse = new Set([...desired.states, ...observed.states].map((sa) => ledger.usageKey(sa)));
    const forget = this.retention.review({ entries: ledger.usageEntries().values(), inUse, complete: desired.complete, now: Math.floor(Date.now() / 1000) });
    if (forget.length === 0) return;
    await ledger.commit({ forget });
    this.parts.logger.info('forgot the usage history of keys unused for longer than the retention', { keys: forget.length });
  }

  private recordTables(observed: ObservedTables, ledger: Ledger): void {
    this.parts.metrics.recordTables({
      ...observed,
      owned: ledger.records(),
      inboundStates: inboundStateKeys({ desired: { states: [], policies: [] }, observed }),
      nowSeconds: Math.floor(Date.now() / 1000),
    });
  }
}

/**
 * The kernel as a full pass's reconcile sees it, with the safe point before its dumps: each
 * dump first lets a pending targeted repair run, until the pass applies anything (a dump after
 * that verifies the pass's own changes, whose intents a repair must not plan around).
 */
export function withSafePointBeforeDump(tables: KernelTables & Required<Pick<KernelTables, 'read'>>, safePoint: () => Promise<void>): KernelTables & Required<Pick<KernelTables, 'read'>> {
  let applied = false;
  return {
    ...(tables.features ? { features: tables.features } : {}),
    dump: async () => {
      if (!applied) await safePoint();
      return tables.dump();
    },
    read: (ids) => tables.read(ids),
    apply: (changes) => {
      applied = true;
      return tables.apply(changes);
    },
  };
}

/**
 * The SA of a dump that an expiry is about: same identity and same add time (the same
 * incarnation, not one added again since), or undefined.
 */
export function dumpedIncarnation(dumped: ReadonlyMap<string, SecurityAssociation>, expired: ExpiredState): SecurityAssociation | undefined {
  const sa = dumped.get(stateKey(expired.id));
  const addTime = expired.observed?.current.addTime;
  return sa && addTime !== undefined && sa.observed?.current.addTime === addTime ? sa : undefined;
}

/**
 * Before the repair a hard expiry triggers: the expired SAs' keys are retired in the ledger, so
 * the repair reports them Expired instead of installing them again. The kernel's EXPIRE carries
 * no key, so each is found in the last dump (`known`); one added and expired between two dumps
 * is not, and is logged: for an add-time limit the sequence rule's deadline (counted from the
 * first install) refuses the key anyway. Should the write fail, the pass fails and is retried
 * (the caller puts the expiries back), never repairs without it.
 */
async function retireExpired(expired: readonly ExpiredState[], known: (state: ExpiredState) => SecurityAssociation | undefined, ledger: Ledger, logger: Logger): Promise<void> {
  if (expired.length === 0) return;
  const now = Math.floor(Date.now() / 1000);
  const found: SecurityAssociation[] = [];
  for (const state of expired) {
    const sa = known(state);
    if (sa) found.push(sa);
    else logger.warn('an owned SA reached its hard lifetime but was not in the last dump, so its key is not known to retire', { sa: describeState(state) });
  }
  if (found.length === 0) return;
  const usage = found.map((sa) => {
    const key = ledger.usageKey(sa);
    return retiredUsage(key, ledger.usage(key), 'expired', 'the kernel removed this key at its hard lifetime', now);
  });
  await ledger.commit({ usage });
  for (const sa of found) logger.warn('an owned SA reached its hard lifetime; its key is not installed again (Expired)', { sa: describeState(sa) });
}

