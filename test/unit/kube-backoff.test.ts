import { describe, expect, it } from 'vitest';
import { ExponentialBackoff, ItemBackoff } from '../../src/kube/backoff.js';
import { ManualClock, sleep } from '../../src/kube/clock.js';
import { keyOf, objectKey, splitKey } from '../../src/kube/keys.js';
import { apiErrorSummary, apiStatusCode, isConflict, isGone, isNotFound } from '../../src/kube/api-errors.js';

describe('ExponentialBackoff', () => {
  it('doubles from the initial delay up to the cap, without jitter when random() is 0', () => {
    const backoff = new ExponentialBackoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    expect(Array.from({ length: 6 }, () => backoff.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    backoff.reset();
    expect(backoff.next()).toBe(100);
  });

  it('stretches each delay by up to jitter * delay', () => {
    const backoff = new ExponentialBackoff({ initialMs: 100, maxMs: 1000, jitter: 1, random: () => 0.5 });
    expect([backoff.next(), backoff.next()]).toEqual([150, 300]);
    const noJitter = new ExponentialBackoff({ initialMs: 100, jitter: 0, random: () => 0.99 });
    expect(noJitter.next()).toBe(100);
  });

  it('rejects nonsense settings', () => {
    expect(() => new ExponentialBackoff({ initialMs: 0 })).toThrow(RangeError);
    expect(() => new ExponentialBackoff({ initialMs: 10, maxMs: 5 })).toThrow(RangeError);
  });
});

describe('ItemBackoff', () => {
  it('is per key, capped, and stays finite after many failures', () => {
    const backoff = new ItemBackoff<string>({ baseMs: 5, maxMs: 300_000 });
    let last = 0;
    for (let i = 0; i < 2000; i++) last = backoff.when('a');
    expect(last).toBe(300_000);
    expect(backoff.when('b')).toBe(5);
    backoff.forget('a');
    expect(backoff.retries('a')).toBe(0);
  });
});

describe('ManualClock', () => {
  it('fires timers in due order, only when time reaches them', async () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b'), 20);
    clock.setTimeout(() => fired.push('a'), 10);
    const cancelled = clock.setTimeout(() => fired.push('never'), 15);
    clock.clearTimeout(cancelled);
    await clock.advance(10);
    expect(fired).toEqual(['a']);
    await clock.advance(10);
    expect(fired).toEqual(['a', 'b']);
    expect(clock.now()).toBe(20);
  });

  it('sleep resolves after the delay or early on abort', async () => {
    const clock = new ManualClock(0);
    let done = false;
    void sleep(clock, 100).then(() => (done = true));
    await clock.advance(99);
    expect(done).toBe(false);
    await clock.advance(1);
    expect(done).toBe(true);
    const abort = new AbortController();
    const early = sleep(clock, 1_000_000, abort.signal);
    abort.abort();
    await early;
    expect(clock.pending()).toBe(0);
  });
});

describe('object keys', () => {
  it('are name for cluster-scoped objects and namespace/name otherwise, and split back', () => {
    expect(objectKey({ metadata: { name: 'sa-1' } })).toBe('sa-1');
    expect(objectKey({ metadata: { name: 'cm', namespace: 'ns' } })).toBe('ns/cm');
    expect(splitKey('ns/cm')).toEqual({ namespace: 'ns', name: 'cm' });
    expect(splitKey('sa-1')).toEqual({ name: 'sa-1' });
    expect(keyOf({ name: 'x', namespace: '' })).toBe('x');
    expect(() => splitKey('a/b/c')).toThrow();
    expect(() => splitKey('/b')).toThrow();
    expect(() => objectKey({ metadata: {} })).toThrow();
  });
});

describe('API error helpers', () => {
  it('read the status from ApiException-like, Watch-like and Status objects', () => {
    expect(apiStatusCode({ code: 404 })).toBe(404);
    expect(apiStatusCode({ statusCode: 410 })).toBe(410);
    expect(apiStatusCode(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBeUndefined();
    expect(isNotFound({ code: 404 })).toBe(true);
    expect(isConflict({ code: 409 })).toBe(true);
    expect(isGone({ statusCode: 410 })).toBe(true);
    expect(apiErrorSummary({ code: 409, body: JSON.stringify({ kind: 'Status', message: 'the object has been modified' }) })).toBe('HTTP 409: the object has been modified');
    expect(apiErrorSummary(Object.assign(new Error('connect refused'), { code: 'ECONNREFUSED' }))).toBe('ECONNREFUSED: connect refused');
  });
});
