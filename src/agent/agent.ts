/**
 * The node agent: keeps one node's XFRM tables equal to the resources that select it.
 *
 * Level-based, two keys: a watched object changed, a lost event or the resync timer enqueue
 * `node`, and one worker reconciles the whole node from the caches (./node-worker.ts,
 * ./node-reconciler.ts). Kernel events caused by our own socket are ignored; another
 * program's change to an identity of ours enqueues `drift`, a targeted repair of just the
 * identities the events named (./drift-watch.ts, ./drift-repair.ts); a change to an identity
 * that is not ours enqueues nothing.
 *
 * Fail static: until every cache has synced once, nothing is reconciled, so an agent that
 * starts while the API server is unreachable leaves the kernel exactly as it is. Afterwards
 * the caches keep their last content through outages (the informers reconnect with backoff),
 * so the kernel stays as last desired. A restart removes nothing: ownership lives in the
 * ledger on the node, and the first reconcile after start finds nothing to change.
 *
 * This file only builds the components and composes them, in the order of `agentStartOrder`;
 * each component is a Runnable with one job, in a module of its own.
 */
import { Registry } from 'prom-client';
import type { KubeConfig } from '@kubernetes/client-node';
import { IpsecResources } from '../kube/client.js';
import { WorkQueue } from '../kube/workqueue.js';
import { runWorkers } from '../kube/reconcile.js';
import { runInOrder, type Runnable } from '../kube/runnables.js';
import { healthServerRunnable, loopRunnable } from '../kube/components.js';
import { createOperatorMetrics } from '../kube/metrics.js';
import { HealthServer } from '../kube/health.js';
import type { Logger } from '../kube/logger.js';
import { AgentMetrics } from './agent-metrics.js';
import { AgentEncapSockets, encapSocketsRunnable } from './encap-sockets.js';
import { readXfrmStat } from './kernel-info.js';
import { KernelAccess } from './kernel-access.js';
import { kernelMonitorRunnable, sequenceMonitorRunnable } from './kernel-monitor.js';
import { SequenceWatch } from './sequence-watch.js';
import { AgentEvents } from './agent-events.js';
import { EventRecorder, kubeEventSink } from '../kube/events.js';
import { stateKey } from '../plan/identity.js';
import { SEQUENCE_REPORT_PACKETS } from '../xfrm/messages.js';
import { DriftWatch } from './drift-watch.js';
import { NodeCaches } from './node-caches.js';
import { NodeStateReporter } from './node-state-reporter.js';
import { DRIFT_KEY, NODE_KEY, NodeWorker } from './node-worker.js';
import { MeshCaches } from './mesh-caches.js';
import { MeshWorker, readBootId } from './mesh-worker.js';
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
  /** The boot id mesh keys are bound to; default /proc/sys/kernel/random/boot_id. */
  readonly bootId?: string;
}

/**
 * The agent's components, one Runnable each. To add one: a field here, its place in
 * `agentStartOrder`, and its construction in `runAgent`; the type makes forgetting either an
 * error.
 */
export interface AgentComponents {
  /** The XFRM request socket and the ledger lock (./kernel-access.ts). */
  readonly kernel: Runnable;
  /** /healthz, /readyz and /metrics. */
  readonly healthServer: Runnable;
  /** The UDP sockets NAT-T SAs need; closed on stop (./encap-sockets.ts). */
  readonly encapSockets: Runnable;
  /** Writes IpsecNodeState after each pass (./node-state-reporter.ts). */
  readonly nodeStateReporter: Runnable;
  /** The informers; started means every cache synced once (./node-caches.ts). */
  readonly caches: Runnable;
  /** The IpsecMeshes' informers (./mesh-caches.ts): started, not waited for. */
  readonly meshCaches: Runnable;
  /** Kernel events, for drift (./kernel-monitor.ts). */
  readonly kernelMonitor: Runnable;
  /** The kernel's sequence reports (AEVENTS), for sequence marks (./sequence-watch.ts). */
  readonly sequenceMonitor: Runnable;
  /** The work-queue workers that run ./node-worker.ts. */
  readonly workers: Runnable;
}

/**
 * Start order, and (reversed) the shutdown order:
 * - the kernel socket and the ledger lock first: an agent that cannot open them must not
 *   start, and must say so before waiting on the API server;
 * - the health server next, so probes answer (not ready) while the caches sync;
 * - the encapsulation sockets and the node-state reporter before anything can use them;
 * - the caches: nothing is reconciled from a partial view; the mesh caches after them, not
 *   waited for (a cluster without meshes, or without the CRD, reconciles all the same: until
 *   they sync, the mesh entries stay as they are);
 * - the kernel monitor after the caches and before the workers, so that no event falls between
 *   the first reconcile's dump and the monitor; the sequence monitor likewise (its reports count
 *   once a pass has tracked the owned SAs, and the watch writes through the open ledger);
 * - the workers last. On SIGTERM they finish the reconcile in progress before the monitor, the
 *   caches, the sockets and the ledger go; the kernel keeps its entries.
 */
export function agentStartOrder(components: AgentComponents): Runnable[] {
  return [
    components.kernel,
    components.healthServer,
    components.encapSockets,
    components.nodeStateReporter,
    components.caches,
    components.meshCaches,
    components.kernelMonitor,
    components.sequenceMonitor,
    components.workers,
  ];
}

export async function runAgent(options: AgentOptions): Promise<void> {
  const { logger, nodeName, netns } = options;
  const registry = new Registry();
  const operatorMetrics = createOperatorMetrics(registry);
  const metrics = new AgentMetrics(registry, { perSaMetrics: options.perSaMetrics, readXfrmStat: () => readXfrmStat(netns) });
  const resources = new IpsecResources(options.kubeConfig);

  const kernel = new KernelAccess(netns, options.stateDirectory);
  const encapSockets = new AgentEncapSockets({ netns, registry, logger });
  const reporter = new NodeStateReporter(resources, nodeName);
  const caches = new NodeCaches({ kubeConfig: options.kubeConfig, resources, namespace: options.namespace, nodeName, logger, metrics: operatorMetrics });

  const recorder = new EventRecorder(kubeEventSink(options.kubeConfig), { component: 'ipsec-operator-agent', host: nodeName, defaultNamespace: 'default', logger });
  const agentEvents = new AgentEvents(recorder, nodeName);
  const queue = new WorkQueue({ name: 'agent', hooks: operatorMetrics.queueHooks('agent') });
  const trigger = (): void => queue.add(NODE_KEY);
  // What the desired tables are built from changed: targeted repairs wait for the full pass.
  const desiredChanged = (): void => {
    worker.desiredChanged();
    trigger();
  };
  caches.onChange(desiredChanged);
  const meshCaches = new MeshCaches({ kubeConfig: options.kubeConfig, resources, logger, metrics: operatorMetrics });
  meshCaches.onChange(desiredChanged);
  const mesh = new MeshWorker({ nodeName, stateDirectory: options.stateDirectory, bootId: options.bootId ?? readBootId(), caches: meshCaches, logger });
  const drift = new DriftWatch({
    ownPortId: () => kernel.handles().tables.portId,
    owns: (key) => kernel.handles().ledger.records().has(key),
    concerns: (touched) => worker.concern(touched),
    trigger: (path) => queue.add(path === 'full' ? NODE_KEY : DRIFT_KEY),
    expired: (hard, sa) => {
      metrics.expireEvents.inc({ kind: hard ? 'hard' : 'soft' });
      const resource = kernel.handles().ledger.records().get(stateKey(sa.id))?.resource;
      if (!hard && resource !== undefined) agentEvents.softExpired(resource, sa, caches.snapshot()?.resources ?? []);
      if (!hard && resource !== undefined) mesh.softLimitReached(resource);
    },
  });
  const sequences = new SequenceWatch({
    store: () => kernel.handles().ledger,
    kernel: () => kernel.handles().tables,
    threshold: SEQUENCE_REPORT_PACKETS,
    persisted: (count) => metrics.sequenceMarks.inc(count),
    failed: (what, error) => logger.warn(`sequence marks: ${what} failed`, { error: error instanceof Error ? error.message : String(error) }),
  });
  const worker: NodeWorker = new NodeWorker({ nodeName, netns, resyncSeconds: options.resyncSeconds, logger, caches, kernel, drift, metrics, encapSockets, reporter, sequences, events: agentEvents, mesh, requestFull: trigger });

  const health = new HealthServer({ address: options.metricsAddress, registry, logger });
  health.addReadinessCheck('caches-synced', () => caches.synced() || 'waiting for the first list of every resource');
  health.addReadinessCheck('kernel-synced', () => worker.lastSync !== undefined || 'the kernel has not been reconciled yet');

  const components: AgentComponents = {
    kernel: kernel.runnable,
    healthServer: healthServerRunnable(health),
    encapSockets: encapSocketsRunnable(encapSockets),
    nodeStateReporter: reporter.runnable,
    caches: caches.runnable,
    meshCaches: meshCaches.runnable,
    kernelMonitor: kernelMonitorRunnable(netns, (event) => drift.observe(event)),
    sequenceMonitor: sequenceMonitorRunnable(netns, (report) => sequences.observe(report)),
    workers: loopRunnable(
      'workers',
      (signal) => runWorkers(queue, 1, (key) => worker.reconcile(key), { controller: 'agent', logger, hooks: operatorMetrics.reconcileHooks('agent'), signal }),
      {
        onStart: () => {
          trigger(); // each reconcile requeues itself after resyncSeconds: the periodic full resync
          logger.info('agent started', { node: nodeName, netns: netns ?? '(host)', version: VERSION });
        },
      },
    ),
  };

  try {
    await runInOrder(agentStartOrder(components), options.signal, {
      logger,
      ...(options.shutdownGraceMs === undefined ? {} : { shutdownGraceMs: options.shutdownGraceMs }),
    });
  } finally {
    // Also when the workers never started (a start failed): nothing may wait on the queue.
    queue.shutDown();
    await recorder.flush();
  }
  logger.info('agent stopped; the kernel keeps its entries');
}
