/**
 * The operator's controller metrics, named like controller-runtime's (controller_runtime_* and
 * workqueue_*) under one prefix, `ipsec_operator_`. They are created on a Registry the caller
 * owns: never prom-client's global default, so tests, the controller and the agent in one
 * process (or two metrics sets in one test) never collide.
 *
 * The queue, the workers and the informer know nothing of prom-client: they call small hook
 * interfaces, and the functions below adapt these metrics to them.
 *
 * Label sets are bounded: controller, queue and resource names are fixed in code; never an
 * object name.
 */
import { Counter, Gauge, Histogram, exponentialBuckets, type Registry } from 'prom-client';
import type { InformerHooks } from './informer.js';
import type { ReconcileHooks, ReconcileOutcome } from './reconcile.js';
import type { WorkQueueHooks } from './workqueue.js';

export const METRIC_PREFIX = 'ipsec_operator_';
const OUTCOMES: readonly ReconcileOutcome[] = ['success', 'error', 'requeue', 'requeue_after'];

/** controller-runtime's reconcile-time buckets, 5 ms to 60 s. */
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60];
/** client-go's workqueue buckets: 1 µs to 1000 s, by tens. */
const QUEUE_BUCKETS = exponentialBuckets(1e-6, 10, 10);

export class OperatorMetrics {
  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrorsTotal: Counter<'controller'>;
  readonly terminalReconcileErrorsTotal: Counter<'controller'>;
  readonly reconcileTimeSeconds: Histogram<'controller'>;
  readonly activeWorkers: Gauge<'controller'>;
  readonly workqueueDepth: Gauge<'name'>;
  readonly workqueueAddsTotal: Counter<'name'>;
  readonly workqueueQueueDurationSeconds: Histogram<'name'>;
  readonly workqueueWorkDurationSeconds: Histogram<'name'>;
  readonly workqueueRetriesTotal: Counter<'name'>;
  readonly watchRestartsTotal: Counter<'resource'>;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    const p = METRIC_PREFIX;
    this.reconcileTotal = new Counter({ name: `${p}reconcile_total`, help: 'Reconciliations per controller and result (success, error, requeue, requeue_after).', labelNames: ['controller', 'result'], registers });
    this.reconcileErrorsTotal = new Counter({ name: `${p}reconcile_errors_total`, help: 'Reconciliations that ended in an error, terminal or not.', labelNames: ['controller'], registers });
    this.terminalReconcileErrorsTotal = new Counter({ name: `${p}terminal_reconcile_errors_total`, help: 'Reconciliations that ended in a terminal (not retried) error.', labelNames: ['controller'], registers });
    this.reconcileTimeSeconds = new Histogram({ name: `${p}reconcile_time_seconds`, help: 'Time spent in each reconciliation.', labelNames: ['controller'], buckets: RECONCILE_BUCKETS, registers });
    this.activeWorkers = new Gauge({ name: `${p}active_workers`, help: 'Workers currently inside a reconciliation.', labelNames: ['controller'], registers });
    this.workqueueDepth = new Gauge({ name: `${p}workqueue_depth`, help: 'Keys waiting in the work queue.', labelNames: ['name'], registers });
    this.workqueueAddsTotal = new Counter({ name: `${p}workqueue_adds_total`, help: 'Keys added to the work queue (not counting keys already pending).', labelNames: ['name'], registers });
    this.workqueueQueueDurationSeconds = new Histogram({ name: `${p}workqueue_queue_duration_seconds`, help: 'Time a key waits in the work queue before a worker takes it.', labelNames: ['name'], buckets: QUEUE_BUCKETS, registers });
    this.workqueueWorkDurationSeconds = new Histogram({ name: `${p}workqueue_work_duration_seconds`, help: 'Time a worker holds a key.', labelNames: ['name'], buckets: QUEUE_BUCKETS, registers });
    this.workqueueRetriesTotal = new Counter({ name: `${p}workqueue_retries_total`, help: 'Rate-limited re-adds of keys.', labelNames: ['name'], registers });
    this.watchRestartsTotal = new Counter({ name: `${p}watch_restarts_total`, help: 'Restarts of a list+watch (errors, stream ends, expired resourceVersion, watchdog).', labelNames: ['resource'], registers });
  }

  /** Hooks for runWorkers; every result series of this controller exists from the start, at 0. */
  reconcileHooks(controller: string): ReconcileHooks {
    for (const result of OUTCOMES) this.reconcileTotal.inc({ controller, result }, 0);
    this.reconcileErrorsTotal.inc({ controller }, 0);
    this.terminalReconcileErrorsTotal.inc({ controller }, 0);
    this.activeWorkers.set({ controller }, 0);
    return {
      reconciled: (outcome, seconds, terminal) => {
        this.reconcileTotal.inc({ controller, result: outcome });
        if (outcome === 'error') this.reconcileErrorsTotal.inc({ controller });
        if (terminal) this.terminalReconcileErrorsTotal.inc({ controller });
        this.reconcileTimeSeconds.observe({ controller }, seconds);
      },
      activeWorkers: (count) => this.activeWorkers.set({ controller }, count),
    };
  }

  /** Hooks for a WorkQueue named `name`. */
  queueHooks(name: string): WorkQueueHooks {
    this.workqueueDepth.set({ name }, 0);
    this.workqueueAddsTotal.inc({ name }, 0);
    this.workqueueRetriesTotal.inc({ name }, 0);
    return {
      added: () => this.workqueueAddsTotal.inc({ name }),
      depth: (depth) => this.workqueueDepth.set({ name }, depth),
      queueLatency: (seconds) => this.workqueueQueueDurationSeconds.observe({ name }, seconds),
      workDuration: (seconds) => this.workqueueWorkDurationSeconds.observe({ name }, seconds),
      retried: () => this.workqueueRetriesTotal.inc({ name }),
    };
  }

  /** Hooks for an Informer of `resource` (e.g. `securityassociations`). */
  informerHooks(resource: string): InformerHooks {
    this.watchRestartsTotal.inc({ resource }, 0);
    return { restarted: () => this.watchRestartsTotal.inc({ resource }) };
  }
}

/** Creates the operator's metrics on `registry` (throws if they are already registered there). */
export function createOperatorMetrics(registry: Registry): OperatorMetrics {
  return new OperatorMetrics(registry);
}
