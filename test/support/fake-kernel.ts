/**
 * An in-memory XFRM kernel for unit tests of the applier, the convergence pass and the agent.
 *
 * It follows the kernel's own rules (net/xfrm/xfrm_state.c, xfrm_policy.c, xfrm_user.c), written
 * here from those rules and sharing no code with the planner (not its identity keys, not its
 * lookup predicate), so that a planner that gets the kernel wrong is caught:
 * - SAs are found by family, destination, SPI and protocol, and the request's mark under its
 *   mask matched against each SA's mark under the SA's mask, newest SA first; adding an SA that
 *   such a lookup finds is EEXIST; DELSA/UPDSA of nothing is ESRCH.
 * - UPDSA changes only lifetimes, the encapsulation's ports and original address, the care-of
 *   address and a non-zero output mark / if_id, and keeps the SA (its add time).
 * - Policies are found exactly: direction, type, selector, mark value and mask, if_id. NEWPOLICY
 *   of an existing one is EEXIST; UPDPOLICY is an upsert that keeps the index and stamps a new
 *   add time; DELPOLICY of nothing is ENOENT. The kernel chooses indices as
 *   `generator | direction`, the generator stepping by 8.
 * - Every entry carries the add time of its creation, from the fake's clock.
 * Real-kernel behaviour is proven by the kernel and VM suites; this only makes the pure logic
 * around it testable without sockets.
 */
import type { KernelChange, KernelOutcome } from '../../src/apply/applier.js';
import type { KernelTables } from '../../src/engine/converge.js';
import type { ObservedTables } from '../../src/plan/planner.js';
import type { Mark, PolicyId, SecurityAssociation, SecurityPolicy, Selector, StateId } from '../../src/xfrm/types.js';

const DIRECTION_NUMBER = { in: 0, out: 1, fwd: 2 } as const;

export class FakeKernel implements KernelTables {
  /** Newest first, as the kernel's hash chains return them. */
  #states: SecurityAssociation[] = [];
  #policies: SecurityPolicy[] = [];
  /** Adds matching this are refused with EINVAL (as for an algorithm the kernel lacks). */
  refuse: (entry: SecurityAssociation | SecurityPolicy) => boolean = () => false;
  readonly log: string[] = [];
  /** Wall-clock seconds the kernel stamps entries with. */
  clock: () => number = () => Math.floor(Date.now() / 1000);
  /** A kernel that acknowledges an SA's resume value and drops it (its counter starts at 0). */
  ignoreResume = false;
  #indexGenerator = 0;
  /** Dumps taken, and identities read one by one (GETSA/GETPOLICY). */
  dumps = 0;
  reads = 0;
  /** When set, a read fails with this error (an entry the model cannot hold, a lost answer). */
  failReads: Error | undefined;

  constructor(initial: Partial<ObservedTables> = {}) {
    for (const sa of initial.states ?? []) this.#states.unshift(this.#stamp(sa));
    for (const policy of initial.policies ?? []) this.#policies.unshift(this.#stampPolicy(policy, policy.index || this.#nextIndex(policy.id)));
  }

  get states(): readonly SecurityAssociation[] {
    return this.#states;
  }

  get policies(): readonly SecurityPolicy[] {
    return this.#policies;
  }

  /** Someone else's change, outside the engine (a hand `ip xfrm`, an IKE daemon). */
  foreign(change: KernelChange): KernelOutcome {
    return this.#one(change);
  }

  /** Traffic: the SA's outbound counter advances by `packets`, as the kernel's does when it sends. */
  send(id: StateId, packets: number): void {
    const position = this.#findState(id);
    if (position === undefined) throw new Error('send: no such SA');
    const sa = this.#states[position]!;
    const replay = sa.observed!.replayState!;
    const next = ((BigInt(replay.outboundSequenceHigh) << 32n) | BigInt(replay.outboundSequence)) + BigInt(packets);
    this.#states[position] = {
      ...sa,
      observed: { ...sa.observed!, replayState: { ...replay, outboundSequence: Number(next & 0xffff_ffffn), outboundSequenceHigh: Number(next >> 32n) } },
    };
  }

  async dump(): Promise<ObservedTables> {
    this.dumps += 1;
    return { states: [...this.#states], policies: [...this.#policies] };
  }

  /** GETSA finds what DELSA would (the lookup under mask); GETPOLICY what DELPOLICY would. */
  async read(ids: { readonly states: readonly StateId[]; readonly policies: readonly PolicyId[] }): Promise<ObservedTables> {
    if (this.failReads) throw this.failReads;
    this.reads += ids.states.length + ids.policies.length;
    const states = ids.states.flatMap((id) => {
      const position = this.#findState(id);
      return position === undefined ? [] : [this.#states[position]!];
    });
    const policies = ids.policies.flatMap((id) => {
      const position = this.#findPolicy(id);
      return position === undefined ? [] : [this.#policies[position]!];
    });
    return { states, policies };
  }

  async apply(changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]> {
    return changes.map((change) => this.#one(change));
  }

  #one(change: KernelChange): KernelOutcome {
    this.log.push(change.op);
    const fail = (code: string, errno: number, message: string): KernelOutcome => ({ ok: false, code, errno, message });
    switch (change.op) {
      case 'add-state': {
        if (this.refuse(change.state)) return fail('EINVAL', 22, 'Requested AEAD algorithm not found');
        if (this.#findState(change.state.id) !== undefined) return fail('EEXIST', 17, 'File exists');
        this.#states.unshift(this.#stamp(change.state));
        return { ok: true };
      }
      case 'update-state': {
        const position = this.#findState(change.state.id);
        if (position === undefined) return fail('ESRCH', 3, 'No such process');
        const current = this.#states[position]!;
        const wanted = change.state;
        const encapsulation =
          current.encapsulation && wanted.encapsulation ? { ...current.encapsulation, sourcePort: wanted.encapsulation.sourcePort, destinationPort: wanted.encapsulation.destinationPort, originalAddress: wanted.encapsulation.originalAddress } : current.encapsulation;
        this.#states[position] = {
          ...current,
          lifetime: wanted.lifetime,
          encapsulation,
          careOfAddress: wanted.careOfAddress ?? current.careOfAddress,
          outputMark: wanted.outputMark && wanted.outputMark.value !== 0 ? wanted.outputMark : current.outputMark,
          ifId: wanted.ifId ? wanted.ifId : current.ifId,
        };
        return { ok: true };
      }
      case 'delete-state': {
        const position = this.#findState(change.id);
        if (position === undefined) return fail('ESRCH', 3, 'No such process');
        this.#states.splice(position, 1);
        return { ok: true };
      }
      case 'add-policy': {
        if (this.refuse(change.policy)) return fail('EINVAL', 22, 'Invalid template');
        if (this.#findPolicy(change.policy.id) !== undefined) return fail('EEXIST', 17, 'File exists');
        this.#policies.unshift(this.#stampPolicy(change.policy, change.policy.index || this.#nextIndex(change.policy.id)));
        return { ok: true };
      }
      case 'update-policy': {
        const position = this.#findPolicy(change.policy.id);
        if (position === undefined) {
          this.#policies.unshift(this.#stampPolicy(change.policy, change.policy.index || this.#nextIndex(change.policy.id)));
        } else {
          this.#policies[position] = this.#stampPolicy(change.policy, this.#policies[position]!.index);
        }
        return { ok: true };
      }
      case 'delete-policy': {
        const position = this.#findPolicy(change.id);
        if (position === undefined) return fail('ENOENT', 2, 'No such file or directory');
        this.#policies.splice(position, 1);
        return { ok: true };
      }
    }
  }

  /** __xfrm_state_lookup: the first SA (newest first) that answers the request's id and mark. */
  #findState(id: StateId): number | undefined {
    const requested = maskedValue(id.mark);
    const position = this.#states.findIndex((sa) => {
      if (sa.id.family !== id.family || sa.id.spi !== id.spi || sa.id.protocol !== id.protocol || sa.id.destination !== id.destination) return false;
      const held = sa.id.mark ?? { value: 0, mask: 0 };
      return ((requested & held.mask) >>> 0) === held.value >>> 0;
    });
    return position < 0 ? undefined : position;
  }

  /** xfrm_policy_bysel_ctx: exact type, if_id, mark (value and mask), selector. */
  #findPolicy(id: PolicyId): number | undefined {
    const position = this.#policies.findIndex(
      (policy) =>
        policy.id.direction === id.direction &&
        policy.id.type === id.type &&
        (policy.id.ifId ?? 0) === (id.ifId ?? 0) &&
        sameMarkExactly(policy.id.mark, id.mark) &&
        sameSelectorBytes(policy.id.selector, id.selector),
    );
    return position < 0 ? undefined : position;
  }

  /** xfrm_gen_index: `generator | dir`, the generator stepping by 8; never 0. */
  #nextIndex(id: PolicyId): number {
    let index = this.#indexGenerator | DIRECTION_NUMBER[id.direction];
    this.#indexGenerator += 8;
    if (index === 0) index = 8;
    return index;
  }

  #stamp(sa: SecurityAssociation): SecurityAssociation {
    const { resumeSequence, ...rest } = sa;
    const sequence = this.ignoreResume ? 0n : (resumeSequence ?? 0n);
    return {
      ...rest,
      observed: {
        current: { bytes: 0n, packets: 0n, addTime: BigInt(this.clock()), useTime: 0n },
        statistics: { replayWindow: 0, replay: 0, integrityFailed: 0 },
        replayState: { outboundSequence: Number(sequence & 0xffff_ffffn), outboundSequenceHigh: Number(sequence >> 32n), inboundSequence: 0, inboundSequenceHigh: 0, bitmapLength: 0 },
        sequence: 0,
      },
    };
  }

  #stampPolicy(policy: SecurityPolicy, index: number): SecurityPolicy {
    return { ...policy, index, observed: { current: { bytes: 0n, packets: 0n, addTime: BigInt(this.clock()), useTime: 0n } } };
  }
}

function maskedValue(mark: Mark | undefined): number {
  return mark ? (mark.value & mark.mask) >>> 0 : 0;
}

function sameMarkExactly(a: Mark | undefined, b: Mark | undefined): boolean {
  return (a?.value ?? 0) === (b?.value ?? 0) && (a?.mask ?? 0) === (b?.mask ?? 0);
}

function sameSelectorBytes(a: Selector, b: Selector): boolean {
  return (
    (a.family ?? '') === (b.family ?? '') &&
    a.source.address === b.source.address &&
    a.source.prefixLength === b.source.prefixLength &&
    a.destination.address === b.destination.address &&
    a.destination.prefixLength === b.destination.prefixLength &&
    a.protocol === b.protocol &&
    a.sourcePort === b.sourcePort &&
    a.sourcePortMask === b.sourcePortMask &&
    a.destinationPort === b.destinationPort &&
    a.destinationPortMask === b.destinationPortMask &&
    a.ifindex === b.ifindex &&
    a.user === b.user
  );
}
