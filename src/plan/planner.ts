/**
 * The planner: desired entries, the kernel's entries and the ownership ledger in; an ordered
 * plan out. Pure: no I/O, no clock. The CLI's `diff`, its `apply` and the node agent all call
 * this one function, so what a user sees in `diff` is exactly what would be done.
 *
 * Rules it enforces:
 * - Only owned entries are ever changed or deleted (ownership is the ledger's word; see
 *   ../ownership/ledger.ts). A desired entry whose identity is held by a foreign entry is a
 *   conflict, reported and left alone.
 * - SA differences the kernel cannot apply in place become a replacement (delete, then add),
 *   flagged as disruptive; everything else goes through UPDSA/UPDPOLICY.
 * - Make before break: creations and updates run inbound SAs, then inbound and forward
 *   policies, then outbound SAs, then outbound policies; deletions run the reverse order after
 *   all creations. A peer thus never sends with a key we cannot yet receive, and traffic never
 *   meets a policy whose SA is missing.
 */
import type { PolicyTemplate, SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import { compareStates, comparePolicies } from './compare.js';
import { policyKey, stateKey } from './identity.js';
import type { OwnershipRecord } from '../ownership/records.js';

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
}

export interface Plan {
  /** Kernel changes, in execution order. */
  readonly steps: readonly Step[];
  /** Desired entries that cannot be applied without touching something that is not ours. */
  readonly conflicts: readonly Conflict[];
  /** Ledger records with no kernel entry and no desire left: forget them (no kernel change). */
  readonly forget: readonly string[];
}

export interface PlanInput {
  readonly desired: DesiredTables;
  readonly observed: ObservedTables;
  /** The ledger's records, by key. */
  readonly owned: ReadonlyMap<string, OwnershipRecord>;
  /** Fingerprint of an observed entry, to settle records left in the `creating` phase. */
  readonly fingerprint: (entry: SecurityAssociation | SecurityPolicy) => string;
}

export function plan(input: PlanInput): Plan {
  const steps: Step[] = [];
  const conflicts: Conflict[] = [];
  const forget: string[] = [];
  const inbound = inboundStateKeys(input);

  const isOwned = (key: string, observed: SecurityAssociation | SecurityPolicy | undefined): boolean => {
    const record = input.owned.get(key);
    if (!record) return false;
    // A crash between writing `creating` and the kernel's answer leaves it open whether the
    // entry that now exists is ours: it is only if it is exactly what we were adding.
    if (record.phase === 'creating') return observed !== undefined && input.fingerprint(observed) === record.fingerprint;
    return true;
  };

  // SAs
  const observedStates = new Map(input.observed.states.map((sa) => [stateKey(sa.id), sa]));
  const desiredStateKeys = new Set<string>();
  for (const { resource, entry } of input.desired.states) {
    const key = stateKey(entry.id);
    if (desiredStateKeys.has(key)) {
      conflicts.push({ key, resource, target: 'state', reason: 'another resource asks for an SA with the same destination, SPI, protocol and mark' });
      continue;
    }
    desiredStateKeys.add(key);
    const stage = inbound.has(key) ? Stage.InboundStates : Stage.OutboundStates;
    const observed = observedStates.get(key);
    if (!observed) {
      steps.push({ op: 'create', target: 'state', key, resource, stage, entry });
      continue;
    }
    if (!isOwned(key, observed)) {
      conflicts.push({ key, resource, target: 'state', reason: 'an SA with this identity exists in the kernel and was not created by ipsec-operator' });
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
    if (desiredStateKeys.has(key) || !isOwned(key, observed)) continue;
    const stage = inbound.has(key) ? Stage.DeleteInboundStates : Stage.DeleteOutboundStates;
    steps.push({ op: 'delete', target: 'state', key, resource: input.owned.get(key)!.resource, stage, previous: observed });
  }

  // Policies
  const observedPolicies = new Map(input.observed.policies.map((policy) => [policyKey(policy.id), policy]));
  const desiredPolicyKeys = new Set<string>();
  for (const { resource, entry } of input.desired.policies) {
    const key = policyKey(entry.id);
    if (desiredPolicyKeys.has(key)) {
      conflicts.push({ key, resource, target: 'policy', reason: 'another resource asks for a policy with the same direction, selector, type, mark and if_id' });
      continue;
    }
    desiredPolicyKeys.add(key);
    const stage = entry.id.direction === 'out' ? Stage.OutboundPolicies : Stage.InboundPolicies;
    const observed = observedPolicies.get(key);
    if (!observed) {
      steps.push({ op: 'create', target: 'policy', key, resource, stage, entry });
      continue;
    }
    if (!isOwned(key, observed)) {
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
    if (desiredPolicyKeys.has(key) || !isOwned(key, observed)) continue;
    const stage = observed.id.direction === 'out' ? Stage.DeleteOutboundPolicies : Stage.DeleteInboundPolicies;
    steps.push({ op: 'delete', target: 'policy', key, resource: input.owned.get(key)!.resource, stage, previous: observed });
  }

  // Records whose entry is gone and no longer wanted, or whose `creating` never happened.
  for (const [key, record] of input.owned) {
    const observed = record.target === 'state' ? observedStates.get(key) : observedPolicies.get(key);
    const desired = record.target === 'state' ? desiredStateKeys.has(key) : desiredPolicyKeys.has(key);
    if ((!observed && !desired) || (observed && !isOwned(key, observed) && !desired)) forget.push(key);
  }

  // Stable order: by stage, then as listed (desired order, then kernel dump order).
  const ordered = steps.map((step, position) => ({ step, position })).sort((a, b) => a.step.stage - b.step.stage || a.position - b.position);
  return { steps: ordered.map(({ step }) => step), conflicts, forget };
}

/**
 * Which SAs carry inbound traffic: those marked `direction: in`, and those an inbound or
 * forward policy's template points at (same protocol, mode, and reqid/SPI/addresses where the
 * template names them). Everything else is treated as outbound, i.e. created later.
 */
export function inboundStateKeys(input: Pick<PlanInput, 'desired' | 'observed'>): Set<string> {
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
