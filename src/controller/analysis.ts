/**
 * What the controller concludes about each resource, from everything it can see: the resource,
 * the keys in the operator's Secrets, the Nodes and their labels, every other resource, and
 * what each node's agent reported (IpsecNodeState). Pure; the controller's reconcile turns the
 * verdict into status, Events and the finalizer.
 *
 * Checks one object cannot make on its own (the CRD's schema and CEL rules already made those):
 * - keys: the Secret and key exist and the key fits the algorithm;
 * - conflicts: two resources selecting the same node ask for the same kernel identity (the
 *   older resource keeps it; agents apply the same rule, see ../model/ordering.ts);
 * - progress: how many selected nodes applied this generation, and why others failed.
 */
import type { IpsecResource, LabelSelector } from '../crd/types.js';
import { buildSecurityAssociation, buildSecurityPolicy, type BuildContext, type BuildError, type BuildReason } from '../model/build.js';
import { selectsNode } from '../model/node-selector.js';
import { policyKey, stateKey } from '../plan/identity.js';
import { compareResourceAge, resourceName } from '../model/ordering.js';
import { capMessage } from '../crd/echo.js';
import type { ResourceStanding } from '../crd/node-state.js';
import { ClusterIndex, type ResourceFacts } from './cluster-index.js';

export interface NodeReport {
  readonly node: string;
  /** Its IpsecNodeState's reports and applied set (../crd/node-state.ts resourceStanding). */
  readonly standing: ResourceStanding;
}

export interface ClusterView {
  readonly resources: readonly (IpsecResource & { metadata: { creationTimestamp?: string } })[];
  /** Node name → labels. */
  readonly nodes: ReadonlyMap<string, Readonly<Record<string, string>>>;
  readonly secrets: ReadonlyMap<string, ReadonlyMap<string, Buffer>>;
  /** Node name → what its agent last reported. */
  readonly reports: ReadonlyMap<string, NodeReport>;
}

export type Reason =
  | 'Applied'
  | 'Pending'
  | 'NoNodesSelected'
  | 'Conflict'
  | 'KernelRejected'
  | 'KernelUnsupported'
  | 'KernelDidNotKeep'
  | 'NeedsRekey'
  | 'Expired'
  | 'Deleting'
  | BuildReason;

/** Reasons a node's report carries through to the resource as they are; any other failure is KernelRejected. */
const NODE_REASONS: ReadonlySet<string> = new Set(['Conflict', 'KernelUnsupported', 'KernelDidNotKeep', 'NeedsRekey', 'Expired']);
/**
 * Reasons only a new key resolves (../engine/sequence-rule.ts): they win over any other node's
 * reason, since retrying cannot fix them.
 */
const REKEY_REASONS: readonly string[] = ['Expired', 'NeedsRekey'];

export interface Verdict {
  readonly ready: boolean;
  readonly reason: Reason;
  readonly message: string;
  readonly nodes: { readonly selected: number; readonly applied: number; readonly failed: number };
  /** Kernel entries of this resource still held on any node (deletion waits for 0). */
  readonly entriesRemaining: number;
}

/** Devices are checked by each node's agent; the controller cannot see interfaces. */
const anyDevice = () => 0;

export function buildErrors(resource: IpsecResource, secrets: ClusterView['secrets']): BuildError[] {
  const context: BuildContext = {
    resolveDevice: anyDevice,
    keys: {
      lookup(name, key) {
        const secret = secrets.get(name);
        if (!secret) return 'missing-secret';
        return secret.get(key) ?? 'missing-key';
      },
    },
  };
  const built = resource.kind === 'SecurityAssociation' ? buildSecurityAssociation(resource.spec, context) : buildSecurityPolicy(resource.spec, context);
  return built.ok ? [] : built.errors;
}

/** Identity key of the kernel entry a valid resource asks for. */
function identityOf(resource: IpsecResource, secrets: ClusterView['secrets']): string | undefined {
  const context: BuildContext = {
    resolveDevice: anyDevice,
    keys: { lookup: (name, key) => secrets.get(name)?.get(key) ?? 'missing-key' },
  };
  if (resource.kind === 'SecurityAssociation') {
    const built = buildSecurityAssociation(resource.spec, context);
    return built.ok ? stateKey(built.value.id) : undefined;
  }
  const built = buildSecurityPolicy(resource.spec, context);
  return built.ok ? policyKey(built.value.id) : undefined;
}

/**
 * The facts of a whole view at once (tests, and callers that judge one snapshot): the same
 * index the controller keeps change by change, fed with everything.
 */
export function viewFacts(view: ClusterView): ClusterIndex {
  const index = new ClusterIndex();
  for (const [name, labels] of view.nodes) index.setNode(name, labels);
  for (const [name, data] of view.secrets) index.setSecret(name, data);
  for (const [node, report] of view.reports) index.setNodeState(node, report.node, report.standing);
  for (const resource of view.resources) index.upsertResource(resource);
  return index;
}

export function selectedNodes(selector: LabelSelector | undefined, nodes: ClusterView['nodes']): string[] {
  return [...nodes].filter(([, labels]) => selectsNode(selector, labels)).map(([name]) => name).sort();
}

/**
 * For every resource that loses an identity to an older one: the winner and the nodes where
 * both are selected. Resources being deleted still hold their entries, so they still count.
 *
 * The definition, from scratch (O(resources × nodes) builds): the controller keeps the same
 * answer change by change in ./cluster-index.ts, and test/unit/controller-index.test.ts checks
 * that the two agree after every step of random histories.
 */
export function findConflicts(view: ClusterView): Map<string, { winner: string; nodes: string[] }> {
  const losers = new Map<string, { winner: string; nodes: string[] }>();
  const ordered = [...view.resources].sort(compareResourceAge);
  // Nodes by name, so the message lists them in a stable order.
  for (const [node, labels] of [...view.nodes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const holders = new Map<string, string>();
    for (const resource of ordered) {
      if (!selectsNode(resource.spec.nodeSelector, labels)) continue;
      const identity = identityOf(resource, view.secrets);
      if (!identity) continue;
      const name = resourceName(resource);
      const winner = holders.get(identity);
      if (winner === undefined) {
        holders.set(identity, name);
        continue;
      }
      const entry = losers.get(name) ?? { winner, nodes: [] };
      entry.nodes.push(node);
      losers.set(name, entry);
    }
  }
  return losers;
}

export function judge(resource: IpsecResource & { metadata: { creationTimestamp?: string; resourceVersion?: string } }, facts: ResourceFacts): Verdict {
  const name = resourceName(resource);
  const selected = facts.selectedNodes(resource);
  const reports = selected.map((node) => ({ node, report: facts.report(node, name) }));
  // Entries may remain on nodes no longer selected (labels changed) until their agents prune.
  const entriesRemaining = facts.entriesRemaining(name);
  const applied = reports.filter(({ report }) => report?.state === 'Applied' && report.generation === resource.metadata.generation);
  const failed = reports.filter(({ report }) => report?.state === 'Failed' && report.generation === resource.metadata.generation);
  const nodes = { selected: selected.length, applied: applied.length, failed: failed.length };
  // Messages go to status and Events: built from redacted parts (../crd/echo.ts) and capped, so
  // no number of nodes or errors makes them unbounded.
  const verdict = (ready: boolean, reason: Reason, message: string): Verdict => ({ ready, reason, message: capMessage(message), nodes, entriesRemaining });

  if (resource.metadata.deletionTimestamp) {
    return verdict(false, 'Deleting', entriesRemaining === 0 ? 'entries removed from every node' : `waiting for agents to remove ${entriesRemaining} kernel entr${entriesRemaining === 1 ? 'y' : 'ies'}`);
  }
  const errors = facts.buildErrors(resource);
  if (errors.length > 0) {
    return verdict(false, errors[0]!.reason, errors.map((error) => `${error.path}: ${error.message}`).join('; '));
  }
  const conflict = facts.conflict(name);
  if (conflict) {
    return verdict(false, 'Conflict', `${conflict.winner} (older) asks for the same kernel entry on node${conflict.nodes.length === 1 ? '' : 's'} ${conflict.nodes.join(', ')}`);
  }
  if (selected.length === 0) return verdict(false, 'NoNodesSelected', 'nodeSelector matches no node');
  if (failed.length > 0) {
    const rekey = REKEY_REASONS.find((candidate) => failed.some(({ report }) => report?.reason === candidate));
    const first = rekey ?? failed[0]!.report?.reason ?? '';
    const reason = (NODE_REASONS.has(first) ? first : 'KernelRejected') as Reason;
    return verdict(false, reason, failed.map(({ node, report }) => `${node}: ${report?.message ?? 'failed'}`).join('; '));
  }
  if (applied.length < selected.length) {
    const waiting = reports.filter(({ report }) => !(report?.state === 'Applied' && report.generation === resource.metadata.generation)).map(({ node }) => node);
    return verdict(false, 'Pending', `waiting for node${waiting.length === 1 ? '' : 's'} ${waiting.join(', ')}`);
  }
  return verdict(true, 'Applied', `applied on ${applied.length} node${applied.length === 1 ? '' : 's'}`);
}
