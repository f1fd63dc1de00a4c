/**
 * Kubernetes Events (core/v1) about our resources, the way client-go's recorder does the part
 * that matters: an event repeated for the same object (same type, reason and message) updates
 * one Event object (count + 1, lastTimestamp) instead of creating a new one each time, so a
 * failure retried every few seconds does not flood etcd.
 *
 * `event()` returns at once and never throws: events are best effort, written in the background
 * one at a time (in order, so two identical events cannot both create), with failures logged.
 * `flush()` waits for what was queued (tests, graceful shutdown).
 */
import { CoreV1Api, PatchStrategy, setHeaderOptions, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import { apiErrorSummary, isNotFound } from './api-errors.js';
import { systemClock, type Clock } from './clock.js';
import { silentLogger, type Logger } from './logger.js';

export type EventType = 'Normal' | 'Warning';

/** The object an event is about (core/v1 ObjectReference). */
export interface EventSubject {
  apiVersion?: string;
  kind: string;
  name: string;
  /** Absent for cluster-scoped objects: their events go to the recorder's default namespace. */
  namespace?: string;
  uid?: string;
}

/** Where Events are written; `kubeEventSink` is the API server. */
export interface EventSink {
  create(namespace: string, event: CoreV1Event): Promise<unknown>;
  /** Merge-patches `count` and `lastTimestamp` (and the message) of an existing Event. */
  update(namespace: string, name: string, change: { count: number; lastTimestamp: string; message: string }): Promise<unknown>;
}

export interface EventRecorderOptions {
  /** source.component / reportingComponent, e.g. `ipsec-operator-controller`. */
  component: string;
  /** source.host / reportingInstance (node or pod name). */
  host?: string;
  /** For cluster-scoped subjects; default `default` (as client-go). */
  defaultNamespace?: string;
  clock?: Clock;
  logger?: Logger;
  /** Distinct events remembered for aggregation; default 4096 (least recently used dropped). */
  cacheSize?: number;
  /** Events waiting to be written beyond which new ones are dropped (and logged); default 1000. */
  maxPending?: number;
}

interface Aggregate {
  namespace: string;
  name: string;
  count: number;
}

/** Event messages are shown in kubectl; events.k8s.io caps its note at 1 kB. */
const MAX_MESSAGE = 1024;

export class EventRecorder {
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly cache = new Map<string, Aggregate>();
  private readonly cacheSize: number;
  private readonly maxPending: number;
  private readonly defaultNamespace: string;
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;
  private sequence = 0;

  constructor(
    private readonly sink: EventSink,
    private readonly options: EventRecorderOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ component: 'event-recorder' });
    this.cacheSize = options.cacheSize ?? 4096;
    this.maxPending = options.maxPending ?? 1000;
    this.defaultNamespace = options.defaultNamespace ?? 'default';
  }

  /** Records an event about `subject`. Never throws; the write happens in the background. */
  event(subject: EventSubject, type: EventType, reason: string, message: string): void {
    try {
      if (this.pending >= this.maxPending) {
        this.logger.warn('event dropped: too many events waiting to be written', { reason, kind: subject.kind, name: subject.name });
        return;
      }
      this.pending++;
      const at = this.clock.now();
      const text = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message;
      this.tail = this.tail
        .then(() => this.write(subject, type, reason, text, at))
        .catch(() => undefined)
        .finally(() => this.pending--);
    } catch (error) {
      this.logger.warn('event could not be queued', { error });
    }
  }

  normal(subject: EventSubject, reason: string, message: string): void {
    this.event(subject, 'Normal', reason, message);
  }

  warning(subject: EventSubject, reason: string, message: string): void {
    this.event(subject, 'Warning', reason, message);
  }

  /** Resolves once every event recorded so far has been written (or has failed). */
  flush(): Promise<void> {
    return this.tail;
  }

  private async write(subject: EventSubject, type: EventType, reason: string, message: string, at: number): Promise<void> {
    const namespace = subject.namespace ?? this.defaultNamespace;
    const key = JSON.stringify([subject.apiVersion ?? '', subject.kind, namespace, subject.name, subject.uid ?? '', type, reason, message]);
    const timestamp = new Date(at).toISOString();
    try {
      const known = this.cache.get(key);
      if (known !== undefined) {
        try {
          await this.sink.update(known.namespace, known.name, { count: known.count + 1, lastTimestamp: timestamp, message });
          known.count++;
          this.touch(key, known);
          return;
        } catch (error) {
          // Events expire (the API server's event TTL, 1 h by default): start a new one.
          if (!isNotFound(error)) throw error;
          this.cache.delete(key);
        }
      }
      const name = `${subject.name}.${this.uniqueSuffix(at)}`;
      await this.sink.create(namespace, {
        metadata: { name, namespace },
        involvedObject: { apiVersion: subject.apiVersion, kind: subject.kind, name: subject.name, namespace: subject.namespace, uid: subject.uid },
        type,
        reason,
        message,
        count: 1,
        firstTimestamp: new Date(at),
        lastTimestamp: new Date(at),
        source: { component: this.options.component, host: this.options.host },
        reportingComponent: this.options.component,
        reportingInstance: this.options.host ?? '',
      });
      this.touch(key, { namespace, name, count: 1 });
    } catch (error) {
      this.logger.warn('writing an event failed', { reason, kind: subject.kind, name: subject.name, error: apiErrorSummary(error) });
    }
  }

  /** client-go names events `<object>.<unix nanoseconds in hex>`; a counter keeps ours unique within a millisecond. */
  private uniqueSuffix(at: number): string {
    const nanos = BigInt(at) * 1_000_000n + BigInt(this.sequence++ % 1_000_000);
    return nanos.toString(16);
  }

  private touch(key: string, aggregate: Aggregate): void {
    this.cache.delete(key);
    this.cache.set(key, aggregate);
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) break;
      this.cache.delete(oldest);
    }
  }
}

/** An EventSink on the API server (core/v1 Events). */
export function kubeEventSink(kubeConfig: KubeConfig): EventSink {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  return {
    create: (namespace, body) => core.createNamespacedEvent({ namespace, body }),
    update: (namespace, name, change) => core.patchNamespacedEvent({ namespace, name, body: change }, mergePatch),
  };
}
