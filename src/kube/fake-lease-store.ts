/**
 * An in-memory LeaseStore with the API server's optimistic concurrency (a write at a stale
 * resourceVersion fails with 409), plus switches to make calls fail or hang. Shared by two
 * electors it models two replicas racing for one Lease.
 */
import type { LeaseRecord, LeaseStore, StoredLease } from './leader-election.js';

export class MemoryLeaseStore implements LeaseStore {
  private stored: StoredLease | undefined;
  private version = 1;
  /** Calls made while set reject with this error (an unreachable API server). */
  failWith: unknown;
  /** While true, calls never settle (a hung connection). */
  hang = false;
  writes = 0;

  peek(): LeaseRecord | undefined {
    return this.stored?.record;
  }

  get(): Promise<StoredLease | undefined> {
    return this.call(() => (this.stored === undefined ? undefined : structuredClone(this.stored)));
  }

  create(record: LeaseRecord): Promise<StoredLease> {
    return this.call(() => {
      if (this.stored !== undefined) throw Object.assign(new Error('leases already exists'), { code: 409 });
      return this.write(record);
    });
  }

  update(record: LeaseRecord, resourceVersion: string): Promise<StoredLease> {
    return this.call(() => {
      if (this.stored === undefined) throw Object.assign(new Error('lease not found'), { code: 404 });
      if (this.stored.resourceVersion !== resourceVersion) throw Object.assign(new Error('the object has been modified'), { code: 409 });
      return this.write(record);
    });
  }

  private write(record: LeaseRecord): StoredLease {
    this.writes++;
    this.stored = { record: structuredClone(record), resourceVersion: String(++this.version) };
    return structuredClone(this.stored);
  }

  private call<T>(action: () => T): Promise<T> {
    if (this.hang) return new Promise(() => undefined);
    if (this.failWith !== undefined) return Promise.reject(this.failWith);
    try {
      return Promise.resolve(action());
    } catch (error) {
      return Promise.reject(error);
    }
  }
}
