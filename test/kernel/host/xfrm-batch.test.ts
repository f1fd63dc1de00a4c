/**
 * applyBatch against the host kernel: thousands of policies pipelined without losing an ack,
 * and a batch whose bad entry fails alone with the kernel's errno while the others apply.
 */
import { describe, expect, it } from 'vitest';

import type { XfrmBatchRequest } from '../../../src/xfrm/client.js';
import { makePolicy, makeSelector, makeTemplate } from '../../../src/xfrm/defaults.js';
import type { SecurityPolicy } from '../../../src/xfrm/types.js';
import { useNetnsWithClient } from './netns.js';

const setup = useNetnsWithClient();

/** Policy number i: a distinct /32 pair per i, one esp template. */
function policy(i: number, direction: 'in' | 'out' | 'fwd' = 'out'): SecurityPolicy {
  const a = `10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`;
  const b = `172.16.${(i >> 8) & 0xff}.${i & 0xff}`;
  return makePolicy({
    direction,
    selector: makeSelector({ source: `${a}/32`, destination: `${b}/32`, protocol: 6, destinationPort: 443 }),
    priority: i,
    templates: [makeTemplate({ source: '192.0.2.1', destination: '192.0.2.2', protocol: 'esp', mode: 'tunnel', reqid: i })],
  });
}

function count(): number {
  const match = /SPD IN\s+(\d+)\s+OUT\s+(\d+)\s+FWD\s+(\d+)/.exec(setup.netns.ip('xfrm', 'policy', 'count'));
  return match ? Number(match[1]) + Number(match[2]) + Number(match[3]) : Number.NaN;
}

describe('applyBatch', () => {
  it('adds 2,000 policies, every one acknowledged', async () => {
    const requests: XfrmBatchRequest[] = Array.from({ length: 2000 }, (_, i) => ({ op: 'add-policy', policy: policy(i) }));
    const results = await setup.client.applyBatch(requests);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.map((r) => r.index)).toEqual(requests.map((_, i) => i));
    expect(count()).toBe(2000);
    expect((await setup.client.spdInfo()).outbound).toBe(2000);
    expect(await setup.client.listPolicies()).toHaveLength(2000);
  });

  it('a bad entry in the middle fails alone, naming itself, with the kernel errno', async () => {
    const requests: XfrmBatchRequest[] = [
      { op: 'add-policy', policy: policy(5000) },
      { op: 'add-policy', policy: policy(5001) },
      { op: 'add-policy', policy: policy(17) }, // exists since the first test: EEXIST
      { op: 'delete-policy', id: policy(99_999).id }, // missing: ENOENT
      { op: 'add-policy', policy: { ...policy(5002), templates: [makeTemplate({ source: '10.0.0.1', destination: '10.0.0.2', protocol: 'esp', mode: 'tunnel', level: 'use' })] } },
      { op: 'add-policy', policy: { ...policy(5003), index: 8 } }, // refused before sending
      { op: 'update-policy', policy: { ...policy(18), priority: 123_456 } },
      { op: 'add-policy', policy: policy(5004) },
    ];
    const results = await setup.client.applyBatch(requests);
    expect(results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'ok', 'EEXIST', 'ENOENT', 'EINVAL', 'EINVAL', 'ok', 'ok']);
    const failure = results[2];
    expect(failure?.ok).toBe(false);
    if (failure && !failure.ok) {
      expect(failure.index).toBe(2);
      expect(failure.error.index).toBe(2);
      expect(failure.error.message).toMatch(/^entry 2: XFRM_MSG_NEWPOLICY dir out 10\.0\.0\.17\/32 -> 172\.16\.0\.17\/32 proto 6 dport 443: EEXIST/);
    }
    const optional = results[4];
    if (optional && !optional.ok) {
      expect(optional.error.kernelMessage).toBe('Mode in optional template not allowed in outbound policy');
      expect(optional.error.validation).toBe(false);
    }
    const local = results[5];
    if (local && !local.ok) expect(local.error.validation).toBe(true);
    expect((await setup.client.getPolicy(policy(18).id)).priority).toBe(123_456);
    expect(count()).toBe(2003);
  });

  it('deletes them all in one batch', async () => {
    const listed = await setup.client.listPolicies();
    const results = await setup.client.applyBatch(listed.map((p) => ({ op: 'delete-policy', id: p.id }) as const));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(count()).toBe(0);
  });

  it('is safe with 10,000 requests: nothing lost, all three directions', async () => {
    const directions = ['in', 'out', 'fwd'] as const;
    const adds: XfrmBatchRequest[] = Array.from({ length: 10_000 }, (_, i) => ({ op: 'add-policy', policy: policy(i, directions[i % 3]) }));
    const added = await setup.client.applyBatch(adds);
    expect(added.filter((r) => !r.ok).map((r) => (r.ok ? '' : r.error.message)).slice(0, 3)).toEqual([]);
    expect(count()).toBe(10_000);
    const deletes: XfrmBatchRequest[] = adds.map((request) => ({ op: 'delete-policy', id: (request as { policy: SecurityPolicy }).policy.id }));
    const deleted = await setup.client.applyBatch(deletes);
    expect(deleted.every((r) => r.ok)).toBe(true);
    expect(count()).toBe(0);
  });
});
