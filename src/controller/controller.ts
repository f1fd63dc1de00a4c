/**
 * The cluster controller: for every SecurityAssociation and IpsecPolicy, checks what one
 * object cannot check on its own (./analysis.ts), writes `status` (Ready condition with a
 * CamelCase reason, observedGeneration, a per-node summary), records Events when the verdict
 * changes, and holds the kernel-cleanup finalizer until no node reports an entry of a deleted
 * resource — including nodes whose agent was down when the resource was deleted.
 *
 * One replica leads (Lease); the others wait. Reconcile is by key (`Kind/name`) from the
 * caches; a change to a Secret, a Node or an IpsecNodeState re-checks only the resources whose
 * verdict it can change (./cluster-index.ts works out which), and a status equal to the one
 * stored is not written, so a quiet cluster costs the API server nothing.
 *
 * IpsecMeshes (key `IpsecMesh/name`, ./mesh-controller.ts): status from the members' reports,
 * and the rotation schedule agents act on.
 */
import { Gauge, Registry } from 'prom-client';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Node, type V1Secret } from '@kubernetes/client-node';
import { IpsecResources, coreListerWatcher, type IpsecPlural } from '../kube/client.js';
import { Informer } from '../kube/informer.js';
import { WorkQueue } from '../kube/workqueue.js';
import { runWorkers } from '../kube/reconcile.js';
import { runInOrder } from '../kube/runnables.js';
import { cachesRunnable, healthServerRunnable, loopRunnable } from '../kube/components.js';
import { createOperatorMetrics } from '../kube/metrics.js';
import { HealthServer } from '../kube/health.js';
import { setCondition, type Condition } from '../kube/conditions.js';
import { EventRecorder, kubeEventSink } from '../kube/events.js';
import { LeaderElector, kubeLeaseStore } from '../kube/leader-election.js';
import { isNotFound } from '../kube/api-errors.js';
import { statusEqual } from '../kube/status.js';
import type { Logger } from '../kube/logger.js';
import { API_GROUP, API_VERSION, type IpsecResource } from '../crd/types.js';
import { reportedNode, resourceStanding, type IpsecNodeState } from '../crd/node-state.js';
import { judge, type Verdict } from './analysis.js';
import { ClusterIndex, type SecretData } from './cluster-index.js';
import { MESH_KEY_PREFIX, MeshMetrics, meshReconciler } from './mesh-controller.js';
import type { IpsecMeshObject } from '../crd/mesh-contract.js';
import { VERSION } from '../version.js';

export const FINALIZER = 'ipsec.xfrm.io/kernel-cleanup';
const FIELD_MANAGER = 'ipsec-operator-controller';
/**
 * Reconciles in flight at once (never two of one key). A reconcile is mostly waiting on the
 * API server (a finalizer patch, a status apply), so throughput follows this number until the
 * server is the limit: with 2, bench:scale's controller fell behind a single kubectl creating
 * 2,000 policies on a loaded machine.
 */
const WORKERS = 8;

export interface ControllerOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly metricsAddress: string;
  readonly leaderElect: boolean;
  /** Unique per replica (the pod name). */
  readonly identity: string;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Lease timing (tests shorten it). */
  readonly leaseDurationMs?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
}

type Stored = IpsecResource & { metadata: { creationTimestamp?: string; resourceVersion?: string; uid?: string }; status?: { conditions?: Condition[] } & Record<string, unknown> };

const PLURAL: Record<IpsecResource['kind'], IpsecPlural> = { SecurityAssociation: 'securityassociations', IpsecPolicy: 'ipsecpolicies' };

export async function runController(options: ControllerOptions): Promise<void> {
  const { logger } = options;
  const registry = new Registry();
  const operatorMetrics = createOperatorMetrics(registry);
  const leaderGauge = new Gauge({ name: 'ipsec_operator_leader', help: '1 on the controller replica that leads.', registers: [registry] });
  // The verdicts of the current (or last) term. The gauges count them when scraped, not after
  // every reconcile: a count per reconcile would make a sweep of N resources cost N².
  let termVerdicts: ReadonlyMap<string, Verdict & { kind: string }> = new Map();
  new Gauge({
    name: 'ipsec_operator_resources',
    help: 'Resources by kind and readiness.',
    labelNames: ['kind', 'ready'],
    registers: [registry],
    collect() {
      this.reset();
      for (const kind of ['SecurityAssociation', 'IpsecPolicy']) {
        this.set({ kind, ready: 'true' }, 0);
        this.set({ kind, ready: 'false' }, 0);
      }
      for (const verdict of termVerdicts.values()) this.inc({ kind: verdict.kind, ready: String(verdict.ready) });
    },
  });
  new Gauge({
    name: 'ipsec_operator_resources_not_ready',
    help: 'Resources not Ready, by kind and reason.',
    labelNames: ['kind', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const verdict of termVerdicts.values()) if (!verdict.ready) this.inc({ kind: verdict.kind, reason: verdict.reason });
    },
  });
  const meshMetrics = new MeshMetrics(registry);
  new Gauge({ name: 'ipsec_operator_build_info', help: 'Build information.', labelNames: ['version'], registers: [registry] }).set({ version: VERSION }, 1);
  leaderGauge.set(0);

  const health = new HealthServer({ address: options.metricsAddress, registry, logger });
  // The probes first (a replica that waits for the lease is alive and says why it is not
  // ready), then the leader's work: under election, a campaign that starts it for each term.
  await runInOrder(
    [healthServerRunnable(health), options.leaderElect ? loopRunnable('leader election', campaign) : loopRunnable('leader work', leadUnelected)],
    options.signal,
    { logger },
  );

  async function leadUnelected(signal: AbortSignal): Promise<void> {
    leaderGauge.set(1);
    await lead(signal);
  }

  async function campaign(signal: AbortSignal): Promise<void> {
    const elector = new LeaderElector({
      store: kubeLeaseStore(options.kubeConfig, options.namespace, 'ipsec-operator-controller'),
      identity: options.identity,
      logger,
      ...(options.leaseDurationMs ? { leaseDurationMs: options.leaseDurationMs } : {}),
      ...(options.renewDeadlineMs ? { renewDeadlineMs: options.renewDeadlineMs } : {}),
      ...(options.retryPeriodMs ? { retryPeriodMs: options.retryPeriodMs } : {}),
      onStartedLeading: (term) => {
        leaderGauge.set(1);
        leading = lead(term);
        return leading;
      },
      onStoppedLeading: () => leaderGauge.set(0),
    });
    // A replica that lost its lease (say, the API server was unreachable past the renew
    // deadline) stops its work, waits until it has stopped, and campaigns again with fresh
    // caches and queue: the same clean state a restart would give, without losing the process.
    let leading: Promise<void> | undefined;
    while (!signal.aborted) {
      const end = await elector.run(signal);
      await leading?.catch(() => undefined);
      if (end === 'stopped') break;
      logger.warn('lost leadership; campaigning again');
    }
  }

  async function lead(signal: AbortSignal): Promise<void> {
    const resources = new IpsecResources(options.kubeConfig);
    const api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    const statusWriter = resources.statusWriter(FIELD_MANAGER);
    // Events about cluster-scoped objects must live in `default` (the API server's rule for an
    // involvedObject without a namespace).
    const events = new EventRecorder(kubeEventSink(options.kubeConfig), { component: FIELD_MANAGER, host: options.identity, defaultNamespace: 'default', logger });
    const hooks = (resource: string) => ({ logger, hooks: operatorMetrics.informerHooks(resource) });
    const securityAssociations = resources.informer<Stored>('securityassociations', hooks('securityassociations'));
    const policies = resources.informer<Stored>('ipsecpolicies', hooks('ipsecpolicies'));
    const nodeStates = resources.informer<IpsecNodeState>('ipsecnodestates', hooks('ipsecnodestates'));
    const secrets = new Informer<V1Secret>(coreListerWatcher(options.kubeConfig, 'secrets', { namespace: options.namespace }), { resource: 'secrets', ...hooks('secrets') });
    const nodes = new Informer<V1Node>(coreListerWatcher(options.kubeConfig, 'nodes'), { resource: 'nodes', ...hooks('nodes') });
    const meshes = resources.informer<IpsecMeshObject>('ipsecmeshes', hooks('ipsecmeshes'));
    const informers = [securityAssociations, policies, nodeStates, secrets, nodes, meshes];
    const queue = new WorkQueue({ name: 'controller', hooks: operatorMetrics.queueHooks('controller') });
    const mesh = meshReconciler({
      meshes,
      nodes,
      nodeStates,
      statusWriter,
      api,
      events,
      metrics: meshMetrics,
      logger,
      requeueAfter: (key, ms) => queue.addAfter(key, ms),
    });
    const meshKey = (object: IpsecMeshObject) => `${MESH_KEY_PREFIX}${object.metadata.name ?? ''}`;
    meshes.addHandlers({
      add: (object) => queue.add(meshKey(object)),
      update: (_old, object) => queue.add(meshKey(object)),
      delete: (object) => queue.add(meshKey(object)),
    });
    const verdicts = new Map<string, Verdict & { kind: string }>();
    termVerdicts = verdicts;
    // The cluster as the verdicts need it, kept change by change (./cluster-index.ts): each
    // event enqueues only the resources whose verdict it may change.
    const index = new ClusterIndex();
    const enqueueKeys = (keys: Iterable<string>) => {
      for (const key of keys) queue.add(key);
    };
    for (const informer of [securityAssociations, policies]) {
      informer.addHandlers({
        add: (object) => enqueueKeys(index.upsertResource(object)),
        update: (_old, object) => enqueueKeys(index.upsertResource(object)),
        delete: (object) => enqueueKeys(index.removeResource(object)),
      });
    }
    secrets.addHandlers({
      add: (secret) => enqueueKeys(index.setSecret(secret.metadata?.name ?? '', secretData(secret))),
      update: (_old, secret) => enqueueKeys(index.setSecret(secret.metadata?.name ?? '', secretData(secret))),
      delete: (secret) => enqueueKeys(index.setSecret(secret.metadata?.name ?? '', undefined)),
    });
    nodes.addHandlers({
      add: (node) => enqueueKeys(index.setNode(node.metadata?.name ?? '', node.metadata?.labels ?? {})),
      update: (_old, node) => enqueueKeys(index.setNode(node.metadata?.name ?? '', node.metadata?.labels ?? {})),
      delete: (node) => enqueueKeys(index.setNode(node.metadata?.name ?? '', undefined)),
    });
    nodeStates.addHandlers({
      add: (state) => enqueueKeys(index.setNodeState(state.metadata?.name ?? '', reportedNode(state), resourceStanding(state.status))),
      update: (_old, state) => enqueueKeys(index.setNodeState(state.metadata?.name ?? '', reportedNode(state), resourceStanding(state.status))),
      delete: (state) => enqueueKeys(index.setNodeState(state.metadata?.name ?? '', reportedNode(state), undefined)),
    });
    // Membership and reports of every mesh may change with any Node or IpsecNodeState (meshes
    // are few; a reconcile that changes nothing writes nothing).
    const meshHandlers = { add: () => enqueueKeys(mesh.allKeys()), update: () => enqueueKeys(mesh.allKeys()), delete: () => enqueueKeys(mesh.allKeys()) };
    nodes.addHandlers(meshHandlers);
    nodeStates.addHandlers(meshHandlers);
    // Readiness of this term: its caches. The check goes with the term: a replica that lost its
    // lease stops these informers, and a check left on them failed for good, so a former leader
    // campaigning again stayed unready while a replica that never led was ready (seen on the
    // test node: after a missed renew deadline one controller stayed 0/1, which holds up a
    // Deployment rollout with maxUnavailable 0).
    const cachesSynced = () => informers.every((informer) => informer.hasSynced()) || 'waiting for the first list of every resource';
    health.addReadinessCheck('caches-synced', cachesSynced);

    const patchFinalizers = async (object: Stored, finalizers: string[]) => {
      await api.patchClusterCustomObject(
        {
          group: API_GROUP,
          version: API_VERSION,
          plural: PLURAL[object.kind],
          name: object.metadata.name,
          // resourceVersion makes it optimistic: a concurrent change gets 409 and a retry.
          body: { metadata: { finalizers, resourceVersion: object.metadata.resourceVersion } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    };

    // The status this term last wrote, per key. The cache lags behind our own writes (the
    // watch event of a write arrives after the next reconcile may have started): judged
    // against the cache alone, a verdict that did not move would be written again, with a new
    // lastTransitionTime. We are the only writer of these statuses.
    const written = new Map<string, { status: Record<string, unknown>; generation: number | undefined }>();
    const lastStatus = (key: string, object: Stored): { conditions?: Condition[] } | undefined => {
      const mine = written.get(key);
      return mine && mine.generation === object.metadata.generation ? (mine.status as { conditions?: Condition[] }) : object.status;
    };
    const writeStatus = async (key: string, object: Stored, desired: Record<string, unknown>): Promise<void> => {
      const mine = written.get(key);
      if (mine && mine.generation === object.metadata.generation && statusEqual(mine.status, desired)) return;
      await statusWriter.write(PLURAL[object.kind], object.metadata.name, object.status, desired);
      written.set(key, { status: desired, generation: object.metadata.generation });
    };

    const reconcile = async (key: string): Promise<void> => {
      if (key.startsWith(MESH_KEY_PREFIX)) return mesh.reconcile(key.slice(MESH_KEY_PREFIX.length));
      const [kind, name = ''] = key.split('/') as [IpsecResource['kind'], string];
      const informer = kind === 'SecurityAssociation' ? securityAssociations : policies;
      const object = informer.get(name);
      if (!object) {
        verdicts.delete(key);
        written.delete(key);
        return;
      }
      // The handlers fed this very object in; a newer one in hand (the cache moved on between
      // the event and this reconcile) is folded in here, and what it touches enqueued.
      enqueueKeys([...index.upsertResource(object)].filter((touched) => touched !== key));
      const verdict = judge(object, index);
      const finalizers = object.metadata.finalizers ?? [];
      try {
        if (object.metadata.deletionTimestamp) {
          if (verdict.entriesRemaining === 0 && finalizers.includes(FINALIZER)) {
            await patchFinalizers(object, finalizers.filter((finalizer) => finalizer !== FINALIZER));
            events.normal(subject(object), 'Removed', 'kernel entries removed from every node');
          } else {
            // Say what the deletion waits for (nodes whose agents still hold entries).
            const conditions = setCondition(
              lastStatus(key, object)?.conditions,
              { type: 'Ready', status: 'False', reason: verdict.reason, message: verdict.message, observedGeneration: object.metadata.generation ?? 0 },
              new Date(),
            );
            await writeStatus(key, object, { observedGeneration: object.metadata.generation ?? 0, conditions, nodes: verdict.nodes });
          }
          verdicts.delete(key);
          return;
        }
        if (!finalizers.includes(FINALIZER)) await patchFinalizers(object, [...finalizers, FINALIZER]);
      } catch (error) {
        if (isNotFound(error)) return;
        throw error;
      }

      const previous = verdicts.get(key);
      verdicts.set(key, { ...verdict, kind });
      const conditions = setCondition(
        lastStatus(key, object)?.conditions,
        { type: 'Ready', status: verdict.ready ? 'True' : 'False', reason: verdict.reason, message: verdict.message, observedGeneration: object.metadata.generation ?? 0 },
        new Date(),
      );
      await writeStatus(key, object, {
        observedGeneration: object.metadata.generation ?? 0,
        conditions,
        nodes: verdict.nodes,
      });
      if (!previous || previous.reason !== verdict.reason || previous.message !== verdict.message) {
        if (verdict.ready) events.normal(subject(object), verdict.reason, verdict.message);
        else if (verdict.reason !== 'Pending') events.warning(subject(object), verdict.reason, verdict.message);
      }
    };

    // One term of leadership: the caches synced, then the workers; stopped the other way, and
    // the Events recorded during the term flushed last. A failure ends the term with its
    // reason (the elector logs it and keeps campaigning); the end of the term is no failure.
    try {
      await runInOrder(
        [
          { name: 'event recorder', start: () => undefined, stop: () => events.flush() },
          cachesRunnable(informers),
          loopRunnable('workers', (stop) => runWorkers(queue, WORKERS, reconcile, { controller: 'controller', logger, hooks: operatorMetrics.reconcileHooks('controller'), signal: stop }), {
            onStart: () => logger.info('controller leading; caches synced', { identity: options.identity }),
          }),
        ],
        signal,
        { logger },
      );
    } finally {
      health.removeReadinessCheck('caches-synced', cachesSynced);
    }
  }
}

/** The Secret's data, decoded. Values are never logged. */
function secretData(secret: V1Secret): SecretData {
  return new Map(Object.entries(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')]));
}

function subject(object: Stored) {
  return { apiVersion: `${API_GROUP}/${API_VERSION}`, kind: object.kind, name: object.metadata.name, ...(object.metadata.uid ? { uid: object.metadata.uid } : {}) };
}
