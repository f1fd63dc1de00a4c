/**
 * The applier: carries out a plan against the kernel, stage by stage, keeping the ownership
 * ledger ahead of every kernel change, and undoing what it did when any step is refused, so a
 * plan is applied whole or not at all.
 *
 * Each stage is sent as one pipelined batch (the kernel handles the messages of one batch in
 * order). A replacement is a delete immediately followed by an add in the same batch.
 * Rollback uses the entries the plan already holds: what was created is deleted, what was
 * updated or deleted is put back exactly as the kernel had it (dumps include keys).
 */
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import type { XfrmBatchRequest } from '../xfrm/client.js';
import type { Plan, Step } from '../plan/planner.js';
import type { OwnershipRecord } from '../ownership/records.js';

/** One kernel write: the XFRM client's batch request (a type only; the applier does no I/O). */
export type KernelChange = XfrmBatchRequest;

export type KernelOutcome = { readonly ok: true } | { readonly ok: false; readonly errno: number; readonly code: string; readonly message: string };

/** Sends changes in one pipelined batch; one outcome per change, in order. */
export interface KernelWriter {
  apply(changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]>;
}

/** The part of the ledger the applier needs (../ownership/ledger.ts implements it). */
export interface OwnershipStore {
  records(): ReadonlyMap<string, OwnershipRecord>;
  fingerprint(entry: SecurityAssociation | SecurityPolicy): string;
  commit(changes: { readonly set?: readonly OwnershipRecord[]; readonly remove?: readonly string[] }): Promise<void>;
}

export interface StepFailure {
  readonly step: Step;
  readonly errno: number;
  readonly code: string;
  /** The kernel's reason (extended ack) or the errno's text. */
  readonly message: string;
}

export interface ApplyReport {
  /** Steps the kernel accepted and that stay applied. */
  readonly applied: readonly Step[];
  readonly failures: readonly StepFailure[];
  /** Steps that had been applied and were undone because a later step failed. */
  readonly rolledBack: readonly Step[];
  /** Undo operations the kernel refused: the kernel may now hold a partial plan. */
  readonly rollbackFailures: readonly StepFailure[];
}

const ABSENT = new Set(['ENOENT', 'ESRCH']);

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

/** The kernel changes that undo one applied step. */
function undoFor(step: Step): KernelChange[] {
  if (step.target === 'state') {
    switch (step.op) {
      case 'create':
        return [{ op: 'delete-state', id: step.entry.id }];
      case 'update':
        return [{ op: 'update-state', state: step.previous }];
      case 'replace':
        return [{ op: 'delete-state', id: step.entry.id }, { op: 'add-state', state: step.previous }];
      case 'delete':
        return [{ op: 'add-state', state: step.previous }];
    }
  }
  switch (step.op) {
    case 'create':
      return [{ op: 'delete-policy', id: step.entry.id }];
    case 'update':
      return [{ op: 'update-policy', policy: step.previous }];
    case 'replace':
      return [{ op: 'delete-policy', id: step.entry.id }, { op: 'add-policy', policy: step.previous }];
    case 'delete':
      return [{ op: 'add-policy', policy: step.previous }];
  }
}

export async function applyPlan(plan: Plan, kernel: KernelWriter, ownership: OwnershipStore): Promise<ApplyReport> {
  const applied: Step[] = [];
  const failures: StepFailure[] = [];
  if (plan.forget.length > 0) await ownership.commit({ remove: plan.forget });

  for (const stage of groupByStage(plan.steps)) {
    // Intent first: a crash after this commit but before the kernel answers is settled at the
    // next start by the `creating`/`deleting` phases (see ../ownership/records.ts).
    await ownership.commit({ set: stage.flatMap((step) => intentRecords(step, ownership)) });
    const changes = stage.map(changesFor);
    const outcomes = await kernel.apply(changes.flat());
    let cursor = 0;
    const settle: OwnershipRecord[] = [];
    const remove: string[] = [];
    for (const [index, step] of stage.entries()) {
      const stepOutcomes = outcomes.slice(cursor, cursor + changes[index]!.length);
      cursor += changes[index]!.length;
      const failure = stepFailure(step, stepOutcomes);
      if (!failure) {
        applied.push(step);
        if (step.op === 'delete') remove.push(step.key);
        else settle.push(record(step, step.entry, ownership));
        continue;
      }
      failures.push(failure);
      const kept = await settleFailure(step, stepOutcomes, kernel);
      if (kept === undefined) remove.push(step.key);
      else settle.push(record(step, kept, ownership));
    }
    await ownership.commit({ set: settle, remove });
    if (failures.length > 0) {
      const undone = await rollBack(applied, kernel, ownership);
      return { applied: [], failures, rolledBack: undone.rolledBack, rollbackFailures: undone.failures };
    }
  }
  return { applied, failures, rolledBack: [], rollbackFailures: [] };
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
 * After a refused step, what of ours is left in the kernel: the previous entry (record it as
 * present), or nothing (drop the record). A replacement whose delete went through but whose add
 * was refused has its previous entry put back at once.
 */
async function settleFailure(
  step: Step,
  outcomes: readonly KernelOutcome[],
  kernel: KernelWriter,
): Promise<SecurityAssociation | SecurityPolicy | undefined> {
  switch (step.op) {
    case 'create':
      return undefined; // nothing was created (on EEXIST the entry there is not ours)
    case 'update':
    case 'delete':
      return step.previous;
    case 'replace': {
      const deleted = outcomes[0]?.ok === true || (!outcomes[0]?.ok && ABSENT.has(outcomes[0]?.code ?? ''));
      if (!deleted) return step.previous;
      const restore: KernelChange =
        step.target === 'state' ? { op: 'add-state', state: step.previous } : { op: 'add-policy', policy: step.previous };
      const [restored] = await kernel.apply([restore]);
      return restored?.ok ? step.previous : undefined;
    }
  }
}

function intentRecords(step: Step, ownership: OwnershipStore): OwnershipRecord[] {
  switch (step.op) {
    case 'create':
    case 'replace':
      return [{ ...record(step, step.entry, ownership), phase: 'creating' }];
    case 'delete':
      return [{ ...record(step, step.previous, ownership), phase: 'deleting' }];
    case 'update':
      return []; // the record stays `present`: the entry is ours before and after
  }
}

function record(step: Step, entry: SecurityAssociation | SecurityPolicy, ownership: OwnershipStore): OwnershipRecord {
  return { key: step.key, target: step.target, resource: step.resource, phase: 'present', fingerprint: ownership.fingerprint(entry) };
}

async function rollBack(applied: readonly Step[], kernel: KernelWriter, ownership: OwnershipStore) {
  const rolledBack: Step[] = [];
  const failures: StepFailure[] = [];
  for (const step of [...applied].reverse()) {
    const outcomes = await kernel.apply(undoFor(step));
    const failed = outcomes.find((outcome): outcome is Extract<KernelOutcome, { ok: false }> => !outcome.ok);
    if (failed) {
      failures.push({ step, errno: failed.errno, code: failed.code, message: failed.message });
      continue;
    }
    rolledBack.push(step);
    if (step.op === 'create') await ownership.commit({ remove: [step.key] });
    else await ownership.commit({ set: [record(step, step.previous, ownership)] });
  }
  return { rolledBack, failures };
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
