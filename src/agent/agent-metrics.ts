/**
 * The agent's own metrics (docs/operations.md lists them): what it changed in the kernel, what
 * the kernel refused, drift, what the tables hold, the kernel's XFRM error counters, and how
 * close owned SAs are to their limits. Labels are bounded: errno names, directions, counter
 * names; a resource name only on the opt-in per-SA series.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Step } from '../plan/planner.js';
import type { StepFailure } from '../apply/applier.js';
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import type { OwnershipRecord } from '../ownership/records.js';
import { stateKey, policyKey } from '../plan/identity.js';
import { XFRM_INFINITY } from '../xfrm/types.js';
import { MeshMetrics } from './mesh-metrics.js';

const P = 'ipsec_operator_';
const REKEY_REASONS = ['NeedsRekey', 'Expired'] as const;

export interface TableSnapshot {
  readonly states: readonly SecurityAssociation[];
  readonly policies: readonly SecurityPolicy[];
  readonly owned: ReadonlyMap<string, OwnershipRecord>;
  /** SA keys that carry inbound traffic (by policy templates / direction), for the direction label. */
  readonly inboundStates: ReadonlySet<string>;
  readonly nowSeconds: number;
}

export class AgentMetrics {
  readonly kernelChanges: Counter<'operation'>;
  readonly kernelApplyErrors: Counter<'errno'>;
  readonly driftRepairs: Counter;
  /** Reconcile passes that repaired drift, by path: `targeted` (the touched identities, ./drift-repair.ts) or `full`. */
  readonly driftRepairPasses: Counter<'path'>;
  readonly ownedStates: Gauge<'direction'>;
  readonly ownedPolicies: Gauge<'direction'>;
  readonly foreignStates: Gauge;
  readonly foreignPolicies: Gauge<'direction'>;
  readonly resourcesFailed: Gauge;
  readonly rekeyRequired: Gauge<'reason'>;
  readonly xfrmStat: Counter<'counter'>;
  readonly expireEvents: Counter<'kind'>;
  readonly sequenceMarks: Counter;
  readonly sequenceSpaceUsed: Gauge;
  readonly lifetimeUsed: Gauge;
  readonly lastSync: Gauge;
  readonly saBytes: Counter<'resource'> | undefined;
  readonly saPackets: Counter<'resource'> | undefined;
  /** The node's side of each IpsecMesh (./mesh-metrics.ts). */
  readonly mesh: MeshMetrics;
  #xfrmStat: ReadonlyMap<string, number> = new Map();
  #perSa: { bytes: Map<string, number>; packets: Map<string, number> } = { bytes: new Map(), packets: new Map() };

  constructor(registry: Registry, options: { perSaMetrics: boolean; readXfrmStat: () => Promise<ReadonlyMap<string, number>> }) {
    const registers = [registry];
    this.kernelChanges = new Counter({ name: `${P}kernel_changes_total`, help: 'Kernel XFRM writes that succeeded, by operation.', labelNames: ['operation'], registers });
    this.kernelApplyErrors = new Counter({ name: `${P}kernel_apply_errors_total`, help: 'Kernel refusals of XFRM writes, by errno.', labelNames: ['errno'], registers });
    this.driftRepairs = new Counter({ name: `${P}drift_repairs_total`, help: 'Owned kernel entries restored after someone else changed or removed them.', registers });
    this.driftRepairPasses = new Counter({
      name: `${P}drift_repair_passes_total`,
      help: 'Reconcile passes run for drift, by path: targeted (only the identities the kernel events named were read and planned) or full (every table dumped).',
      labelNames: ['path'],
      registers,
    });
    this.ownedStates = new Gauge({ name: `${P}owned_states`, help: 'SAs this agent owns, by direction.', labelNames: ['direction'], registers });
    this.ownedPolicies = new Gauge({ name: `${P}owned_policies`, help: 'Policies this agent owns, by direction.', labelNames: ['direction'], registers });
    this.foreignStates = new Gauge({ name: `${P}foreign_states`, help: 'SAs of other software in the kernel (left untouched).', registers });
    this.foreignPolicies = new Gauge({ name: `${P}foreign_policies`, help: 'Policies of other software in the kernel, by direction.', labelNames: ['direction'], registers });
    this.resourcesFailed = new Gauge({ name: `${P}resources_failed`, help: 'Resources selected by this node that are not applied.', registers });
    this.rekeyRequired = new Gauge({
      name: `${P}rekey_required`,
      help: 'Resources whose SA key this agent will not install again until it is rekeyed (new SPI and key), by reason: NeedsRekey (its sequence counter cannot be proven to continue) or Expired (hard lifetime reached).',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of REKEY_REASONS) this.rekeyRequired.set({ reason }, 0);
    const stats = () => this.#xfrmStat;
    const read = options.readXfrmStat;
    this.xfrmStat = new Counter({
      name: `${P}xfrm_stat_packets_total`,
      help: "The kernel's XFRM error counters (/proc/net/xfrm_stat) of the agent's network namespace.",
      labelNames: ['counter'],
      registers,
      // Read at scrape time: the kernel keeps the running totals, we only expose them.
      async collect() {
        const values = await read().catch(() => stats());
        this.reset();
        for (const [counter, value] of values) this.inc({ counter }, value);
      },
    });
    this.expireEvents = new Counter({ name: `${P}sa_expire_events_total`, help: 'EXPIRE events for owned SAs, by kind (soft, hard).', labelNames: ['kind'], registers });
    this.sequenceMarks = new Counter({
      name: `${P}sequence_marks_persisted_total`,
      help: "Sequence marks of owned SA keys written to the ledger from the kernel's AEVENTS reports (threshold crossings and timer reports, at most one per PERSIST_STEP packets or minute per key).",
      registers,
    });
    this.sequenceSpaceUsed = new Gauge({ name: `${P}sequence_space_used_ratio`, help: 'Highest outbound sequence number of any owned SA over its space (2^32, or 2^64 with ESN).', registers });
    this.lifetimeUsed = new Gauge({ name: `${P}sa_lifetime_used_ratio`, help: 'Largest fraction of a hard limit (bytes, packets, seconds since added) any owned SA has used.', registers });
    this.lastSync = new Gauge({ name: `${P}last_sync_timestamp_seconds`, help: 'When the kernel last matched the desired state (Unix time).', registers });
    this.mesh = new MeshMetrics(registry);
    for (const kind of ['soft', 'hard']) this.expireEvents.inc({ kind }, 0);
    this.driftRepairs.inc(0);
    for (const path of ['targeted', 'full']) this.driftRepairPasses.inc({ path }, 0);
    if (options.perSaMetrics) {
      const perSa = () => this.#perSa;
      this.saBytes = new Counter({
        name: `${P}sa_bytes_total`,
        help: 'Bytes through the SAs of each resource (opt-in: --per-sa-metrics).',
        labelNames: ['resource'],
        registers,
        collect() {
          this.reset();
          for (const [resource, value] of perSa().bytes) this.inc({ resource }, value);
        },
      });
      this.saPackets = new Counter({
        name: `${P}sa_packets_total`,
        help: 'Packets through the SAs of each resource (opt-in: --per-sa-metrics).',
        labelNames: ['resource'],
        registers,
        collect() {
          this.reset();
          for (const [resource, value] of perSa().packets) this.inc({ resource }, value);
        },
      });
    }
  }

  /** From the pass's resource reports: how many resources wait for a new key, by reason. */
  recordRekeyRequired(reports: readonly { readonly reason?: string }[]): void {
    for (const reason of REKEY_REASONS) this.rekeyRequired.set({ reason }, reports.filter((report) => report.reason === reason).length);
  }

  recordApply(applied: readonly Step[], failures: readonly StepFailure[]): void {
    for (const step of applied) {
      const operations = step.op === 'replace' ? ['delete', 'add'] : [step.op === 'create' ? 'add' : step.op];
      for (const operation of operations) this.kernelChanges.inc({ operation: `${operation}_${step.target === 'state' ? 'state' : 'policy'}` });
    }
    for (const failure of failures) this.kernelApplyErrors.inc({ errno: failure.code });
  }

  recordTables(snapshot: TableSnapshot): void {
    const owned = snapshot.owned;
    const ownedStates = snapshot.states.filter((sa) => owned.has(stateKey(sa.id)));
    this.ownedStates.set({ direction: 'in' }, ownedStates.filter((sa) => snapshot.inboundStates.has(stateKey(sa.id))).length);
    this.ownedStates.set({ direction: 'out' }, ownedStates.filter((sa) => !snapshot.inboundStates.has(stateKey(sa.id))).length);
    this.foreignStates.set(snapshot.states.length - ownedStates.length);
    for (const direction of ['in', 'out', 'fwd'] as const) {
      const policies = snapshot.policies.filter((policy) => policy.id.direction === direction);
      const ownedCount = policies.filter((policy) => owned.has(policyKey(policy.id))).length;
      this.ownedPolicies.set({ direction }, ownedCount);
      this.foreignPolicies.set({ direction }, policies.length - ownedCount);
    }
    let sequence = 0;
    let lifetime = 0;
    const bytes = new Map<string, number>();
    const packets = new Map<string, number>();
    for (const sa of ownedStates) {
      const counters = sa.observed;
      if (!counters) continue;
      const replay = counters.replayState;
      if (replay) {
        const esn = sa.flags.includes('esn');
        const used = esn ? (replay.outboundSequenceHigh * 2 ** 32 + replay.outboundSequence) / 2 ** 64 : replay.outboundSequence / 2 ** 32;
        sequence = Math.max(sequence, used);
      }
      const ratio = (used: bigint, limit: bigint) => (limit === XFRM_INFINITY || limit === 0n ? 0 : Number(used) / Number(limit));
      const age = counters.current.addTime === 0n ? 0n : BigInt(Math.max(0, snapshot.nowSeconds - Number(counters.current.addTime)));
      lifetime = Math.max(
        lifetime,
        ratio(counters.current.bytes, sa.lifetime.hardByteLimit),
        ratio(counters.current.packets, sa.lifetime.hardPacketLimit),
        ratio(age, sa.lifetime.hardAddExpiresSeconds),
      );
      const resource = owned.get(stateKey(sa.id))?.resource ?? 'unknown';
      bytes.set(resource, (bytes.get(resource) ?? 0) + Number(counters.current.bytes));
      packets.set(resource, (packets.get(resource) ?? 0) + Number(counters.current.packets));
    }
    this.sequenceSpaceUsed.set(sequence);
    this.lifetimeUsed.set(lifetime);
    this.#perSa = { bytes, packets };
  }
}

/** Parses /proc/net/xfrm_stat: lines of `XfrmInError   0`. */
export function parseXfrmStat(text: string): Map<string, number> {
  const counters = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(Xfrm\w+)\s+(\d+)\s*$/.exec(line);
    if (match) counters.set(match[1]!, Number(match[2]));
  }
  return counters;
}
