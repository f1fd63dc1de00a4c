/**
 * Sequence marks from the kernel's own reports (XFRMNLGRP_AEVENTS), between reconciles.
 *
 * Why: a reconcile persists the marks of the owned outbound SAs it dumps, but only once per
 * pass (every resync, or on drift). A busy SA's counter runs far ahead of its mark in between,
 * and the margin of a resume (../engine/sequence-rule.ts) must then be sized for the whole gap.
 * With a listener on XFRMNLGRP_AEVENTS the kernel reports each SA's replay state every
 * SEQUENCE_REPORT_PACKETS packets (the replay threshold every SA is created with,
 * ../xfrm/messages.ts) and on its event timer (sysctl net.core.xfrm_aevent_etime), as HA IPsec
 * gateways use it. This watch turns those reports into marks, at threshold crossings and no more
 * often than `usageFromObservation` says (PERSIST_STEP packets or PERSIST_INTERVAL_SECONDS):
 * never a disk write per packet.
 *
 * A report names an SA only by (daddr, SPI, protocol, mark); its key — the name in the usage
 * history — is known from the last reconcile's dump (`track`). A report of another incarnation
 * of the identity (its add time differs) is ignored until the next pass tracks it: a mark is
 * only ever written for the key that counted it. Marks are raised, never lowered, and never
 * revive a key retired meanwhile (../ownership/ledger.ts raiseMarks).
 */
import { stateKey } from '../plan/identity.js';
import { repeatsNoNonce, usageFromObservation } from '../engine/sequence-rule.js';
import { provesOwnership, type OwnershipView } from '../ownership/settle.js';
import type { KeyUsage, UsageView } from '../ownership/usage.js';
import { reportedSequence, type SequenceReport } from '../xfrm/aevent-codec.js';
import type { SecurityAssociation, StateId } from '../xfrm/types.js';

/** What the watch needs from the ledger. */
export interface MarkStore extends OwnershipView, UsageView {
  raiseMarks(marks: readonly KeyUsage[]): Promise<number>;
}

/** What the watch needs from the kernel: thresholds of SAs created before NEWSA carried one. */
export interface ThresholdAccess {
  readSequence(id: StateId): Promise<SequenceReport | undefined>;
  setReplayThreshold(id: StateId, packets: number): Promise<void>;
}

interface Tracked {
  readonly id: StateId;
  readonly usageKey: string;
  readonly esn: boolean;
  readonly addTime: bigint;
}

export interface SequenceWatchOptions {
  readonly store: () => MarkStore;
  /** The replay threshold owned SAs must have (SEQUENCE_REPORT_PACKETS). */
  readonly threshold: number;
  readonly kernel?: () => ThresholdAccess;
  readonly now?: () => number;
  /** A mark written (for the metric). */
  readonly persisted?: (count: number) => void;
  /** A write or a threshold change failed: the next report or pass tries again. */
  readonly failed?: (what: string, error: unknown) => void;
}

export class SequenceWatch {
  readonly #options: SequenceWatchOptions;
  #tracked = new Map<string, Tracked>();
  /** Marks due and not yet written, by usage key (a later report replaces an earlier one). */
  readonly #pending = new Map<string, KeyUsage>();
  /** Identities (with add time) whose threshold was checked in this process. */
  #checked = new Set<string>();
  #writing: Promise<void> | undefined;
  #reports = 0;

  constructor(options: SequenceWatchOptions) {
    this.#options = options;
  }

  /** Reports received for a tracked SA since start (for tests and logs). */
  get reports(): number {
    return this.#reports;
  }

  /**
   * After a reconcile pass: the owned outbound SAs of its dump are the ones whose reports count.
   * SAs this process has not seen yet get their replay threshold checked (and set) in the
   * background: an SA created by an older version reports every other packet otherwise.
   */
  track(states: readonly SecurityAssociation[]): void {
    const tracked = new Map<string, Tracked>();
    const checked = new Set<string>();
    const unchecked = this.#trackInto(states, tracked, checked);
    this.#tracked = tracked;
    this.#checked = checked; // only the SAs of this dump: the set does not grow
    if (unchecked.length > 0 && this.#options.kernel) void this.#ensureThresholds(unchecked);
  }

  /**
   * After a targeted repair (./drift-repair.ts): the SAs of these identities as read now replace
   * what the last dump showed of them (an SA added again has a new add time, whose reports
   * count from now on); every other tracked SA stays.
   */
  retrack(keys: ReadonlySet<string>, states: readonly SecurityAssociation[]): void {
    for (const key of keys) this.#tracked.delete(key);
    const unchecked = this.#trackInto(states, this.#tracked, this.#checked);
    if (unchecked.length > 0 && this.#options.kernel) void this.#ensureThresholds(unchecked);
  }

  /** Adds the owned SAs of `states` to `tracked`; returns those whose threshold is not checked yet. */
  #trackInto(states: readonly SecurityAssociation[], tracked: Map<string, Tracked>, checked: Set<string>): StateId[] {
    const store = this.#options.store();
    const records = store.records();
    const unchecked: StateId[] = [];
    for (const sa of states) {
      if (repeatsNoNonce(sa)) continue;
      const key = stateKey(sa.id);
      const record = records.get(key);
      if (!record || !provesOwnership(record, sa, store)) continue;
      const addTime = sa.observed?.current.addTime ?? 0n;
      tracked.set(key, { id: sa.id, usageKey: store.usageKey(sa), esn: sa.flags.includes('esn'), addTime });
      const incarnation = `${key} ${addTime}`;
      if (!this.#checked.has(incarnation)) unchecked.push(sa.id);
      checked.add(incarnation);
    }
    return unchecked;
  }

  /** One report from the kernel monitor. */
  observe(report: SequenceReport): void {
    const tracked = this.#tracked.get(stateKey(report.id));
    if (!tracked) return;
    if (report.current && report.current.addTime !== tracked.addTime) return; // another incarnation
    this.#reports += 1;
    const store = this.#options.store();
    const now = (this.#options.now ?? wallClock)();
    const previous = this.#pending.get(tracked.usageKey) ?? store.usage(tracked.usageKey);
    const mark = usageFromObservation(tracked.usageKey, previous, reportedSequence(report, tracked.esn), now);
    if (!mark) return;
    this.#pending.set(tracked.usageKey, mark);
    this.#schedule();
  }

  /** Resolves once every mark due so far is written (or its write failed). */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
  }

  #schedule(): void {
    if (this.#writing) return;
    this.#writing = (async () => {
      while (this.#pending.size > 0) {
        const marks = [...this.#pending.values()];
        this.#pending.clear();
        try {
          const written = await this.#options.store().raiseMarks(marks);
          if (written > 0) this.#options.persisted?.(written);
        } catch (error) {
          // Not retried in a loop: the next report (or the next pass's dump) brings a mark again.
          this.#options.failed?.('persisting sequence marks', error);
          break;
        }
      }
    })().finally(() => {
      this.#writing = undefined;
    });
  }

  async #ensureThresholds(ids: readonly StateId[]): Promise<void> {
    const kernel = this.#options.kernel!();
    for (const id of ids) {
      try {
        const report = await kernel.readSequence(id);
        if (report && report.replayThreshold !== this.#options.threshold) await kernel.setReplayThreshold(id, this.#options.threshold);
      } catch (error) {
        this.#options.failed?.('setting the replay threshold of an owned SA', error);
      }
    }
  }
}

function wallClock(): number {
  return Math.floor(Date.now() / 1000);
}
