/**
 * Which kernel events mean drift, and the drift bookkeeping between two reconciles. Pure: the
 * kernel monitor (./kernel-monitor.ts) feeds it events, the reconcile takes what it gathered.
 *
 * Events caused by our own request socket are the echo of our own changes and are ignored. An
 * event someone else caused names the identity it touched (the SA's or the policy's, see
 * `touchedBy`): one that neither the ledger nor the desired tables hold is another program's
 * entry, changes nothing of ours and queues nothing. One of ours is gathered for a targeted
 * repair (./drift-repair.ts: just those identities read, planned and applied). What names no
 * identity — a lost event (an overrun: we no longer know what happened), a flush, an SA
 * event that only shares the kernel's lookup (destination, SPI, protocol) with ours under
 * another mark, more identities than a targeted repair takes — asks for the full reconcile.
 *
 * A soft expiry is counted for an SA we own but changes nothing; a hard expiry removed an
 * entry: the reconcile it triggers first retires the SA's key (takeExpired), so that the repair
 * never installs that key again (../engine/sequence-rule.ts, Expired). The kernel reports an
 * expiry without the SA's algorithms and keys (ExpiredState): the pass finds the key in its
 * last dump.
 */
import { isOwnEvent, type XfrmEvent } from '../xfrm/events.js';
import { policyKey, stateKey } from '../plan/identity.js';
import type { ExpiredState, PolicyId, StateId } from '../xfrm/types.js';

/**
 * At most this many identities gathered for one targeted repair; beyond it a full reconcile
 * (a read is one round trip per identity, a dump one message per entry of every table).
 */
export const MAX_TARGETED_IDENTITIES = 64;

/** One kernel identity an event touched, with what a GETSA / GETPOLICY asks for. */
export type TouchedIdentity =
  | { readonly target: 'state'; readonly key: string; readonly id: StateId }
  | { readonly target: 'policy'; readonly key: string; readonly id: PolicyId };

/** What an event says about our tables, before the filter. */
export type EventScope =
  | { readonly kind: 'none' }
  | { readonly kind: 'identity'; readonly touched: TouchedIdentity }
  | { readonly kind: 'full'; readonly why: string };

/** How the agent schedules a repair: the whole node, or the gathered identities. */
export type RepairPath = 'full' | 'targeted';

/** Whether an identity is ours: `targeted` (ledger or desired), `full` (may be, see the module comment), `none`. */
export type Concern = 'targeted' | 'full' | 'none';

export interface DriftWatchOptions {
  /** The netlink port id of our request socket (events it caused carry it). */
  readonly ownPortId: () => number;
  /** Whether the SA with this identity key is ours (in the ledger). */
  readonly owns: (stateKey: string) => boolean;
  /**
   * Whether an identity someone else touched is ours to repair: in the ledger or in the desired
   * tables of the last full pass. Default: `owns` for SAs and policies alike.
   */
  readonly concerns?: (touched: TouchedIdentity) => Concern;
  /** Called once per event that may be drift: enqueue a reconcile of that path. */
  readonly trigger: (path: RepairPath) => void;
  /** An owned SA reached a lifetime limit. */
  readonly expired?: (hard: boolean, state: ExpiredState) => void;
  readonly now?: () => number;
}

/** What the watch gathered since the last `take()`. */
export interface DriftSuspicion {
  readonly suspected: boolean;
  /** When the first unexplained event of this drift arrived (ms since the epoch). */
  readonly since: number | undefined;
}

/** What a targeted repair takes: the identities touched, and when the first event came. */
export interface TouchedSince {
  readonly touched: readonly TouchedIdentity[];
  readonly since: number;
}

/**
 * The identity an event touched, or that it needs the full reconcile, or nothing of any table
 * (pure; ownership is not asked here). The selector or SA id in the event is the identity the
 * kernel keys the entry by, so DELPOLICY, NEWPOLICY, UPDPOLICY, a policy's hard expiry, DELSA,
 * NEWSA, UPDSA and an SA's hard expiry each name one.
 */
export function touchedBy(event: XfrmEvent): EventScope {
  switch (event.kind) {
    case 'overrun':
      return { kind: 'full', why: `events lost (${event.reason})` };
    case 'states-flushed':
    case 'policies-flushed':
      return { kind: 'full', why: event.kind === 'states-flushed' ? 'SAs flushed' : 'policies flushed' };
    case 'state-added':
    case 'state-updated':
    case 'state-deleted':
      return touchedState(event.state.id);
    case 'state-expired':
      return event.hard ? touchedState(event.state.id) : { kind: 'none' };
    case 'policy-added':
    case 'policy-updated':
    case 'policy-deleted':
      return touchedPolicy(event.policy.id);
    case 'policy-expired':
      return event.hard ? touchedPolicy(event.policy.id) : { kind: 'none' };
    // An ACQUIRE asks a key manager for an SA (the kernel's larval entry is no entry of ours),
    // the default policy is not the agent's, a sequence report is the sequence watch's.
    case 'acquire':
    case 'default-policy-changed':
    case 'sequence-reported':
      return { kind: 'none' };
  }
}

function touchedState(id: StateId): EventScope {
  return { kind: 'identity', touched: { target: 'state', key: stateKey(id), id } };
}

function touchedPolicy(id: PolicyId): EventScope {
  return { kind: 'identity', touched: { target: 'policy', key: policyKey(id), id } };
}

export class DriftWatch {
  /** An event asked for the full reconcile since the last full pass took the suspicion. */
  private fullDue = false;
  private readonly touched = new Map<string, TouchedIdentity>();
  private since: number | undefined;
  private repairs = 0;
  private expiredStates: ExpiredState[] = [];

  constructor(private readonly options: DriftWatchOptions) {}

  observe(event: XfrmEvent): void {
    if (event.kind === 'state-expired') {
      if (this.options.owns(stateKey(event.state.id))) {
        this.options.expired?.(event.hard, event.state);
        if (event.hard) this.expiredStates.push(event.state);
      }
      if (!event.hard) return;
    }
    if (event.kind !== 'overrun' && isOwnEvent(event, this.options.ownPortId())) return;
    const scope = touchedBy(event);
    if (scope.kind === 'none') return;
    if (scope.kind === 'full') return this.suspect('full');
    const concern = this.concern(scope.touched);
    if (concern === 'none') return;
    if (concern === 'full') return this.suspect('full');
    this.touched.set(scope.touched.key, scope.touched);
    this.suspect(this.touched.size > MAX_TARGETED_IDENTITIES ? 'full' : 'targeted');
  }

  private concern(touched: TouchedIdentity): Concern {
    if (this.options.concerns) return this.options.concerns(touched);
    return this.options.owns(touched.key) ? 'targeted' : 'none';
  }

  private suspect(path: RepairPath): void {
    if (path === 'full') this.fullDue = true;
    this.since ??= (this.options.now ?? Date.now)();
    // Once a full pass is due, it repairs the gathered identities too: no targeted pass first.
    this.options.trigger(this.fullDue ? 'full' : path);
  }

  /**
   * Hands the suspicion to a full reconcile that is about to dump the kernel, and clears it
   * (the identities gathered for a targeted repair too: the dump covers them).
   */
  take(): DriftSuspicion {
    const taken = { suspected: this.fullDue || this.touched.size > 0, since: this.since };
    this.fullDue = false;
    this.touched.clear();
    this.since = undefined;
    return taken;
  }

  /** Whether a targeted repair has identities waiting (what takeTouched would hand over). */
  get repairPending(): boolean {
    return !this.fullDue && this.touched.size > 0;
  }

  /**
   * Hands the gathered identities to a targeted repair, and clears them; undefined when there
   * are none, or when a full reconcile is due (it is queued and repairs them).
   */
  takeTouched(): TouchedSince | undefined {
    if (!this.repairPending) return undefined;
    const taken = { touched: [...this.touched.values()], since: this.since ?? (this.options.now ?? Date.now)() };
    this.touched.clear();
    this.since = undefined;
    return taken;
  }

  /**
   * Gives identities back that a targeted repair did not repair (it could not run, or must
   * leave them to the full pass): the next full pass takes them, with the first event's time.
   */
  putBackTouched(taken: TouchedSince): void {
    for (const touched of taken.touched) if (!this.touched.has(touched.key)) this.touched.set(touched.key, touched);
    this.since = this.since === undefined ? taken.since : Math.min(this.since, taken.since);
  }

  /** Whether a full reconcile is due for drift (an overrun, a flush, too many identities). */
  get fullPending(): boolean {
    return this.fullDue;
  }

  /** Owned SAs the kernel removed at a hard lifetime since the last call (their keys must be retired before any repair). */
  takeExpired(): ExpiredState[] {
    const taken = this.expiredStates;
    this.expiredStates = [];
    return taken;
  }

  /** Gives expiries back that a pass could not retire (it failed; the next one tries again). */
  putBackExpired(states: readonly ExpiredState[]): void {
    this.expiredStates.unshift(...states);
  }

  /** Counts kernel changes that repaired drift; returns the total since start. */
  repaired(changes: number): number {
    this.repairs += changes;
    return this.repairs;
  }

  get totalRepairs(): number {
    return this.repairs;
  }
}
