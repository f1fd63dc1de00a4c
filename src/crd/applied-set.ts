/**
 * The digest of the set of resources a node applied (`status.applied.digest` of its
 * IpsecNodeState, ./node-state.ts): how an agent proves, in 32 characters instead of a report
 * per resource, that it applied exactly the set the controller expects.
 *
 * Each member is (kind, name, uid, generation); the digest is the sum, modulo 2^128, of the
 * first 128 bits of each member's SHA-256. A sum does not depend on order, and a member is
 * added or taken out in O(1): the agent computes it from scratch each pass, the controller
 * keeps the expected value per node change by change (../controller/node-proofs.ts), so an
 * event costs what it changed rather than the node's whole set. Two different sets give the
 * same digest only by accident (about 2^-128 for a change of a few members), and the count
 * beside it must match too. Both sides import this module: the definition is the contract.
 */
import { createHash } from 'node:crypto';

/** One resource the kernel holds at one generation. */
export interface AppliedResource {
  readonly kind: 'SecurityAssociation' | 'IpsecPolicy';
  readonly name: string;
  /** metadata.uid: a resource deleted and created again under its name is another member. */
  readonly uid: string;
  readonly generation: number;
}

const MODULUS = 1n << 128n;

/** The member's term of the sum. */
export function memberHash(member: AppliedResource): bigint {
  const digest = createHash('sha256').update(`${member.kind}\0${member.name}\0${member.uid}\0${member.generation}`).digest();
  return digest.readBigUInt64BE(0) * (1n << 64n) + digest.readBigUInt64BE(8);
}

/** A running sum of members: add and remove in O(1), in any order. */
export class AppliedSetSum {
  private sum = 0n;
  count = 0;

  add(hash: bigint): void {
    this.sum = (this.sum + hash) % MODULUS;
    this.count++;
  }

  remove(hash: bigint): void {
    this.sum = (this.sum - hash + MODULUS) % MODULUS;
    this.count--;
  }

  value(): bigint {
    return this.sum;
  }

  /** 32 lowercase hex digits (`status.applied.digest`). */
  digest(): string {
    return this.sum.toString(16).padStart(32, '0');
  }
}

/** The digest of a whole set (what an agent writes). */
export function appliedSetDigest(members: Iterable<AppliedResource>): { readonly resources: number; readonly digest: string } {
  const sum = new AppliedSetSum();
  for (const member of members) sum.add(memberHash(member));
  return { resources: sum.count, digest: sum.digest() };
}
