/**
 * XfrmMonitor against the host kernel: policy events made by `ip` and by our client in the same
 * namespace, told apart by the sender's port id; flushes; and an overrun when the receive buffer
 * overflows, after which events keep coming.
 */
import { describe, expect, it } from 'vitest';

import { makePolicy, makeSelector, makeTemplate } from '../../../src/xfrm/defaults.js';
import { isOwnEvent, type XfrmEvent } from '../../../src/xfrm/events.js';
import { XfrmMonitor } from '../../../src/xfrm/monitor.js';
import { useNetnsWithClient } from './netns.js';

const setup = useNetnsWithClient();

/** Reads events until `count` have been collected (the iterator is left open for more). */
async function take(iterator: AsyncIterator<XfrmEvent>, count: number): Promise<XfrmEvent[]> {
  const events: XfrmEvent[] = [];
  while (events.length < count) {
    const next = await iterator.next();
    if (next.done) break;
    events.push(next.value);
  }
  return events;
}

describe('XfrmMonitor', () => {
  it('sees policy changes by ip and by the client, and tells them apart by port id', async () => {
    const monitor = XfrmMonitor.open({ netns: setup.netns.name });
    const iterator = monitor[Symbol.asyncIterator]();
    try {
      setup.netns.ip(...'xfrm policy add src 10.0.0.0/24 dst 10.0.1.0/24 proto tcp dport 443 dir out priority 5 tmpl src 1.1.1.1 dst 2.2.2.2 proto esp reqid 9 mode tunnel'.split(' '));
      const ours = makePolicy({
        direction: 'in',
        selector: makeSelector({ source: '10.0.1.0/24', destination: '10.0.0.0/24' }),
        mark: { value: 3, mask: 0xf },
        templates: [makeTemplate({ source: '2.2.2.2', destination: '1.1.1.1', protocol: 'esp', reqid: 9, mode: 'tunnel' })],
      });
      await setup.client.addPolicy(ours);
      await setup.client.updatePolicy({ ...ours, priority: 77 });
      setup.netns.ip(...'xfrm policy delete src 10.0.0.0/24 dst 10.0.1.0/24 proto tcp dport 443 dir out'.split(' '));
      await setup.client.deletePolicy(ours.id);

      const events = await take(iterator, 5);
      expect(events.map((e) => e.kind)).toEqual(['policy-added', 'policy-added', 'policy-updated', 'policy-deleted', 'policy-deleted']);
      expect(events.map((e) => isOwnEvent(e, setup.client.portId))).toEqual([false, true, true, false, true]);
      const [byIp, byUs, updated, deletedByIp, deletedByUs] = events;
      if (byIp?.kind !== 'policy-added' || byUs?.kind !== 'policy-added' || updated?.kind !== 'policy-updated') throw new Error('unexpected kinds');
      // iproute2 sends nlmsg_pid 0, so its changes look like the kernel's own; ours carry our port id.
      expect(byIp.origin.portId).toBe(0);
      expect(byUs.origin.portId).toBe(setup.client.portId);
      expect(byIp.policy).toMatchObject({ priority: 5, id: { direction: 'out', selector: { destinationPort: 443, protocol: 6 } } });
      expect(byIp.policy.templates[0]).toMatchObject({ source: '1.1.1.1', destination: '2.2.2.2', reqid: 9, mode: 'tunnel' });
      expect(byUs.policy.id).toEqual(ours.id);
      expect(updated.policy.priority).toBe(77);
      // Our own events echo the sequence number of the request that caused them.
      expect(updated.origin.sequence).toBeGreaterThan(byUs.origin.sequence);
      if (deletedByIp?.kind !== 'policy-deleted' || deletedByUs?.kind !== 'policy-deleted') throw new Error('unexpected kinds');
      expect(deletedByIp.policy.templates).toHaveLength(1);
      expect(deletedByUs.policy.id.mark).toEqual({ value: 3, mask: 0xf });
    } finally {
      monitor.close();
    }
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it('sees flushes of each policy type', async () => {
    // Flushing an empty table notifies nobody (the kernel returns early), so fill both types.
    setup.netns.ip(...'xfrm policy add src 10.3.0.0/16 dst 10.4.0.0/16 dir in'.split(' '));
    setup.netns.ip(...'xfrm policy add src 10.3.0.0/16 dst 10.4.0.0/16 dir in ptype sub'.split(' '));
    const monitor = XfrmMonitor.open({ netns: setup.netns.name, groups: ['policy'] });
    try {
      setup.netns.ip('xfrm', 'policy', 'flush');
      await setup.client.flushPolicies('sub');
      const events: XfrmEvent[] = [];
      for await (const event of monitor) {
        events.push(event);
        if (events.length === 2) break; // leaving the loop closes the monitor
      }
      expect(events).toEqual([
        { kind: 'policies-flushed', type: 'main', origin: { portId: 0, sequence: expect.any(Number) } },
        { kind: 'policies-flushed', type: 'sub', origin: { portId: setup.client.portId, sequence: expect.any(Number) } },
      ]);
      expect(monitor.closed).toBe(true);
    } finally {
      monitor.close();
    }
  });

  it('yields an overrun when the receive buffer overflows, then keeps going', async () => {
    // A tiny buffer and a high-water mark of one: the monitor stops reading after the first
    // event, so the kernel's queue overflows while the batch runs.
    const monitor = XfrmMonitor.open({ netns: setup.netns.name, groups: ['policy'], receiveBufferBytes: 4096, highWaterMark: 1 });
    const iterator = monitor[Symbol.asyncIterator]();
    try {
      const policies = Array.from({ length: 300 }, (_, i) =>
        makePolicy({ direction: 'fwd', selector: makeSelector({ source: `10.44.${i >> 8}.${i & 0xff}/32`, destination: '10.45.0.0/16' }) }),
      );
      const results = await setup.client.applyBatch(policies.map((policy) => ({ op: 'add-policy', policy })));
      expect(results.every((r) => r.ok)).toBe(true);
      const seen: XfrmEvent[] = [];
      let overrun: XfrmEvent | undefined;
      while (!overrun) {
        const next = await iterator.next();
        if (next.done) throw new Error('monitor ended');
        if (next.value.kind === 'overrun') overrun = next.value;
        else seen.push(next.value);
      }
      expect(overrun).toMatchObject({ kind: 'overrun', reason: 'ENOBUFS' });
      expect(seen.length).toBeLessThan(300);
      // Still listening after the overrun (the 300 policies are there: the flush notifies).
      setup.netns.ip('xfrm', 'policy', 'flush');
      let after: XfrmEvent | undefined;
      do {
        const next = await iterator.next();
        if (next.done) throw new Error('monitor ended');
        after = next.value;
      } while (after.kind !== 'policies-flushed');
      expect(after.kind).toBe('policies-flushed');
    } finally {
      monitor.close();
    }
  });
});
