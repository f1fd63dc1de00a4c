/**
 * XfrmMonitor over a fake socket: events in order, overruns on ENOBUFS and on undecodable
 * datagrams, backpressure (pause past the high-water mark, resume when drained), and ending.
 */
import { describe, expect, it } from 'vitest';

import * as K from '../../src/xfrm/abi/constants.js';
import { makePolicy, makeSelector } from '../../src/xfrm/defaults.js';
import type { XfrmEvent } from '../../src/xfrm/events.js';
import { XfrmMonitor, type MonitorTransport } from '../../src/xfrm/monitor.js';
import { encodePolicy } from '../../src/xfrm/policy-codec.js';
import { datagramOf } from './fixtures/scripted-transport.js';

class FakeMonitorSocket implements MonitorTransport {
  onMessageHandler: ((datagram: Buffer) => void) | undefined;
  onErrorHandler: ((error: Error & { errno: number; code: string; fatal?: boolean }) => void) | undefined;
  paused = false;
  pauses = 0;
  closed = false;
  onMessage(handler: ((datagram: Buffer) => void) | undefined): void {
    this.onMessageHandler = handler;
  }
  onError(handler: ((error: Error & { errno: number; code: string; fatal?: boolean }) => void) | undefined): void {
    this.onErrorHandler = handler;
  }
  pause(): void {
    this.paused = true;
    this.pauses += 1;
  }
  resume(): void {
    this.paused = false;
  }
  close(): void {
    this.closed = true;
  }
  deliver(...datagrams: Buffer[]): void {
    for (const datagram of datagrams) this.onMessageHandler?.(datagram);
  }
  error(code: string, errno: number, fatal = false): void {
    this.onErrorHandler?.(Object.assign(new Error(code), { code, errno, fatal }));
  }
}

const policy = (priority: number) => makePolicy({ direction: 'in', selector: makeSelector({ source: '10.0.0.0/8', destination: '10.0.0.0/8' }), priority });
const added = (priority: number, portId = 55): Buffer => datagramOf([{ type: K.XFRM_MSG_NEWPOLICY, sequence: priority, payload: encodePolicy(policy(priority)) }], portId);
const flushed = datagramOf([{ type: K.XFRM_MSG_FLUSHPOLICY, sequence: 9, payload: Buffer.alloc(0) }], 55);

async function next(iterator: AsyncIterator<XfrmEvent>): Promise<XfrmEvent> {
  const result = await iterator.next();
  if (result.done) throw new Error('ended');
  return result.value;
}

describe('XfrmMonitor', () => {
  it('yields events in order, including several per datagram and ones queued before reading', async () => {
    const socket = new FakeMonitorSocket();
    const monitor = new XfrmMonitor(socket);
    socket.deliver(added(1), Buffer.concat([added(2), flushed]));
    const iterator = monitor[Symbol.asyncIterator]();
    const events = [await next(iterator), await next(iterator), await next(iterator)];
    expect(events.map((e) => (e.kind === 'policy-added' ? `added ${e.policy.priority}` : e.kind))).toEqual(['added 1', 'added 2', 'policies-flushed']);
    const pending = iterator.next();
    socket.deliver(added(3));
    expect(await pending).toMatchObject({ done: false, value: { kind: 'policy-added', policy: { priority: 3 } } });
    monitor.close();
  });

  it('ENOBUFS becomes an overrun and listening goes on', async () => {
    const socket = new FakeMonitorSocket();
    const monitor = new XfrmMonitor(socket);
    const iterator = monitor[Symbol.asyncIterator]();
    socket.deliver(added(1));
    socket.error('ENOBUFS', 105);
    socket.deliver(added(2));
    expect((await next(iterator)).kind).toBe('policy-added');
    expect(await next(iterator)).toMatchObject({ kind: 'overrun', reason: 'ENOBUFS' });
    expect((await next(iterator)).kind).toBe('policy-added');
    monitor.close();
  });

  it('an undecodable datagram or event becomes an overrun (the picture may be stale)', async () => {
    const socket = new FakeMonitorSocket();
    const monitor = new XfrmMonitor(socket);
    const iterator = monitor[Symbol.asyncIterator]();
    socket.deliver(Buffer.from([1, 2, 3]));
    socket.deliver(datagramOf([{ type: K.XFRM_MSG_NEWPOLICY, sequence: 1, payload: Buffer.alloc(10) }], 1));
    expect(await next(iterator)).toMatchObject({ kind: 'overrun', reason: 'undecodable', detail: expect.stringMatching(/too short for an nlmsghdr/) });
    expect(await next(iterator)).toMatchObject({ kind: 'overrun', reason: 'undecodable', detail: expect.stringMatching(/xfrm_userpolicy_info needs 168/) });
    monitor.close();
  });

  it('stops reading past the high-water mark and resumes once half drained', async () => {
    const socket = new FakeMonitorSocket();
    const monitor = new XfrmMonitor(socket, { highWaterMark: 4 });
    for (let i = 0; i < 4; i += 1) socket.deliver(added(i));
    expect(socket.paused).toBe(true);
    const iterator = monitor[Symbol.asyncIterator]();
    await next(iterator);
    expect(socket.paused).toBe(true);
    await next(iterator);
    expect(socket.paused).toBe(false);
    expect(monitor.queued).toBe(2);
    monitor.close();
  });

  it('close ends a waiting iteration; leaving a for-await loop closes the socket', async () => {
    const socket = new FakeMonitorSocket();
    const monitor = new XfrmMonitor(socket);
    const iterator = monitor[Symbol.asyncIterator]();
    const pending = iterator.next();
    monitor.close();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(socket.closed).toBe(true);

    const other = new FakeMonitorSocket();
    const second = new XfrmMonitor(other);
    other.deliver(added(1), added(2));
    for await (const event of second) {
      expect(event.kind).toBe('policy-added');
      break;
    }
    expect(other.closed).toBe(true);
    expect(() => second[Symbol.asyncIterator]()).toThrow(/one consumer/);
  });

  it('a fatal socket error ends the iteration with that error, after queued events', async () => {
    const socket = new FakeMonitorSocket();
    const monitor = new XfrmMonitor(socket);
    socket.deliver(added(1));
    socket.error('EBADF', 9, true);
    const iterator = monitor[Symbol.asyncIterator]();
    expect((await next(iterator)).kind).toBe('policy-added');
    await expect(iterator.next()).rejects.toMatchObject({ code: 'EBADF' });
    monitor.close();
  });
});
