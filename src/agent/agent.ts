/**
 * The node agent: keeps one node's XFRM tables equal to the resources that select it.
 *
 * Level-based, one key: every trigger (a watched object changed, a kernel event someone else
 * caused, a lost event, the resync timer) enqueues `node`, and one worker reconciles the whole
 * node from the caches (./node-reconciler.ts). Kernel events caused by our own socket are
 * ignored; any other change to the tables is drift, repaired by the very next reconcile.
 *
 * Fail static: until every cache has synced once, nothing is reconciled, so an agent that
 * starts while the API server is unreachable leaves the kernel exactly as it is. Afterwards
 * the caches keep their last content through outages (the informers reconnect with backoff),
 * so the kernel stays as last desired. A restart removes nothing: ownership lives in the
 * ledger on the node, and the first reconcile after start finds nothing to change.
 */
import { release } from 'node:os';
import { Registry } from 'prom-client';
import type { KubeConfig, V1Node, V1Secret } from '@kubernetes/client-node';
import { IpsecResources, coreListerWatcher } from '../kube/client.js';
import { Informer } from '../kube/informer.js';
import { WorkQueue } from '../kube/workqueue.js';
import { runWorkers } from '../kube/reconcile.js';
import { runInOrder, type Runnable } from '../kube/runnables.js';
import { cachesRunnable, healthServerRunnable, loopRunnable } from '../kube/components.js';
import { createOperatorMetrics } from '../kube/metrics.js';
import { HealthServer } from '../kube/health.js';
import type { Condition } from '../kube/conditions.js';
import type { Logger } from '../kube/logger.js';
import type { IpsecPolicyResource, SecurityAssociationResource } from '../crd/types.js';
import type { IpsecNodeState, IpsecNodeStateSpec } from '../crd/node-state.js';
import { openKernelTables, type OpenKernelTables } from '../engine/kernel.js';
import { readDevices } from '../engine/devices.js';
import { Ledger, ledgerPath } from '../ownership/ledger.js';
import { XfrmMonitor } from '../xfrm/monitor.js';
import { isOwnEvent, type XfrmEvent } from '../xfrm/events.js';
import { inboundStateKeys, type ObservedTables } from '../plan/planner.js';
import { stateKey } from '../plan/identity.js';
import { nodeStateStatus } from './node-state-report.js';
import { reconcileNode, type NodeInputs, type NodeReconcileResult } from './node-reconciler.js';
import { AgentMetrics } from './agent-metrics.js';
import { AgentEncapSockets } from './encap-sockets.js';
import { readXfrmStat, supportedAlgorithms } from './kernel-info.js';
import { VERSION } from '../version.js';

export interface AgentOptions {
  readonly kubeConfig: KubeConfig;
  readonly nodeName: string;
  /** The operator's namespace: key Secrets are read from it only. */
  readonly namespace: string;
  readonly stateDirectory: string;
  /** Reconcile this named network namespace instead of the process's own (tests, local runs). */
  readonly netns: string | undefined;
  readonly metricsAddress: string;
  readonly resyncSeconds: number;
  readonly perSaMetrics: boolean;
  readonly logger: Logger;
  /** Aborting it stops the agent (SIGTERM, SIGINT). */
  readonly signal: AbortSignal;
  /** Bound on the whole shutdown; default ../kube/runnables.ts DEFAULT_SHUTDOWN_GRACE_MS. */
  readonly shutdownGraceMs?: number;
}

const KEY = 'node';
const FIELD_MANAGER = 'ipsec-operator-agent';

export async function runAgent(options: AgentOptions): Promise<void> {
  const { logger, nodeName, netns } = options;
  const registry = new Registry();
  const operatorMetrics = createOperatorMetrics(registry);
  const metrics = new AgentMetrics(registry, { perSaMetrics: options.perSaMetrics, readXfrmStat: () => readXfrmStat(netns) });
  // The UDP sockets the kernel needs to receive ESP in UDP (NAT-T) for the SAs we own.
  const encapSockets = new AgentEncapSockets({ netns, registry, logger });

  const kernel = kernelRunnable(netns, ledgerPath(options.stateDirectory, netns));

  const resources = new IpsecResources(options.kubeConfig);
  const informerOptions = (resource: string) => ({ logger, hooks: operatorMetrics.informerHooks(resource) });
  const securityAssociations = resources.informer<SecurityAssociationResource>('securityassociations', informerOptions('securityassociations'));
  const policies = resources.informer<IpsecPolicyResource>('ipsecpolicies', informerOptions('ipsecpolicies'));
  const secrets = new Informer<V1Secret>(coreListerWatcher(options.kubeConfig, 'secrets', { namespace: options.namespace }), { resource: 'secrets', ...informerOptions('secrets') });
  const nodes = new Informer<V1Node>(coreListerWatcher(options.kubeConfig, 'nodes', { fieldSelector: `metadata.name=${nodeName}` }), { resource: 'nodes', ...informerOptions('nodes') });
  const informers = [securityAssociations, policies, secrets, nodes];

  const queue = new WorkQueue({ name: 'agent', hooks: operatorMetrics.queueHooks('agent') });
  const trigger = () => queue.add(KEY);
  for (const informer of informers) informer.addHandlers({ add: trigger, update: trigger, delete: trigger });

  const health = new HealthServer({ address: options.metricsAddress, registry, logger });
  health.addReadinessCheck('caches-synced', () => informers.every((informer) => informer.hasSynced()) || 'waiting for the first list of every resource');
  health.addReadinessCheck('kernel-synced', () => lastSync !== undefined || 'the kernel has not been reconciled yet');

  const lastSequence = new Map<string, bigint>();
  /** Resources set aside as KernelDidNotKeep until they change (see NodeInputs.notKept). */
  const notKept: NonNullable<NodeInputs['notKept']> = new Map();
  let driftSuspected = false;
  /** When the first unexplained kernel event of the current drift arrived (for the log). */
  let driftSince: number | undefined;
  let driftRepairs = 0;
  let lastSync: Date | undefined;
  let conditions: Condition[] = [];
  const nodeStates = resources.statusWriter(FIELD_MANAGER);

  // Kernel events: anything not caused by our own socket may be drift; lost events likewise.
  const onKernelEvent = (event: XfrmEvent): void => {
    const { tables, ledger } = kernel.handles();
    if (event.kind === 'state-expired') {
      if (ledger.records().has(stateKey(event.state.id))) metrics.expireEvents.inc({ kind: event.hard ? 'hard' : 'soft' });
      if (!event.hard) return;
    }
    if (event.kind === 'overrun' || !isOwnEvent(event, tables.portId)) {
      driftSuspected = true;
      driftSince ??= Date.now();
      trigger();
    }
  };

  const reconcile = async (): Promise<{ requeueAfter: number }> => {
    const { tables, ledger } = kernel.handles();
    if (!informers.every((informer) => informer.hasSynced())) return { requeueAfter: 1000 };
    const node = nodes.get(nodeName);
    if (!node) {
      // Without our Node we cannot evaluate nodeSelectors; acting would mean guessing.
      logger.warn('node object not found; leaving the kernel as it is', { node: nodeName });
      return { requeueAfter: 5000 };
    }
    const resourcesNow = [...securityAssociations.list(), ...policies.list()];
    // Listing interfaces spawns `ip`; only pay for it when a selector names a device, so a
    // drift repair is not slowed down by it.
    const needsDevices = resourcesNow.some((resource) => resource.spec.selector?.device !== undefined);
    const devices = needsDevices ? await readDevices(netns) : { indexByName: new Map<string, number>() };
    const suspected = driftSuspected;
    const since = driftSince;
    driftSuspected = false;
    driftSince = undefined;
    const result = await reconcileNode(
      {
        resources: resourcesNow,
        secrets: secretValues(secrets.list()),
        nodeLabels: node.metadata?.labels ?? {},
        resolveDevice: (name) => devices.indexByName.get(name),
        lastSequence,
        notKept,
      },
      tables,
      ledger,
    );
    metrics.recordApply(result.applied, result.failures);
    if (suspected && result.changes > 0) {
      driftRepairs += result.changes;
      metrics.driftRepairs.inc(result.changes);
      // elapsedMs: from the kernel event that revealed the drift to the repair being applied.
      logger.warn('repaired drift: owned kernel entries had been changed or removed by someone else', {
        changes: result.changes,
        ...(since === undefined ? {} : { elapsedMs: Date.now() - since }),
      });
    }
    if (result.converged) {
      lastSync = new Date();
      metrics.lastSync.set(lastSync.getTime() / 1000);
    }
    metrics.resourcesFailed.set(result.reports.filter((report) => report.state === 'Failed').length);
    // One dump after the reconcile serves the metrics, the sequence bookkeeping and the node state.
    const observed = await tables.dump();
    recordTables(observed, ledger, metrics, lastSequence);
    encapSockets.sync(observed.states, (sa) => ledger.records().get(stateKey(sa.id))?.resource);
    await writeNodeState(result, observed, ledger);
    return { requeueAfter: options.resyncSeconds * 1000 };
  };

  const writeNodeState = async (result: NodeReconcileResult, observed: ObservedTables, ledger: Ledger): Promise<void> => {
    const status = nodeStateStatus({
      converged: result.converged,
      reports: result.reports,
      kernelStates: observed.states.length,
      kernelPolicies: observed.policies.length,
      owned: ledger.records().values(),
      lastSync,
      conditions,
      now: new Date(),
      agentVersion: VERSION,
      kernelRelease: release(),
      algorithms: await supportedAlgorithms(),
      driftRepairs,
      encapsulationSockets: encapSockets.reports(),
    });
    conditions = status.conditions;
    const existing = await resources.get<IpsecNodeState>('ipsecnodestates', nodeName);
    if (!existing) await resources.apply('ipsecnodestates', { metadata: { name: nodeName }, spec: { nodeName } satisfies IpsecNodeStateSpec }, FIELD_MANAGER);
    await nodeStates.write('ipsecnodestates', nodeName, existing?.status, { ...status });
  };

  // Start order: the kernel socket and the ledger lock first (an agent that cannot open them
  // must not start, and must say so before waiting on the API server); then the probes; then
  // the caches (nothing is reconciled from a partial view); then the kernel monitor, so that
  // no event falls between the first reconcile's dump and the monitor; the workers last.
  // Shutdown runs the other way: the workers finish their reconcile before the monitor, the
  // caches and the ledger go.
  try {
    await runInOrder(
      [
        kernel,
        healthServerRunnable(health),
        cachesRunnable(informers),
        kernelMonitorRunnable(netns, onKernelEvent),
        loopRunnable(
          'workers',
          (signal) => runWorkers(queue, 1, reconcile, { controller: 'agent', logger, hooks: operatorMetrics.reconcileHooks('agent'), signal }),
          {
            onStart: () => {
              trigger(); // each reconcile requeues itself after resyncSeconds: the periodic full resync
              logger.info('agent started', { node: nodeName, netns: netns ?? '(host)', version: VERSION });
            },
          },
        ),
      ],
      options.signal,
      { logger, ...(options.shutdownGraceMs === undefined ? {} : { shutdownGraceMs: options.shutdownGraceMs }) },
    );
  } finally {
    queue.shutDown();
    encapSockets.closeAll();
  }
  logger.info('agent stopped; the kernel keeps its entries');
}

interface KernelHandles {
  readonly tables: OpenKernelTables;
  readonly ledger: Ledger;
}

/** The request socket and the ledger (locked while the agent runs). */
function kernelRunnable(netns: string | undefined, path: string): Runnable & { handles(): KernelHandles } {
  let tables: OpenKernelTables | undefined;
  let ledger: Ledger | undefined;
  return {
    name: 'kernel socket and ownership ledger',
    async start() {
      tables = await openKernelTables(netns);
      // A CLI apply on the node may hold the lock for a while: wait it out instead of crash-looping.
      ledger = await Ledger.open(path, { scope: tables.scope, lockWaitMs: 30_000 });
    },
    async stop() {
      try {
        await ledger?.close();
      } finally {
        tables?.close();
      }
    },
    handles() {
      if (tables === undefined || ledger === undefined) throw new Error('the kernel socket and the ledger are not open yet');
      return { tables, ledger };
    },
  };
}

/**
 * Kernel events on a socket of their own. The stream ending or failing while the agent runs
 * means drift could go unseen: that stops the agent (and its pod restarts it) rather than
 * leaving it running blind.
 */
function kernelMonitorRunnable(netns: string | undefined, onEvent: (event: XfrmEvent) => void): Runnable {
  let monitor: XfrmMonitor | undefined;
  let reading: Promise<void> | undefined;
  return {
    name: 'kernel monitor',
    start() {
      const opened = XfrmMonitor.open(netns === undefined ? {} : { netns });
      monitor = opened;
      reading = (async () => {
        for await (const event of opened) onEvent(event);
      })();
      reading.catch(() => undefined); // reported through done()
    },
    done: () => reading ?? Promise.resolve(),
    async stop() {
      monitor?.close();
      await reading?.catch(() => undefined);
    },
  };
}

/** The Secrets' data, decoded, by Secret name and key. Values are never logged. */
function secretValues(secrets: readonly V1Secret[]): Map<string, Map<string, Buffer>> {
  return new Map(
    secrets.map((secret) => [
      secret.metadata?.name ?? '',
      new Map(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')])),
    ]),
  );
}

function recordTables(observed: ObservedTables, ledger: Ledger, metrics: AgentMetrics, lastSequence: Map<string, bigint>): void {
  for (const sa of observed.states) {
    const replay = sa.observed?.replayState;
    if (!replay || !ledger.records().has(stateKey(sa.id))) continue;
    const sequence = (BigInt(replay.outboundSequenceHigh) << 32n) | BigInt(replay.outboundSequence);
    lastSequence.set(stateKey(sa.id), sequence > (lastSequence.get(stateKey(sa.id)) ?? 0n) ? sequence : lastSequence.get(stateKey(sa.id))!);
  }
  metrics.recordTables({
    ...observed,
    owned: ledger.records(),
    inboundStates: inboundStateKeys({ desired: { states: [], policies: [] }, observed }),
    nowSeconds: Math.floor(Date.now() / 1000),
  });
}

