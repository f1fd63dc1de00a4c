/**
 * What the controller knows of one node's resources: the reports its agent listed (resources
 * not applied) and the last applied set the node proved (`status.applied`, ../crd/applied-set.ts).
 *
 * The rule (docs/design.md, "Node reports"): the node applied generation G of resource R when
 * it lists no report of R and R's (uid, G) is in the last set it proved. A set is proved when
 * the digest the agent wrote equals the digest of the set the controller expects of the node:
 * every resource that selects it, is not being deleted, and is not listed. Until the next
 * proof the last one stands, so while a node catches up with an edit of one resource the
 * others stay Applied there, and only the edited one waits.
 *
 * The expected digest is kept member by member (a sum, O(1) per change), and so are the keys
 * whose membership changed since the last proof (`dirty`): a proof updates those and nothing
 * else, so its cost is what changed since the one before, not the node's whole set.
 */
import { AppliedSetSum } from '../crd/applied-set.js';
import type { LegacyResourceReport, ResourceStanding } from '../crd/node-state.js';

/** A resource as a member of a node's expected set: its uid, generation and digest term. */
export interface Member {
  readonly uid: string;
  readonly generation: number;
  readonly hash: bigint;
}

/** What a proof holds of a resource: a uid of `undefined` is a first-format report (no uid then). */
export interface Proven {
  readonly uid: string | undefined;
  readonly generation: number;
}

export class NodeProof {
  /** The node's IpsecNodeState, read; undefined while it has none. */
  standing: ResourceStanding | undefined;
  /** Key (`Kind/name`) → the report listed for it. */
  readonly listed = new Map<string, LegacyResourceReport>();
  /** The set the controller expects the node to have applied, with its running digest. */
  private readonly expected = new Map<string, Member>();
  private readonly sum = new AppliedSetSum();
  /** The last proved set. */
  private readonly proven = new Map<string, Proven>();
  /** Keys whose expected membership changed since the last proof: the only ones a proof can move. */
  private dirty = new Set<string>();
  /** The written digest as a number, to compare with the sum. */
  private claimed: bigint | undefined;

  /** Sets the expected membership of `key`; returns whether it changed. */
  setMember(key: string, member: Member | undefined): boolean {
    const previous = this.expected.get(key);
    // The same uid and generation (a write of the resource's status, say): nothing to prove.
    if (previous === member || (previous && member && previous.uid === member.uid && previous.generation === member.generation)) return false;
    if (previous) this.sum.remove(previous.hash);
    if (member) {
      this.expected.set(key, member);
      this.sum.add(member.hash);
    } else this.expected.delete(key);
    this.dirty.add(key);
    return true;
  }

  /**
   * Reads a new status. Returns the keys whose report or proof may have moved; the caller
   * updates the memberships of the keys whose listing changed (`listingChanged`), then calls
   * prove().
   */
  setStanding(standing: ResourceStanding | undefined): { touched: Set<string>; listingChanged: Set<string> } {
    const touched = new Set<string>();
    const listingChanged = new Set<string>();
    const next = new Map<string, LegacyResourceReport>();
    for (const report of standing?.reports ?? []) next.set(`${report.kind}/${report.name}`, report);
    for (const [key, report] of this.listed) {
      if (!sameReport(report, next.get(key))) touched.add(key);
      if (!next.has(key)) listingChanged.add(key);
    }
    for (const [key, report] of next) {
      if (!sameReport(report, this.listed.get(key))) touched.add(key);
      if (!this.listed.has(key)) listingChanged.add(key);
    }
    const before = this.standing?.format;
    const after = standing?.format;
    if (after === undefined) {
      // No IpsecNodeState (deleted, or it reports on another node now): nothing is applied
      // here any more, as when every report was gone with it.
      for (const key of this.proven.keys()) touched.add(key);
      this.proven.clear();
      this.dirty = new Set(this.expected.keys());
    } else if (before === 'legacy' && after === 'digest') {
      // An agent upgraded: what its last report of the first format said Applied stands until
      // its first proof, so the upgrade flips no resource to Pending.
      for (const report of this.listed.values()) {
        if (report.state !== 'Applied' || report.generation === undefined) continue;
        const key = `${report.kind}/${report.name}`;
        this.proven.set(key, { uid: undefined, generation: report.generation });
        this.dirty.add(key);
      }
    }
    // Proofs are read in the current format only: their keys may move when the format does.
    if (before !== after) for (const key of this.proven.keys()) touched.add(key);
    this.listed.clear();
    for (const [key, report] of next) this.listed.set(key, report);
    this.standing = standing;
    this.claimed = standing?.format === 'digest' ? BigInt(`0x${standing.applied.digest}`) : undefined;
    return { touched, listingChanged };
  }

  /**
   * When the written digest and count are those of the expected set, that set is proved: the
   * keys changed since the last proof take their expected membership. Returns the keys whose
   * proof moved. A node that could not list all its reports (`unlisted`) proves nothing: the
   * controller cannot tell which of the resources it expects are the unlisted ones.
   */
  prove(): string[] {
    const standing = this.standing;
    if (standing?.format !== 'digest' || standing.unlisted > 0 || this.dirty.size === 0) return [];
    if (standing.applied.resources !== this.sum.count || this.claimed !== this.sum.value()) return [];
    const moved: string[] = [];
    for (const key of this.dirty) {
      const member = this.expected.get(key);
      const previous = this.proven.get(key);
      if (member) {
        if (previous?.uid !== member.uid || previous.generation !== member.generation) moved.push(key);
        this.proven.set(key, member);
      } else if (previous) {
        this.proven.delete(key);
        moved.push(key);
      }
    }
    this.dirty.clear();
    return moved;
  }

  /** The generation of `key` (of uid `uid`) the node proved it applied; reports come first. */
  applied(key: string, uid: string): number | undefined {
    if (this.standing?.format !== 'digest' || this.listed.has(key)) return undefined;
    const proven = this.proven.get(key);
    if (proven === undefined || (proven.uid !== undefined && proven.uid !== uid)) return undefined;
    return proven.generation;
  }

  /** Whether the last proof holds `key` at any generation (its entries are still on the node). */
  holds(key: string): boolean {
    return this.standing?.format === 'digest' && this.proven.has(key);
  }

  /** Keys whose standing here depends on the node existing (listed or proved). */
  keys(): Set<string> {
    return new Set([...this.listed.keys(), ...this.proven.keys()]);
  }
}

function sameReport(a: LegacyResourceReport | undefined, b: LegacyResourceReport | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.state === b.state && a.generation === b.generation && a.reason === b.reason && a.message === b.message && a.entries === b.entries;
}
