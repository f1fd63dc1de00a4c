/**
 * The planner: desired entries, the kernel's entries and the ownership ledger in; an ordered
 * plan out. Pure: no I/O, no clock. The CLI's `diff`, its `apply` and the node agent all call
 * this one function, so what a user sees in `diff` is exactly what would be done.
 *
 * Rules it enforces:
 * - Only owned entries are ever changed or deleted. Ownership is settled first from the ledger
 *   and this very dump (../ownership/settle.ts): a record proves an entry only while the kernel
 *   still holds the incarnation it names, or the entry an intent describes. A desired entry
 *   whose identity is held by a foreign entry is a conflict, reported and left alone.
 * - The kernel finds an SA for DELSA/UPDSA by (family, destination, SPI, protocol) and its mark
 *   *under mask* (`(mark & sa.mask) == sa.value`), newest first; so a delete or update of ours
 *   that the kernel could apply to a foreign SA instead is refused as a conflict, and so is an
 *   add that the kernel would refuse (EEXIST) because a foreign SA answers the same lookup.
 *   Policies are found exactly (direction, type, selector bytes, mark value and mask, if_id,
 *   no security context), which ./identity.ts keys follow.
 * - SA differences the kernel cannot apply in place become a replacement (delete, then add),
 *   flagged as disruptive; everything else goes through UPDSA/UPDPOLICY.
 * - Make before break: creations and updates run inbound SAs, then inbound and forward
 *   policies, then outbound SAs, then outbound policies; deletions run the reverse order after
 *   all creations. A peer thus never sends with a key we cannot yet receive, and traffic never
 *   meets a policy whose SA is missing.
 */
import type { PolicyTemplate, SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { compareStates, comparePolicies } from './compare.js';
import { desiredPolicyKey, desiredStateKey, policyKey, stateKey } from './identity.js';
import { settle, type LedgerChanges, type OwnershipView } from '../ownership/settle.js';
import { stateLookupHits } from './lookup.js';

export interface DesiredEntry<T> {
  /** The resource that asks for the entry (`SecurityAssociation/name` or `IpsecPolicy/name`). */
  readonly resource: string;
  readonly entry: T;
}

export interface DesiredTables {
  readonly states: readonly DesiredEntry<SecurityAssociation>[];
  readonly policies: readonly DesiredEntry<SecurityPolicy>[];
}

export interface ObservedTables {
  readonly states: readonly SecurityAssociation[];
  readonly policies: readonly SecurityPolicy[];
}

/** Execution order; see the module comment. */
export enum Stage {
  InboundStates = 1,
  InboundPolicies = 2,
  OutboundStates = 3,
  OutboundPolicies = 4,
  DeleteOutboundPolicies = 5,
  DeleteOutboundStates = 6,
  DeleteInboundPolicies = 7,
  DeleteInboundStates = 8,
}

interface StepBase {
  readonly key: string;
  readonly resource: string;
  readonly stage: Stage;
}

export type StateStep =
  | (StepBase & { readonly op: 'create'; readonly target: 'state'; readonly entry: SecurityAssociation })
  | (StepBase & { readonly op: 'update'; readonly target: 'state'; readonly entry: SecurityAssociation; readonly previous: SecurityAssociation; readonly changes: readonly string[] })
  | (StepBase & { readonly op: 'replace'; readonly target: 'state'; readonly entry: SecurityAssociation; readonly previous: SecurityAssociation; readonly changes: readonly string[] })
  | (StepBase & { readonly op: 'delete'; readonly target: 'state'; readonly previous: SecurityAssociation });

export type PolicyStep =
  | (StepBase & { readonly op: 'create'; readonly target: 'policy'; readonly entry: SecurityPolicy })
  | (StepBase & { readonly op: 'update'; readonly target: 'policy'; readonly entry: SecurityPolicy; readonly previous: SecurityPolicy; readonly changes: readonly string[] })
  | (StepBase & { readonly op: 'replace'; readonly target: 'policy'; readonly entry: SecurityPolicy; readonly previous: SecurityPolicy; readonly changes: readonly string[] })
  | (StepBase & { readonly op: 'delete'; readonly target: 'policy'; readonly previous: SecurityPolicy });

export type Step = StateStep | PolicyStep;

export interface Conflict {
  readonly key: string;
  readonly resource: string;
  readonly target: 'state' | 'policy';
  readonly reason: string;
  /** The other resource of the input that asks for the same identity, when that is the conflict. */
  readonly otherResource?: string;
}

export interface Plan {
  /** Kernel changes, in execution order. */
  readonly steps: readonly Step[];
  /** Desired entries that cannot be applied without touching something that is not ours. */
  readonly conflicts: readonly Conflict[];
  /**
   * Record changes the dump already settles (no kernel change): intents that took effect become
   * `present`, records that prove nothing any more are removed. Committed before any step.
   */
  readonly ledger: LedgerChanges;
}

export interface PlanInput {
  readonly desired: DesiredTables;
  readonly observed: ObservedTables;
  /** The ledger: its records and how to recognise the entries they name. */
  readonly ownership: OwnershipView;
}

export function plan(input: PlanInput): Plan {
  const steps: Step[] = [];
  const conflicts: Conflict[] = [];
  const inbound = inboundStateKeys(input);

  const observedStates = new Map<string, SecurityAssociation>();
  for (const sa of input.observed.states) observedStates.set(stateKey(sa.id), sa);
  const observedPolicies = new Map<string, SecurityPolicy>();
  for (const policy of input.observed.policies) observedPolicies.set(policyKey(policy.id), policy);
  const settlement = settle(input.ownership, (record) => (record.target === 'state' ? observedStates.get(record.key) : observedPolicies.get(record.key)));
  const owned = settlement.owned;
  const foreignStates = input.observed.states.filter((sa) => !owned.has(stateKey(sa.id)));

  /** A foreign SA that the kernel's lookup for `sa` could find instead of (or besides) it. */
  const foreignHit = (sa: SecurityAssociation): SecurityAssociation | undefined => foreignStates.find((other) => other !== observedStates.get(stateKey(sa.id)) && stateLookupHits(sa.id, other.id));

  // SAs
  const desiredStateKeys = new Map<string, string>();
  for (const { resource, entry } of input.desired.states) {
    const key = desiredStateKey(entry.id);
    const other = desiredStateKeys.get(key);
    if (other !== undefined) {
      conflicts.push({ key, resource, otherResource: other, target: 'state', reason: `${other} asks for an SA with the same destination, SPI, protocol and mark` });
      continue;
    }
    desiredStateKeys.set(key, resource);
    const stage = inbound.has(key) ? Stage.InboundStates : Stage.OutboundStates;
    const observed = observedStates.get(key);
    if (observed && !owned.has(key)) {
      conflicts.push({ key, resource, target: 'state', reason: 'an SA with this identity exists in the kernel and was not created by ipsec-operator' });
      continue;
    }
    const shadow = foreignHit(entry);
    if (shadow) {
      conflicts.push({ key, resource, target: 'state', reason: `the kernel finds SAs by destination, SPI, protocol and mark under mask, and would match a foreign SA (mark ${markText(shadow.id.mark)}) for this one` });
      continue;
    }
    if (!observed) {
      steps.push({ op: 'create', target: 'state', key, resource, stage, entry });
      continue;
    }
    const differences = compareStates(entry, observed);
    if (differences.replace.length > 0) {
      steps.push({ op: 'replace', target: 'state', key, resource, stage, entry, previous: observed, changes: [...differences.replace, ...differences.inPlace] });
    } else if (differences.inPlace.length > 0) {
      steps.push({ op: 'update', target: 'state', key, resource, stage, entry, previous: observed, changes: differences.inPlace });
    }
  }
  for (const [key, observed] of observedStates) {
    if (desiredStateKeys.has(key) || !owned.has(key)) continue;
    const resource = owned.get(key)!;
    const shadow = foreignHit(observed);
    if (shadow) {
      conflicts.push({ key, resource, target: 'state', reason: `not deleted: the kernel's lookup for this SA (mark under mask) could remove a foreign SA (mark ${markText(shadow.id.mark)}) instead` });
      continue;
    }
    const stage = inbound.has(key) ? Stage.DeleteInboundStates : Stage.DeleteOutboundStates;
    steps.push({ op: 'delete', target: 'state', key, resource, stage, previous: observed });
  }

  // Policies
  const desiredPolicyKeys = new Map<string, string>();
  for (const { resource, entry } of input.desired.policies) {
    const key = desiredPolicyKey(entry.id);
    const other = desiredPolicyKeys.get(key);
    if (other !== undefined) {
      conflicts.push({ key, resource, otherResource: other, target: 'policy', reason: `${other} asks for a policy with the same direction, selector, type, mark and if_id` });
      continue;
    }
    desiredPolicyKeys.set(key, resource);
    const stage = entry.id.direction === 'out' ? Stage.OutboundPolicies : Stage.InboundPolicies;
    const observed = observedPolicies.get(key);
    if (!observed) {
      steps.push({ op: 'create', target: 'policy', key, resource, stage, entry });
      continue;
    }
    if (!owned.has(key)) {
      conflicts.push({ key, resource, target: 'policy', reason: 'a policy with this identity exists in the kernel and was not created by ipsec-operator' });
      continue;
    }
    const differences = comparePolicies(entry, observed);
    if (differences.replace.length > 0) {
      steps.push({ op: 'replace', target: 'policy', key, resource, stage, entry, previous: observed, changes: [...differences.replace, ...differences.inPlace] });
    } else if (differences.inPlace.length > 0) {
      steps.push({ op: 'update', target: 'policy', key, resource, stage, entry, previous: observed, changes: differences.inPlace });
    }
  }
  for (const [key, observed] of observedPolicies) {
    if (desiredPolicyKeys.has(key) || !owned.has(key)) continue;
    const stage = observed.id.direction === 'out' ? Stage.DeleteOutboundPolicies : Stage.DeleteInboundPolicies;
    steps.push({ op: 'delete', target: 'policy', key, resource: owned.get(key)!, stage, previous: observed });
  }

  return { steps: inStageOrder(steps), conflicts, ledger: settlement.changes };
}

/**
 * Stable order: by stage, then as listed (desired order, then kernel dump order). One bucket
 * per stage (what a stable sort by stage gives, without sorting 10,000 wrapped steps).
 */
function inStageOrder(steps: readonly Step[]): Step[] {
  const buckets: Step[][] = [];
  for (const step of steps) (buckets[step.stage] ??= []).push(step);
  const ordered: Step[] = [];
  for (const bucket of buckets) if (bucket) for (const step of bucket) ordered.push(step);
  return ordered;
}

function markText(mark: { value: number; mask: number } | undefined): string {
  return mark ? `0x${mark.value.toString(16)}/0x${mark.mask.toString(16)}` : 'none';
}

/**
 * Which SAs carry inbound traffic: those marked `direction: in`, and those an inbound or
 * forward policy's template points at (same protocol, mode, and reqid/SPI/addresses where the
 * template names them). Everything else is treated as outbound, i.e. created later.
 */
export function inboundStateKeys(input: Pick<PlanInput, 'desired' | 'observed'>): Set<string> {
  if (input.desired.states.length === 0 && input.observed.states.length === 0) return new Set();
  const inboundPolicies = [...input.desired.policies.map((desired) => desired.entry), ...input.observed.policies].filter(
    (policy) => policy.id.direction !== 'out',
  );
  const keys = new Set<string>();
  for (const sa of [...input.desired.states.map((desired) => desired.entry), ...input.observed.states]) {
    const matches = inboundPolicies.some((policy) => policy.templates.some((template) => templateMatches(policy, template, sa)));
    if (sa.direction === 'in' || (sa.direction === undefined && matches)) keys.add(stateKey(sa.id));
  }
  return keys;
}

/**
 * Whether a template would pick this SA. A transport template without addresses takes them from
 * the packet, so the SA's destination must be the selector's (when that is a single host).
 */
function templateMatches(policy: SecurityPolicy, template: PolicyTemplate, sa: SecurityAssociation): boolean {
  if (template.protocol !== sa.id.protocol || template.mode !== sa.mode) return false;
  if (template.reqid !== 0 && template.reqid !== sa.reqid) return false;
  if (template.spi !== 0 && template.spi !== sa.id.spi) return false;
  if (!isAny(template.source) && template.source !== sa.source) return false;
  if (!isAny(template.destination)) return template.destination === sa.id.destination;
  const destination = policy.id.selector.destination;
  const isHost = destination.prefixLength === (sa.id.family === 'inet' ? 32 : 128);
  return !isHost || destination.address === sa.id.destination;
}

function isAny(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}
