/**
 * Which kernel events mean drift, and the drift bookkeeping between two reconciles. Pure: the
 * kernel monitor (./kernel-monitor.ts) feeds it events, the reconcile takes what it gathered.
 *
 * Events caused by our own request socket are the echo of our own changes and are ignored;
 * any other change to the tables may be drift, and so is a lost event (an overrun: we no longer
 * know what happened). A soft expiry is counted for an SA we own but changes nothing; a hard
 * expiry removed an entry: the reconcile it triggers first retires the SA's key (takeExpired),
 * so that the repair never installs that key again (../engine/sequence-rule.ts, Expired). The
 * kernel reports an expiry without the SA's algorithms and keys (ExpiredState): the pass finds
 * the key in its last dump.
 */
import { isOwnEvent, type XfrmEvent } from '../xfrm/events.js';
import { stateKey } from '../plan/identity.js';
import type { ExpiredState } from '../xfrm/types.js';

export interface DriftWatchOptions {
  /** The netlink port id of our request socket (events it caused carry it). */
  readonly ownPortId: () => number;
  /** Whether the SA with this identity key is ours (in the ledger). */
  readonly owns: (stateKey: string) => boolean;
  /** Called once per event that may be drift: enqueue a reconcile. */
  readonly trigger: () => void;
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

export class DriftWatch {
  private suspected = false;
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
    if (event.kind === 'overrun' || !isOwnEvent(event, this.options.ownPortId())) {
      this.suspected = true;
      this.since ??= (this.options.now ?? Date.now)();
      this.options.trigger();
    }
  }

  /** Hands the suspicion to a reconcile that is about to read the kernel, and clears it. */
  take(): DriftSuspicion {
    const taken = { suspected: this.suspected, since: this.since };
    this.suspected = false;
    this.since = undefined;
    return taken;
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
