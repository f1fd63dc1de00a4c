/**
 * What the controller knows about the cluster, kept up to date change by change, so that the
 * work per event follows what the event touched rather than the size of the cluster.
 *
 * Each input change (a resource, a Secret, a Node, an IpsecNodeState) is folded in by one
 * method that returns the keys (`Kind/name`) of the resources whose verdict it may change;
 * the controller enqueues exactly those. Per resource it keeps the outcome of one build (its
 * errors, the kernel identity it asks for, the Secrets the build looked up), redone only when
 * the resource or one of those Secrets changes; resources are grouped by identity, and
 * conflicts are worked out within a group only (two resources can only conflict when they ask
 * for the same identity). Per node, ./node-proof.ts keeps the reports its agent listed and the
 * applied set it last proved, with the expected set's digest kept member by member, so a
 * verdict reads its nodes' standing without scanning anyone else's, and an IpsecNodeState
 * event costs what changed in it.
 *
 * Pure: no I/O, no clock. The controller feeds it from its informers' events; tests feed it
 * directly and count `builds` to show the work per change.
 */
import type { IpsecResource } from '../crd/types.js';
import type { LegacyResourceReport, ResourceStanding } from '../crd/node-state.js';
import { memberHash } from '../crd/applied-set.js';
import { buildSecurityAssociation, buildSecurityPolicy, type BuildContext, type BuildError } from '../model/build.js';
import { selectsNode } from '../model/node-selector.js';
import { compareResourceAge, resourceName } from '../model/ordering.js';
import { policyKey, stateKey } from '../plan/identity.js';
import { NodeProof, type Member } from './node-proof.js';

export type IndexedResource = IpsecResource & { metadata: { creationTimestamp?: string; resourceVersion?: string } };
export type Labels = Readonly<Record<string, string>>;
/** Secret name → key → value. */
export type SecretData = ReadonlyMap<string, Buffer>;

/** A resource that loses its kernel identity to an older one, on the nodes where both are selected. */
export interface Conflict {
  /** `Kind/name` of the older resource that keeps the identity. */
  readonly winner: string;
  readonly nodes: readonly string[];
}

/** What a verdict reads (../controller/analysis.ts `judge`). */
export interface ResourceFacts {
  /** Names of the nodes the selector matches, sorted. */
  selectedNodes(resource: IndexedResource): string[];
  /**
   * How `key` stands on `node`: the report its agent listed, else Applied at the generation
   * the node last proved (./node-proof.ts); undefined when neither.
   */
  report(node: string, key: string): LegacyResourceReport | undefined;
  /**
   * Kernel entries of `key` still held on nodes that exist: the count a node reported, or at
   * least one on a node whose last proof holds it and that has not reported it since.
   */
  entriesRemaining(key: string): number;
  buildErrors(resource: IndexedResource): readonly BuildError[];
  conflict(key: string): Conflict | undefined;
}

interface Built {
  readonly errors: readonly BuildError[];
  /** Identity key of the kernel entry, when the build succeeds. */
  readonly identity: string | undefined;
  /** Secrets the build looked up: the only Secrets whose change can change this outcome. */
  readonly secrets: ReadonlySet<string>;
}

interface Entry extends Built {
  readonly resource: IndexedResource;
  /** The resource as a member of the applied sets of the nodes that select it. */
  readonly member: Member;
}

/** Devices are checked by each node's agent; the controller cannot see interfaces. */
const anyDevice = () => 0;

export class ClusterIndex implements ResourceFacts {
  /** Builds done so far (one per resource change or change of a Secret it reads). */
  builds = 0;
  private readonly entries = new Map<string, Entry>();
  private readonly nodes = new Map<string, Labels>();
  private sortedNodes: string[] = [];
  private readonly secrets = new Map<string, SecretData>();
  /** Secret name → keys of resources whose build looked it up. */
  private readonly readers = new Map<string, Set<string>>();
  /** Identity → keys of resources asking for it. */
  private readonly holders = new Map<string, Set<string>>();
  private readonly conflicts = new Map<string, Conflict>();
  /** Node → its reports and proofs (a node with a Node object or an IpsecNodeState). */
  private readonly proofs = new Map<string, NodeProof>();
  /** IpsecNodeState name → the node it reports on (a rename of spec.nodeName moves its reports). */
  private readonly stateNodes = new Map<string, string>();

  // --- inputs -------------------------------------------------------------------------------

  /** A resource added or changed. */
  upsertResource(resource: IndexedResource): Set<string> {
    const key = resourceName(resource);
    const previous = this.entries.get(key);
    if (previous && previous.resource.metadata.resourceVersion !== undefined && previous.resource.metadata.resourceVersion === resource.metadata.resourceVersion) {
      return new Set(); // the informer's resync: nothing changed
    }
    const touched = new Set([key]);
    const identities = new Set<string>();
    if (previous) this.forget(key, previous, identities);
    const member = previous && previous.member.uid === (resource.metadata.uid ?? '') && previous.member.generation === (resource.metadata.generation ?? 0) ? previous.member : memberOf(resource);
    const entry = { resource, ...this.build(resource), member };
    this.remember(key, entry, identities);
    for (const changed of this.regroup(identities, [key])) touched.add(changed);
    for (const changed of this.refreshEverywhere(key)) touched.add(changed);
    return touched;
  }

  removeResource(resource: Pick<IpsecResource, 'kind' | 'metadata'>): Set<string> {
    const key = resourceName(resource);
    const previous = this.entries.get(key);
    if (!previous) return new Set([key]);
    const identities = new Set<string>();
    this.forget(key, previous, identities);
    const touched = new Set([key]);
    for (const changed of this.regroup(identities, [key])) touched.add(changed);
    for (const changed of this.refreshEverywhere(key)) touched.add(changed);
    return touched;
  }

  /** A Secret added, changed (`data` set) or deleted (`data` undefined). */
  setSecret(name: string, data: SecretData | undefined): Set<string> {
    const previous = this.secrets.get(name);
    if (sameSecret(previous, data)) return new Set();
    if (data) this.secrets.set(name, data);
    else this.secrets.delete(name);
    const touched = new Set<string>();
    const identities = new Set<string>();
    for (const key of [...(this.readers.get(name) ?? [])]) {
      const entry = this.entries.get(key)!;
      this.forget(key, entry, identities);
      this.remember(key, { ...entry, ...this.build(entry.resource) }, identities);
      touched.add(key);
    }
    for (const changed of this.regroup(identities, touched)) touched.add(changed);
    return touched;
  }

  /** A Node added, relabelled (`labels` set) or deleted (`labels` undefined). */
  setNode(name: string, labels: Labels | undefined): Set<string> {
    const previous = this.nodes.get(name);
    if (previous !== undefined && labels !== undefined && sameLabels(previous, labels)) return new Set();
    if (labels) this.nodes.set(name, labels);
    else this.nodes.delete(name);
    if ((previous === undefined) !== (labels === undefined)) this.sortedNodes = [...this.nodes.keys()].sort();
    const touched = new Set<string>();
    const identities = new Set<string>();
    // A resource's verdict moves when the node enters or leaves its selection; one that selects
    // the node before and after sees the same nodes and the same reports.
    for (const [key, entry] of this.entries) {
      const before = previous !== undefined && selectsNode(entry.resource.spec.nodeSelector, previous);
      const after = labels !== undefined && selectsNode(entry.resource.spec.nodeSelector, labels);
      if (before === after) continue;
      touched.add(key);
      if (entry.identity !== undefined && (this.holders.get(entry.identity)?.size ?? 0) > 1) identities.add(entry.identity);
    }
    // A node that comes or goes changes what counts as remaining entries (a deleted node's
    // kernel is gone with it).
    const proof = this.proofOf(name);
    if ((previous === undefined) !== (labels === undefined)) for (const key of proof.keys()) if (this.entries.has(key)) touched.add(key);
    for (const changed of this.regroup(identities, [])) touched.add(changed);
    // The set the node is expected to have applied follows its selection.
    for (const key of this.entries.keys()) proof.setMember(key, this.memberOn(name, key));
    for (const key of proof.prove()) if (this.entries.has(key)) touched.add(key);
    this.dropIdle(name);
    return touched;
  }

  /** An IpsecNodeState added or changed (`standing` set) or deleted (`standing` undefined). */
  setNodeState(stateName: string, node: string, standing: ResourceStanding | undefined): Set<string> {
    const touched = new Set<string>();
    const previousNode = this.stateNodes.get(stateName);
    if (previousNode !== undefined && previousNode !== node) {
      // spec.nodeName renamed: the old node has no state any more.
      for (const key of this.read(previousNode, undefined)) touched.add(key);
      this.dropIdle(previousNode);
    }
    if (standing) this.stateNodes.set(stateName, node);
    else this.stateNodes.delete(stateName);
    if (standing || previousNode === node) for (const key of this.read(node, standing)) touched.add(key);
    this.dropIdle(node);
    // Only resources that exist have a verdict to change.
    for (const key of touched) if (!this.entries.has(key)) touched.delete(key);
    return touched;
  }

  // --- facts --------------------------------------------------------------------------------

  keys(): IterableIterator<string> {
    return this.entries.keys();
  }

  selectedNodes(resource: IndexedResource): string[] {
    return this.sortedNodes.filter((node) => selectsNode(resource.spec.nodeSelector, this.nodes.get(node)!));
  }

  report(node: string, key: string): LegacyResourceReport | undefined {
    const proof = this.proofs.get(node);
    if (!proof) return undefined;
    const listed = proof.listed.get(key);
    if (listed) return listed;
    const entry = this.entries.get(key);
    const generation = entry && proof.applied(key, entry.member.uid);
    if (entry === undefined || generation === undefined) return undefined;
    return { kind: entry.resource.kind, name: entry.resource.metadata.name, generation, state: 'Applied' };
  }

  entriesRemaining(key: string): number {
    let sum = 0;
    for (const [node, proof] of this.proofs) {
      if (!this.nodes.has(node)) continue; // the node is gone, and its kernel with it
      const listed = proof.listed.get(key);
      // Applied, not yet reported removed: its count is not written any more; one at least.
      sum += listed !== undefined ? (listed.entries ?? 0) : proof.holds(key) ? 1 : 0;
    }
    return sum;
  }

  buildErrors(resource: IndexedResource): readonly BuildError[] {
    const entry = this.entries.get(resourceName(resource));
    // The entry is of this very object unless the caller holds a newer one than it fed in.
    if (entry && entry.resource.metadata.resourceVersion === resource.metadata.resourceVersion && entry.resource.metadata.generation === resource.metadata.generation) return entry.errors;
    return this.build(resource).errors;
  }

  conflict(key: string): Conflict | undefined {
    return this.conflicts.get(key);
  }

  // --- internals ----------------------------------------------------------------------------

  private proofOf(node: string): NodeProof {
    let proof = this.proofs.get(node);
    if (!proof) this.proofs.set(node, (proof = new NodeProof()));
    return proof;
  }

  /** A node with neither a Node nor an IpsecNodeState keeps nothing worth a proof. */
  private dropIdle(node: string): void {
    if (!this.nodes.has(node) && this.proofs.get(node)?.standing === undefined) this.proofs.delete(node);
  }

  /**
   * `key` as a member of the set `node` is expected to have applied: when the node selects the
   * resource, it is not being deleted, and the node lists no report of it.
   */
  private memberOn(node: string, key: string): Member | undefined {
    const labels = this.nodes.get(node);
    const entry = this.entries.get(key);
    if (labels === undefined || entry === undefined || entry.resource.metadata.deletionTimestamp) return undefined;
    if (this.proofs.get(node)?.listed.has(key)) return undefined;
    return selectsNode(entry.resource.spec.nodeSelector, labels) ? entry.member : undefined;
  }

  /** After a change of one resource: its membership on every node, and the proofs that completes. */
  private refreshEverywhere(key: string): string[] {
    const moved: string[] = [];
    for (const node of this.nodes.keys()) {
      const proof = this.proofOf(node);
      if (proof.setMember(key, this.memberOn(node, key))) moved.push(...proof.prove());
    }
    return moved;
  }

  /** A node's status read: its listed reports, the memberships they change, and a proof. */
  private read(node: string, standing: ResourceStanding | undefined): Set<string> {
    const proof = this.proofOf(node);
    const { touched, listingChanged } = proof.setStanding(standing);
    for (const key of listingChanged) proof.setMember(key, this.memberOn(node, key));
    for (const key of proof.prove()) touched.add(key);
    return touched;
  }

  private build(resource: IndexedResource): Built {
    this.builds++;
    const looked = new Set<string>();
    const context: BuildContext = {
      resolveDevice: anyDevice,
      keys: {
        lookup: (name, key) => {
          looked.add(name);
          const secret = this.secrets.get(name);
          if (!secret) return 'missing-secret';
          return secret.get(key) ?? 'missing-key';
        },
      },
    };
    // Only the identity and the errors are kept: never the built entry, which holds key bytes.
    if (resource.kind === 'SecurityAssociation') {
      const built = buildSecurityAssociation(resource.spec, context);
      return built.ok ? { errors: [], identity: stateKey(built.value.id), secrets: looked } : { errors: built.errors, identity: undefined, secrets: looked };
    }
    const built = buildSecurityPolicy(resource.spec, context);
    return built.ok ? { errors: [], identity: policyKey(built.value.id), secrets: looked } : { errors: built.errors, identity: undefined, secrets: looked };
  }

  private forget(key: string, entry: Entry, identities: Set<string>): void {
    this.entries.delete(key);
    for (const secret of entry.secrets) {
      const readers = this.readers.get(secret);
      readers?.delete(key);
      if (readers?.size === 0) this.readers.delete(secret);
    }
    if (entry.identity !== undefined) {
      const holders = this.holders.get(entry.identity);
      holders?.delete(key);
      if (holders?.size === 0) this.holders.delete(entry.identity);
      identities.add(entry.identity);
    }
  }

  private remember(key: string, entry: Entry, identities: Set<string>): void {
    this.entries.set(key, entry);
    for (const secret of entry.secrets) {
      let readers = this.readers.get(secret);
      if (!readers) this.readers.set(secret, (readers = new Set()));
      readers.add(key);
    }
    if (entry.identity !== undefined) {
      let holders = this.holders.get(entry.identity);
      if (!holders) this.holders.set(entry.identity, (holders = new Set()));
      holders.add(key);
      identities.add(entry.identity);
    }
  }

  /**
   * Works out the conflicts within each of `identities` again (and drops those of `left`, keys
   * no longer in any of them); returns the keys whose conflict changed. The older resource
   * keeps an identity on each node where both are selected (the rule agents apply too, see
   * ../model/ordering.ts); resources being deleted still hold their entries, so they count.
   */
  private regroup(identities: Iterable<string>, left: Iterable<string>): string[] {
    const changed: string[] = [];
    const seen = new Set<string>();
    for (const identity of identities) {
      const members = [...(this.holders.get(identity) ?? [])].map((key) => this.entries.get(key)!);
      members.sort((a, b) => compareResourceAge(a.resource, b.resource));
      const next = new Map<string, { winner: string; nodes: string[] }>();
      if (members.length > 1) {
        for (const node of this.sortedNodes) {
          const labels = this.nodes.get(node)!;
          let winner: string | undefined;
          for (const member of members) {
            if (!selectsNode(member.resource.spec.nodeSelector, labels)) continue;
            const name = resourceName(member.resource);
            if (winner === undefined) {
              winner = name;
              continue;
            }
            const conflict = next.get(name) ?? { winner, nodes: [] };
            conflict.nodes.push(node);
            next.set(name, conflict);
          }
        }
      }
      for (const member of members) {
        const key = resourceName(member.resource);
        seen.add(key);
        if (this.setConflict(key, next.get(key))) changed.push(key);
      }
    }
    for (const key of left) if (!seen.has(key) && this.setConflict(key, undefined)) changed.push(key);
    return changed;
  }

  /** Returns whether the conflict of `key` changed. */
  private setConflict(key: string, conflict: Conflict | undefined): boolean {
    const previous = this.conflicts.get(key);
    if (conflict) this.conflicts.set(key, conflict);
    else this.conflicts.delete(key);
    if (previous === undefined || conflict === undefined) return previous !== conflict;
    return previous.winner !== conflict.winner || previous.nodes.join('\n') !== conflict.nodes.join('\n');
  }
}

function sameSecret(a: SecretData | undefined, b: SecretData | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.size !== b.size) return false;
  for (const [key, value] of a) {
    const other = b.get(key);
    if (!other || !other.equals(value)) return false;
  }
  return true;
}

function sameLabels(a: Labels, b: Labels): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) && a[key] === b[key]);
}

function memberOf(resource: IndexedResource): Member {
  const member = { kind: resource.kind, name: resource.metadata.name, uid: resource.metadata.uid ?? '', generation: resource.metadata.generation ?? 0 };
  return { uid: member.uid, generation: member.generation, hash: memberHash(member) };
}
