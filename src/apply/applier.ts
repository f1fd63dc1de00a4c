/**
 * The applier: carries out a plan against the kernel, stage by stage, with the ownership
 * ledger ahead of every kernel change, and undoes what it did when anything goes wrong, so a
 * plan is applied whole or not at all.
 *
 * Per stage: the intents of its steps are made durable (../ownership/records.ts), then the
 * stage goes out as one pipelined batch (the kernel handles the messages of one batch in
 * order; a replacement is a delete immediately followed by an add). Nothing is settled from
 * acks: the next dump settles every record (../ownership/settle.ts), which is what makes an
 * answer that never came (a timeout, ENOBUFS, a crash) no different from one that did.
 *
 * When a step is refused, an outcome is unknown, or the ledger cannot be written, the run
 * stops before its next kernel change and rolls back: it dumps the kernel and plans, through
 * the same planner, the way back to the entries the plan started from, for the identities this
 * run touched. The records written before the run's kernel changes already cover that way back
 * (their intents name both the new and the previous content), so a rollback still works when
 * the ledger cannot be written at all (a full disk).
 *
 * Sequence numbers (../engine/sequence-rule.ts): the intent of every SA it adds carries the key's
 * usage mark (the resume value, or 0 for a new key) in the same ledger line, so no key reaches
 * the kernel without a history; an SA the rollback adds back resumes past the counter the plan's
 * dump showed, by the same rule. A new key whose add the kernel refused with an errno has that
 * install mark forgotten again (it never sent a packet); an unknown outcome keeps it.
 */
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import type { XfrmBatchRequest } from '../xfrm/client.js';
import { plan as planTables, type DesiredEntry, type ObservedTables, type Plan, type Step } from '../plan/planner.js';
import type { Intent, OwnershipRecord } from '../ownership/records.js';
import type { OwnershipView } from '../ownership/settle.js';
import type { KeyUsage, UsageView } from '../ownership/usage.js';
import type { LedgerCommit } from '../ownership/ledger.js';
import { observedSequence, repeatsNoNonce, resumeAfterDump, usageAtInstall } from '../engine/sequence-rule.js';

/** One kernel write: the XFRM client's batch request (a type only; the applier does no I/O). */
export type KernelChange = XfrmBatchRequest;

export type KernelOutcome = { readonly ok: true } | { readonly ok: false; readonly errno: number; readonly code: string; readonly message: string };

/** The kernel as the applier needs it: pipelined batches, and a dump to learn what happened. */
export interface KernelWriter {
  /** Sends changes in one pipelined batch; one outcome per change, in order. Throws when the outcome of the batch is unknown. */
  apply(changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]>;
  /** A consistent dump of both tables. */
  dump(): Promise<ObservedTables>;
}

/** The ledger as the applier needs it (../ownership/ledger.ts implements it). */
export interface OwnershipStore extends OwnershipView, UsageView {
  commit(changes: LedgerCommit): Promise<void>;
}

export interface StepFailure {
  readonly step: Step;
  readonly errno: number;
  readonly code: string;
  /** The kernel's reason (extended ack), the errno's text, or why the outcome is unknown. */
  readonly message: string;
}

export interface ApplyReport {
  /** Steps the kernel accepted and that stay applied. */
  readonly applied: readonly Step[];
  readonly failures: readonly StepFailure[];
  /** Why the run stopped without a kernel refusal: the ledger could not be written, or an outcome is unknown. */
  readonly stopped?: string;
  /** Changes made to go back to where the run started (steps of the rollback plan). */
  readonly rolledBack: readonly Step[];
  /** Undo operations that were refused or could not be planned: the kernel may now hold a partial plan. */
  readonly rollbackFailures: readonly StepFailure[];
  /**
   * New keys (no usage history before their stage) whose add the kernel refused with a definite
   * errno: they never counted a packet. Their install marks are forgotten by whoever settles
   * their records (../engine/converge.ts), in the same ledger write, never before: a mark gone
   * while an intent for the content stays reads as "installed before, no mark" (NeedsRekey).
   */
  readonly neverInstalled?: readonly NeverInstalled[];
}

/** A refused new key: its usage key and the SA (its record's key is the step's). */
export interface NeverInstalled {
  readonly usageKey: string;
  readonly recordKey: string;
  readonly sa: SecurityAssociation;
}

export interface ApplyOptions {
  /** Wall-clock seconds, for intents (the kernel stamps entries with the same clock). */
  readonly now?: () => number;
  /** Sequence marks from the plan's dump to persist with its first ledger write. */
  readonly usage?: readonly KeyUsage[];
}

const ABSENT = new Set(['ENOENT', 'ESRCH']);
/** Codes after which the kernel may or may not have carried out the change. */
const UNKNOWN_OUTCOME = new Set(['ENOBUFS', 'ETIMEDOUT', 'ECANCELED', 'EINTR', 'EAGAIN']);

/** The kernel changes that carry out one step. */
export function changesFor(step: Step): KernelChange[] {
  if (step.target === 'state') {
    switch (step.op) {
      case 'create':
        return [{ op: 'add-state', state: step.entry }];
      case 'update':
        return [{ op: 'update-state', state: step.entry }];
      case 'replace':
        return [{ op: 'delete-state', id: step.previous.id }, { op: 'add-state', state: step.entry }];
      case 'delete':
        return [{ op: 'delete-state', id: step.previous.id }];
    }
  }
  switch (step.op) {
    case 'create':
      return [{ op: 'add-policy', policy: step.entry }];
    case 'update':
      return [{ op: 'update-policy', policy: step.entry }];
    case 'replace':
      return [{ op: 'delete-policy', id: step.previous.id }, { op: 'add-policy', policy: step.entry }];
    case 'delete':
      return [{ op: 'delete-policy', id: step.previous.id }];
  }
}

/** The intent record written before a step's kernel change, or none (an in-place update). */
export function intentRecord(step: Step, ownership: OwnershipView, now: number): OwnershipRecord | undefined {
  const base = { key: step.key, target: step.target, resource: step.resource };
  const intent = (entry: SecurityAssociation | SecurityPolicy): Intent => ({ fingerprint: ownership.intentFingerprint(entry), notBefore: now });
  switch (step.op) {
    case 'update':
      return undefined; // the entry is ours before and after; UPD* keeps its incarnation
    case 'create':
      return { ...base, phase: 'creating', intents: [intent(step.entry)] };
    case 'replace':
    case 'delete': {
      const incarnation = ownership.incarnationOf(step.previous);
      const intents = step.op === 'replace' ? [intent(step.entry), intent(step.previous)] : [intent(step.previous)];
      if (!incarnation) return { ...base, phase: 'creating', intents };
      return { ...base, phase: step.op === 'replace' ? 'replacing' : 'deleting', incarnation, intents };
    }
  }
}

export async function applyPlan(plan: Plan, kernel: KernelWriter, ownership: OwnershipStore, options: ApplyOptions = {}): Promise<ApplyReport> {
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const applied: Step[] = [];
  const touched: Step[] = [];
  const marks = options.usage ?? [];
  const stages = groupByStage(plan.steps);
  // The settlement (records the dump already settles) is durable before any kernel change. It
  // rides in the first stage's intent write when that stage writes intents and the settlement
  // carries no sequence marks (an install mark is computed from the marks before it): one
  // fdatasync fewer before the first change — what a drift repair of one entry waits for — and
  // a crash finds either both (the same as after two writes) or neither (the ledger before the
  // run, which the next run settles again).
  const firstIntents = stages[0]?.flatMap((step) => intentRecord(step, ownership, now()) ?? []) ?? [];
  const settlement = { set: plan.ledger.set, remove: plan.ledger.remove };
  const ledgerSettled = settlement.set.length > 0 || settlement.remove.length > 0 || marks.length > 0;
  const settleWithFirstStage = ledgerSettled && marks.length === 0 && firstIntents.length > 0;
  if (ledgerSettled && !settleWithFirstStage) {
    try {
      await ownership.commit({ ...settlement, usage: marks });
    } catch (error) {
      return { applied: [], failures: [], stopped: ledgerProblem(error), rolledBack: [], rollbackFailures: [] };
    }
  }

  for (const [position, stage] of stages.entries()) {
    const intents = position === 0 ? firstIntents : stage.flatMap((step) => intentRecord(step, ownership, now()) ?? []);
    const usage = stage.flatMap((step) => installUsage(step, ownership, now()) ?? []);
    const newKeys = new Set(usage.filter((mark) => ownership.usage(mark.key) === undefined).map((mark) => mark.key));
    try {
      // An intent replaces what the settlement set for its key, as the second of two writes
      // would (one line holds one record per key; removals apply before the records set).
      if (position === 0 && settleWithFirstStage) await ownership.commit({ set: [...withoutKeysOf(settlement.set, intents), ...intents], remove: settlement.remove, usage });
      else if (intents.length > 0) await ownership.commit({ set: intents, usage });
    } catch (error) {
      return { ...(await rollBack(touched, kernel, ownership, now)), applied: [], failures: [], stopped: ledgerProblem(error) };
    }
    touched.push(...stage);
    const changes = stage.map(changesFor);
    let outcomes: readonly KernelOutcome[];
    try {
      outcomes = await kernel.apply(changes.flat());
    } catch (error) {
      const stopped = `the kernel's answer to ${stage.length} change(s) is unknown (${describeError(error)}); the next dump settles what happened`;
      return { ...(await rollBack(touched, kernel, ownership, now)), applied: [], failures: [], stopped };
    }
    const failures: StepFailure[] = [];
    let unknown: StepFailure | undefined;
    const neverInstalled: NeverInstalled[] = [];
    let cursor = 0;
    for (const [index, step] of stage.entries()) {
      const stepOutcomes = outcomes.slice(cursor, cursor + changes[index]!.length);
      cursor += changes[index]!.length;
      const failure = stepFailure(step, stepOutcomes);
      if (!failure) applied.push(step);
      else if (UNKNOWN_OUTCOME.has(failure.code)) unknown ??= failure;
      else failures.push(failure);
      const refusedNewKey = refusedInstall(step, stepOutcomes.at(-1), newKeys, ownership);
      if (refusedNewKey) neverInstalled.push(refusedNewKey);
    }
    if (failures.length > 0 || unknown) {
      const undone = await rollBack(touched, kernel, ownership, now);
      const stopped = unknown && `the kernel's answer to ${unknown.step.key} is unknown (${unknown.code}); the next dump settles what happened`;
      return { ...undone, applied: [], failures, neverInstalled, ...(stopped ? { stopped } : {}) };
    }
  }
  return { applied, failures: [], rolledBack: [], rollbackFailures: [] };
}

function stepFailure(step: Step, outcomes: readonly KernelOutcome[]): StepFailure | undefined {
  for (const [position, outcome] of outcomes.entries()) {
    if (outcome.ok) continue;
    // Deleting what is already gone reaches the goal (someone else removed it meanwhile).
    const isDelete = step.op === 'delete' || (step.op === 'replace' && position === 0);
    if (isDelete && ABSENT.has(outcome.code)) continue;
    return { step, errno: outcome.errno, code: outcome.code, message: outcome.message };
  }
  return undefined;
}

/**
 * Goes back to the entries the run started from, for the identities it touched: dump, plan
 * with the previous entries as the desired ones (an identity that had none is pruned), apply.
 * Intents for this plan are written when the ledger allows; when it does not, the records of
 * the run's own intents already cover every entry the way back adds or removes.
 */
async function rollBack(touched: readonly Step[], kernel: KernelWriter, ownership: OwnershipStore, now: () => number): Promise<Pick<ApplyReport, 'rolledBack' | 'rollbackFailures'>> {
  if (touched.length === 0) return { rolledBack: [], rollbackFailures: [] };
  const keys = new Set(touched.map((step) => step.key));
  const states: DesiredEntry<SecurityAssociation>[] = [];
  const policies: DesiredEntry<SecurityPolicy>[] = [];
  for (const step of touched) {
    if (step.op === 'create') continue;
    if (step.target === 'state') states.push({ resource: step.resource, entry: withResumedSequence(step.previous, ownership, now()) });
    else policies.push({ resource: step.resource, entry: step.previous });
  }
  let observed: ObservedTables;
  try {
    observed = await kernel.dump();
  } catch (error) {
    return { rolledBack: [], rollbackFailures: touched.map((step) => ({ step, errno: 0, code: 'EUNKNOWN', message: `could not read the kernel to roll back: ${describeError(error)}` })) };
  }
  const back = planTables({ desired: { states, policies }, observed, ownership });
  const steps = back.steps.filter((step) => keys.has(step.key));
  const rollbackFailures: StepFailure[] = back.conflicts
    .filter((conflict) => keys.has(conflict.key))
    .map((conflict) => ({ step: touched.find((step) => step.key === conflict.key)!, errno: 0, code: 'ECONFLICT', message: conflict.reason }));
  const rolledBack: Step[] = [];
  for (const stage of groupByStage(steps)) {
    const intents = stage.flatMap((step) => intentRecord(step, ownership, now()) ?? []);
    const usage = stage.flatMap((step) => installUsage(step, ownership, now()) ?? []);
    // Best effort: the run's own intents already cover these entries (see the module comment).
    if (intents.length > 0) await ownership.commit({ set: intents, usage }).catch(() => undefined);
    const changes = stage.map(changesFor);
    let outcomes: readonly KernelOutcome[];
    try {
      outcomes = await kernel.apply(changes.flat());
    } catch (error) {
      rollbackFailures.push(...stage.map((step) => ({ step, errno: 0, code: 'EUNKNOWN', message: describeError(error) })));
      continue;
    }
    let cursor = 0;
    for (const [index, step] of stage.entries()) {
      const failure = stepFailure(step, outcomes.slice(cursor, cursor + changes[index]!.length));
      cursor += changes[index]!.length;
      if (failure) rollbackFailures.push(failure);
      else rolledBack.push(step);
    }
  }
  return { rolledBack, rollbackFailures };
}

/**
 * A previous SA to add back: its outbound counter continues past where the plan's dump saw it
 * (../engine/sequence-rule.ts), never from 0. An inbound SA sends nothing and is added as it was.
 */
function withResumedSequence(sa: SecurityAssociation, ownership: UsageView, now: number): SecurityAssociation {
  const seen = observedSequence(sa);
  if (seen === undefined || repeatsNoNonce(sa)) return sa;
  return { ...sa, resumeSequence: resumeAfterDump(sa, seen, ownership.usage(ownership.usageKey(sa)), now) };
}

/**
 * A new key (no history before this stage wrote its install mark) whose add the kernel refused
 * with a definite errno; undefined otherwise.
 */
function refusedInstall(step: Step, add: KernelOutcome | undefined, newKeys: ReadonlySet<string>, ownership: UsageView): NeverInstalled | undefined {
  if (step.target !== 'state' || (step.op !== 'create' && step.op !== 'replace') || !add || add.ok || UNKNOWN_OUTCOME.has(add.code)) return undefined;
  const usageKey = ownership.usageKey(step.entry);
  return newKeys.has(usageKey) ? { usageKey, recordKey: step.key, sa: step.entry } : undefined;
}

/** The usage mark written with the intent of an SA the step adds (its resume value, or 0). */
export function installUsage(step: Step, ownership: UsageView & Pick<OwnershipView, 'intentFingerprint'>, now: number): KeyUsage | undefined {
  if (step.target !== 'state' || (step.op !== 'create' && step.op !== 'replace') || repeatsNoNonce(step.entry)) return undefined;
  const key = ownership.usageKey(step.entry);
  return usageAtInstall(key, step.entry.resumeSequence ?? 0n, now, ownership.usage(key), step.entry, ownership.intentFingerprint(step.entry));
}

function ledgerProblem(error: unknown): string {
  return `the ownership ledger could not be written (${describeError(error)}); nothing further was changed`;
}

function describeError(error: unknown): string {
  if (error instanceof Error) return error.message.slice(0, 300);
  return 'unknown error';
}

function withoutKeysOf(records: readonly OwnershipRecord[], others: readonly OwnershipRecord[]): OwnershipRecord[] {
  const keys = new Set(others.map((record) => record.key));
  return records.filter((record) => !keys.has(record.key));
}

function groupByStage(steps: readonly Step[]): Step[][] {
  const groups: Step[][] = [];
  for (const step of steps) {
    const last = groups.at(-1);
    if (last && last[0]!.stage === step.stage) last.push(step);
    else groups.push([step]);
  }
  return groups;
}
