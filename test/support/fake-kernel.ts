/**
 * An in-memory XFRM kernel for applier and convergence unit tests: keyed by the same identities
 * as the real one, answering EEXIST/ESRCH/ENOENT like it, and refusing entries a test names.
 * Real-kernel behaviour is proven by the kernel and VM suites; this only makes the pure logic
 * around it testable without sockets.
 */
import type { KernelChange, KernelOutcome } from '../../src/apply/applier.js';
import type { KernelTables } from '../../src/engine/converge.js';
import type { ObservedTables } from '../../src/plan/planner.js';
import { policyKey, stateKey } from '../../src/plan/identity.js';
import type { SecurityAssociation, SecurityPolicy } from '../../src/xfrm/types.js';

export class FakeKernel implements KernelTables {
  readonly states = new Map<string, SecurityAssociation>();
  readonly policies = new Map<string, SecurityPolicy>();
  /** Adds matching this are refused with EINVAL (as for an algorithm the kernel lacks). */
  refuse: (entry: SecurityAssociation | SecurityPolicy) => boolean = () => false;
  readonly log: string[] = [];
  #nextIndex = 8;

  constructor(initial: Partial<ObservedTables> = {}) {
    for (const sa of initial.states ?? []) this.states.set(stateKey(sa.id), sa);
    for (const policy of initial.policies ?? []) this.policies.set(policyKey(policy.id), policy);
  }

  async dump(): Promise<ObservedTables> {
    return { states: [...this.states.values()], policies: [...this.policies.values()] };
  }

  async apply(changes: readonly KernelChange[]): Promise<readonly KernelOutcome[]> {
    return changes.map((change) => this.#one(change));
  }

  #one(change: KernelChange): KernelOutcome {
    this.log.push(change.op);
    const fail = (code: string, errno: number, message: string): KernelOutcome => ({ ok: false, code, errno, message });
    switch (change.op) {
      case 'add-state': {
        const key = stateKey(change.state.id);
        if (this.refuse(change.state)) return fail('EINVAL', 22, 'Requested AEAD algorithm not found');
        if (this.states.has(key)) return fail('EEXIST', 17, 'File exists');
        this.states.set(key, change.state);
        return { ok: true };
      }
      case 'update-state': {
        const key = stateKey(change.state.id);
        const current = this.states.get(key);
        if (!current) return fail('ESRCH', 3, 'No such process');
        this.states.set(key, { ...current, lifetime: change.state.lifetime, encapsulation: change.state.encapsulation });
        return { ok: true };
      }
      case 'delete-state':
        return this.states.delete(stateKey(change.id)) ? { ok: true } : fail('ESRCH', 3, 'No such process');
      case 'add-policy': {
        const key = policyKey(change.policy.id);
        if (this.refuse(change.policy)) return fail('EINVAL', 22, 'Invalid template');
        if (this.policies.has(key)) return fail('EEXIST', 17, 'File exists');
        this.policies.set(key, { ...change.policy, index: change.policy.index || (this.#nextIndex += 8) });
        return { ok: true };
      }
      case 'update-policy': {
        const key = policyKey(change.policy.id);
        const current = this.policies.get(key);
        this.policies.set(key, { ...change.policy, index: current?.index ?? (this.#nextIndex += 8) });
        return { ok: true };
      }
      case 'delete-policy':
        return this.policies.delete(policyKey(change.id)) ? { ok: true } : fail('ENOENT', 2, 'No such file or directory');
    }
  }
}
