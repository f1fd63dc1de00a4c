import { describe, expect, it } from 'vitest';
import { ManualClock, flushMicrotasks } from '../../src/kube/clock.js';
import { MemoryLeaseStore } from '../../src/kube/fake-lease-store.js';
import { LeaderElector, type ElectionEnd, type LeaderElectionOptions } from '../../src/kube/leader-election.js';

function candidate(identity: string, store: MemoryLeaseStore, clock: ManualClock, extra: Partial<LeaderElectionOptions> = {}) {
  const log: string[] = [];
  let leaderSignal: AbortSignal | undefined;
  const stop = new AbortController();
  const elector = new LeaderElector({
    store,
    identity,
    clock,
    random: () => 0,
    onStartedLeading: (signal) => {
      leaderSignal = signal;
      log.push('started');
    },
    onStoppedLeading: () => log.push('stopped'),
    ...extra,
  });
  let ended: ElectionEnd | undefined;
  const running = elector.run(stop.signal).then((end) => (ended = end));
  return { elector, log, stop, running, ended: () => ended, leaderSignal: () => leaderSignal };
}

describe('LeaderElector', () => {
  it('validates its timing: lease > renew deadline > 1.2 * retry period', () => {
    const store = new MemoryLeaseStore();
    const base = { store, identity: 'a', onStartedLeading: () => undefined };
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 })).toThrow(RangeError);
    expect(() => new LeaderElector({ ...base, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 })).toThrow(RangeError);
    expect(() => new LeaderElector({ ...base, identity: '' })).toThrow();
    expect(() => new LeaderElector(base)).not.toThrow();
  });

  it('creates a missing lease and leads, renewing every retry period', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    const a = candidate('a', store, clock);
    await flushMicrotasks();
    expect(a.elector.isLeader()).toBe(true);
    expect(a.log).toEqual(['started']);
    expect(store.peek()).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 15, leaseTransitions: 0 });
    const writes = store.writes;
    await clock.advance(2_000);
    expect(store.writes).toBe(writes + 1);
    expect(new Date(store.peek()?.renewTime ?? 0).getTime()).toBe(2_000);
    a.stop.abort();
    await a.running;
  });

  it('lets only one of two candidates lead; the other takes over after a clean stop releases the lease', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    const a = candidate('a', store, clock);
    await flushMicrotasks();
    const b = candidate('b', store, clock);
    await clock.advance(20_000);
    expect(a.elector.isLeader()).toBe(true);
    expect(b.elector.isLeader()).toBe(false);
    expect(b.elector.currentLeader()).toBe('a');

    a.stop.abort();
    await a.running;
    expect(a.ended()).toBe('stopped');
    expect(a.log).toEqual(['started', 'stopped']);
    expect(a.leaderSignal()?.aborted).toBe(true);
    expect(store.peek()?.holderIdentity).toBeUndefined();
    // B retries every 2 s (no jitter here): it takes over within one retry period, not 15 s.
    await clock.advance(2_000);
    expect(b.elector.isLeader()).toBe(true);
    expect(store.peek()).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    b.stop.abort();
    await b.running;
  });

  it('takes over a lease whose holder stopped renewing, only after the lease duration on its own clock', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    // A crashed leader: a lease renewed at t=0 by someone who will never renew again.
    await store.create({ holderIdentity: 'crashed', leaseDurationSeconds: 15, renewTime: new Date(0), acquireTime: new Date(0), leaseTransitions: 3 });
    const b = candidate('b', store, clock);
    await clock.advance(14_000);
    expect(b.elector.isLeader()).toBe(false);
    await clock.advance(2_000);
    expect(b.elector.isLeader()).toBe(true);
    expect(store.peek()).toMatchObject({ holderIdentity: 'b', leaseTransitions: 4 });
    b.stop.abort();
    await b.running;
  });

  it('stops leading when it cannot renew within the renew deadline, before the lease expires for others', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    const a = candidate('a', store, clock);
    await flushMicrotasks();
    expect(a.elector.isLeader()).toBe(true);
    store.failWith = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    await clock.advance(9_999);
    expect(a.elector.isLeader()).toBe(true);
    await clock.advance(1);
    await a.running;
    expect(a.ended()).toBe('lost');
    expect(a.elector.isLeader()).toBe(false);
    expect(a.leaderSignal()?.aborted).toBe(true);
    expect(a.log).toEqual(['started', 'stopped']);
    // 10 s < 15 s: nobody else could have taken the lease while A still believed it led.
  });

  it('a hung renewal counts as a failure at the deadline', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    const a = candidate('a', store, clock);
    await flushMicrotasks();
    store.hang = true;
    await clock.advance(10_000);
    await a.running;
    expect(a.ended()).toBe('lost');
  });

  it('stops at once when it sees another holder', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    const a = candidate('a', store, clock);
    await flushMicrotasks();
    const current = await store.get();
    await store.update({ ...current!.record, holderIdentity: 'usurper' }, current!.resourceVersion);
    await clock.advance(2_000);
    await a.running;
    expect(a.ended()).toBe('lost');
  });

  it('loses the race gracefully: of two simultaneous creates, one wins', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    const a = candidate('a', store, clock);
    const b = candidate('b', store, clock);
    await clock.advance(10_000);
    expect([a.elector.isLeader(), b.elector.isLeader()].filter(Boolean)).toHaveLength(1);
    a.stop.abort();
    b.stop.abort();
    await Promise.all([a.running, b.running]);
  });

  it('waits for the leader work to finish before releasing on a clean stop', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    let finishWork!: () => void;
    const a = candidate('a', store, clock, {
      onStartedLeading: () => new Promise<void>((resolve) => (finishWork = resolve)),
    });
    await flushMicrotasks();
    a.stop.abort();
    await flushMicrotasks();
    expect(store.peek()?.holderIdentity).toBe('a');
    finishWork();
    await a.running;
    expect(store.peek()?.holderIdentity).toBeUndefined();
  });

  it('resolves stopped without leading when aborted while campaigning', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryLeaseStore();
    await store.create({ holderIdentity: 'other', leaseDurationSeconds: 15, renewTime: new Date(0) });
    const b = candidate('b', store, clock);
    await clock.advance(3_000);
    b.stop.abort();
    await b.running;
    expect(b.ended()).toBe('stopped');
    expect(b.log).toEqual([]);
    expect(store.peek()?.holderIdentity).toBe('other');
  });
});
