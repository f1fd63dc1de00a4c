/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does
 * it, so the controller Deployment can run several replicas with one active.
 *
 * - Optimistic concurrency: every write replaces the Lease at the resourceVersion that was read;
 *   of two candidates racing for a free lease, the API server accepts exactly one (409 for the
 *   other).
 * - Expiry is judged on this process's own clock: a lease held by someone else is free once its
 *   record has not changed for leaseDuration since *we observed* it, so clock skew between nodes
 *   does not matter.
 * - The leader renews every retryPeriod. If it cannot renew for renewDeadline (< leaseDuration) it
 *   stops leading, before anyone else may take over; if it sees another holder it stops at once.
 * - On a clean stop it waits for its leader work to end, then releases the lease (empty holder)
 *   so a standby takes over within one retryPeriod instead of a full leaseDuration.
 *
 * What the process must do when leadership is lost (`run` resolves with 'lost', the signal
 * passed to onStartedLeading aborts): stop the work that needs leadership at once (workers,
 * status writes). The controller entry point should then exit non-zero, as controller-runtime
 * does, so a fresh process rejoins the election with clean caches and queues rather than
 * resuming half-stopped state.
 */
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { apiErrorSummary, isNotFound } from './api-errors.js';
import { sleep, systemClock, type Clock } from './clock.js';
import { silentLogger, type Logger } from './logger.js';

export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: Date | string;
  renewTime?: Date | string;
  leaseTransitions?: number;
}

export interface StoredLease {
  record: LeaseRecord;
  resourceVersion: string;
}

/** Where the lease lives; the API-backed one is `kubeLeaseStore`. Writes reject on conflict. */
export interface LeaseStore {
  get(): Promise<StoredLease | undefined>;
  create(record: LeaseRecord): Promise<StoredLease>;
  update(record: LeaseRecord, resourceVersion: string): Promise<StoredLease>;
}

export interface LeaderElectionOptions {
  store: LeaseStore;
  /** Unique per process (pod name, or pod name + a random suffix). */
  identity: string;
  /** How long a lease is honoured without renewal. Default 15 s. */
  leaseDurationMs?: number;
  /** The leader gives up if it could not renew for this long. Default 10 s. */
  renewDeadlineMs?: number;
  /** Interval between attempts to acquire or renew. Default 2 s. */
  retryPeriodMs?: number;
  /** Release the lease on a clean stop. Default true. */
  releaseOnStop?: boolean;
  clock?: Clock;
  logger?: Logger;
  /** Returns [0, 1); spreads candidates' acquire attempts. Default Math.random. */
  random?: () => number;
  /**
   * Called when this process becomes leader. `signal` aborts when leadership ends. May return a
   * promise that settles when the leader's work has stopped: the lease is released only after it.
   */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  /** Called once when leadership ends, lost or stopped. */
  onStoppedLeading?(): void;
  /** Called when the observed holder changes (including to this process). */
  onNewLeader?(identity: string): void;
}

export type ElectionEnd = 'stopped' | 'lost';
type Attempt = 'acquired' | 'held-by-other' | 'failed';

/** client-go's JitterFactor for acquire retries: wait retryPeriod * [1, 2.2). */
const JITTER_FACTOR = 1.2;

export class LeaderElector {
  private readonly store: LeaseStore;
  readonly identity: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly releaseOnStop: boolean;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly random: () => number;
  private observedRecord: LeaseRecord | undefined;
  private observedTime = 0;
  private observedHolder = '';
  private leading = false;
  private running = false;

  constructor(private readonly options: LeaderElectionOptions) {
    this.store = options.store;
    this.identity = options.identity;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.releaseOnStop = options.releaseOnStop ?? true;
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ component: 'leader-election', identity: options.identity });
    this.random = options.random ?? Math.random;
    if (this.identity === '') throw new Error('leader election needs a non-empty identity');
    if (!(this.leaseDurationMs > this.renewDeadlineMs)) throw new RangeError('leaseDuration must be greater than renewDeadline');
    if (!(this.renewDeadlineMs > JITTER_FACTOR * this.retryPeriodMs)) throw new RangeError('renewDeadline must be greater than 1.2 * retryPeriod');
    if (this.leaseDurationMs % 1000 !== 0) throw new RangeError('leaseDuration must be whole seconds (the Lease stores seconds)');
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The holder last seen in the lease ('' when free or unknown). */
  currentLeader(): string {
    return this.observedHolder;
  }

  /**
   * Campaigns until leader, leads until the lease is lost or `signal` aborts, then resolves with
   * how leadership ended ('stopped' also when `signal` aborted before leadership was won).
   */
  async run(signal?: AbortSignal): Promise<ElectionEnd> {
    if (this.running) throw new Error('LeaderElector.run is already running');
    this.running = true;
    try {
      return await this.campaignAndLead(signal);
    } finally {
      this.running = false;
    }
  }

  private async campaignAndLead(signal: AbortSignal | undefined): Promise<ElectionEnd> {
    this.logger.info('campaigning for leadership');
    for (;;) {
      if (signal?.aborted) return 'stopped';
      const attempt = await this.tryAcquireOrRenew();
      if (attempt === 'acquired') break;
      await sleep(this.clock, this.retryPeriodMs * (1 + JITTER_FACTOR * this.random()), signal);
    }
    if (signal?.aborted) {
      // Won the lease just as we were told to stop: hand it back rather than sit on it.
      if (this.releaseOnStop) await this.release();
      return 'stopped';
    }

    this.leading = true;
    const leadership = new AbortController();
    this.logger.info('became leader');
    let work: Promise<void>;
    try {
      work = Promise.resolve(this.options.onStartedLeading(leadership.signal)).catch((error: unknown) => {
        this.logger.error('leader work failed', { error });
      });
    } catch (error) {
      this.logger.error('onStartedLeading threw', { error });
      work = Promise.resolve();
    }

    const end = await this.renewLoop(signal);
    this.leading = false;
    leadership.abort(new Error(end === 'lost' ? 'leadership lost' : 'leader election stopped'));
    if (end === 'lost') this.logger.error('leadership lost: stop leader work now (and exit the process)');
    else this.logger.info('stopping leadership');
    try {
      this.options.onStoppedLeading?.();
    } catch (error) {
      this.logger.error('onStoppedLeading threw', { error });
    }
    if (end === 'stopped' && this.releaseOnStop) {
      // The next leader must not start while this one still works: wait (bounded) for the work.
      await Promise.race([work, sleep(this.clock, this.leaseDurationMs)]);
      await this.release();
    }
    return end;
  }

  private async renewLoop(signal: AbortSignal | undefined): Promise<ElectionEnd> {
    let lastRenew = this.clock.now();
    for (;;) {
      await sleep(this.clock, this.retryPeriodMs, signal);
      if (signal?.aborted) return 'stopped';
      const remaining = this.renewDeadlineMs - (this.clock.now() - lastRenew);
      const attempt = remaining > 0 ? await this.withDeadline(this.tryAcquireOrRenew(), remaining) : 'failed';
      if (attempt === 'acquired') {
        lastRenew = this.clock.now();
        continue;
      }
      if (attempt === 'held-by-other') return 'lost';
      if (this.clock.now() - lastRenew >= this.renewDeadlineMs) {
        this.logger.warn('could not renew the lease within the renew deadline', { renewDeadlineMs: this.renewDeadlineMs });
        return 'lost';
      }
    }
  }

  /** One read-modify-write of the lease. Never throws. */
  private async tryAcquireOrRenew(): Promise<Attempt> {
    const now = this.clock.now();
    const mine: LeaseRecord = {
      holderIdentity: this.identity,
      leaseDurationSeconds: this.leaseDurationMs / 1000,
      acquireTime: new Date(now),
      renewTime: new Date(now),
      leaseTransitions: 0,
    };
    let stored: StoredLease | undefined;
    try {
      stored = await this.store.get();
    } catch (error) {
      this.logger.warn('reading the lease failed', { error: apiErrorSummary(error) });
      return 'failed';
    }
    if (stored === undefined) {
      try {
        this.observe(await this.store.create(mine), this.clock.now());
        return 'acquired';
      } catch (error) {
        this.logger.info('creating the lease failed', { error: apiErrorSummary(error) });
        return 'failed';
      }
    }

    this.observe(stored, now);
    const holder = stored.record.holderIdentity ?? '';
    const durationMs = (stored.record.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
    if (holder !== '' && holder !== this.identity && this.observedTime + durationMs > now) return 'held-by-other';

    const next: LeaseRecord =
      holder === this.identity
        ? { ...mine, acquireTime: stored.record.acquireTime ?? mine.acquireTime, leaseTransitions: stored.record.leaseTransitions ?? 0 }
        : { ...mine, leaseTransitions: (stored.record.leaseTransitions ?? 0) + 1 };
    try {
      this.observe(await this.store.update(next, stored.resourceVersion), this.clock.now());
      return 'acquired';
    } catch (error) {
      // A 409 here is the normal outcome of a race with another candidate.
      this.logger.info('updating the lease failed', { error: apiErrorSummary(error) });
      return 'failed';
    }
  }

  /** Remembers when the record last changed, on our clock (the basis of expiry). */
  private observe(stored: StoredLease, now: number): void {
    if (this.observedRecord === undefined || !sameRecord(this.observedRecord, stored.record)) {
      this.observedRecord = stored.record;
      this.observedTime = now;
    }
    const holder = stored.record.holderIdentity ?? '';
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder !== '') {
        this.logger.info('new leader observed', { leader: holder });
        try {
          this.options.onNewLeader?.(holder);
        } catch (error) {
          this.logger.error('onNewLeader threw', { error });
        }
      }
    }
  }

  /** Gives the lease up if this process still holds it. Never throws. */
  private async release(): Promise<void> {
    try {
      const stored = await this.store.get();
      if (stored === undefined || stored.record.holderIdentity !== this.identity) return;
      const now = new Date(this.clock.now());
      await this.store.update({ ...stored.record, holderIdentity: undefined, leaseDurationSeconds: 1, acquireTime: now, renewTime: now }, stored.resourceVersion);
      this.observedHolder = '';
      this.logger.info('released the lease');
    } catch (error) {
      this.logger.warn('releasing the lease failed; it will expire on its own', { error: apiErrorSummary(error) });
    }
  }

  private async withDeadline(attempt: Promise<Attempt>, ms: number): Promise<Attempt> {
    const timeout = new AbortController();
    const timer = sleep(this.clock, ms, timeout.signal).then((): Attempt => 'failed');
    try {
      // A late success is ignored: believing we failed when we renewed is the safe mistake.
      return await Promise.race([attempt, timer]);
    } finally {
      timeout.abort();
    }
  }
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    (a.holderIdentity ?? '') === (b.holderIdentity ?? '') &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    timeValue(a.acquireTime) === timeValue(b.acquireTime) &&
    timeValue(a.renewTime) === timeValue(b.renewTime) &&
    (a.leaseTransitions ?? 0) === (b.leaseTransitions ?? 0)
  );
}

function timeValue(time: Date | string | undefined): number | undefined {
  if (time === undefined) return undefined;
  return (time instanceof Date ? time : new Date(time)).getTime();
}

function microTime(time: Date | string | undefined): V1MicroTime | undefined {
  const value = timeValue(time);
  return value === undefined ? undefined : new V1MicroTime(value);
}

/** A LeaseStore on the API server: coordination.k8s.io/v1 Lease `namespace/name`. */
export function kubeLeaseStore(kubeConfig: KubeConfig, namespace: string, name: string): LeaseStore {
  const api = kubeConfig.makeApiClient(CoordinationV1Api);
  const toStored = (lease: V1Lease): StoredLease => {
    const spec = lease.spec ?? {};
    return {
      resourceVersion: lease.metadata?.resourceVersion ?? '',
      record: {
        holderIdentity: spec.holderIdentity,
        leaseDurationSeconds: spec.leaseDurationSeconds,
        // Deserialised as strings (client-node does not know the MicroTime format).
        acquireTime: spec.acquireTime as Date | string | undefined,
        renewTime: spec.renewTime as Date | string | undefined,
        leaseTransitions: spec.leaseTransitions,
      },
    };
  };
  const toSpec = (record: LeaseRecord): V1Lease['spec'] => ({
    holderIdentity: record.holderIdentity,
    leaseDurationSeconds: record.leaseDurationSeconds,
    acquireTime: microTime(record.acquireTime),
    renewTime: microTime(record.renewTime),
    leaseTransitions: record.leaseTransitions,
  });
  return {
    async get() {
      try {
        return toStored(await api.readNamespacedLease({ name, namespace }));
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    },
    async create(record) {
      const body: V1Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: toSpec(record) };
      return toStored(await api.createNamespacedLease({ namespace, body }));
    },
    async update(record, resourceVersion) {
      const body: V1Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace, resourceVersion }, spec: toSpec(record) };
      return toStored(await api.replaceNamespacedLease({ name, namespace, body }));
    },
  };
}
