/**
 * The connection layer against a scripted fake kernel: sequence matching, acks, data replies,
 * multipart dumps, NLM_F_DUMP_INTR retries, timeouts, pipelined batches and their bounds,
 * socket errors and close.
 */
import { describe, expect, it } from 'vitest';

import { NetlinkCodecError } from '../../src/netlink/codec-error.js';
import { NetlinkConnection, type NetlinkRequest } from '../../src/netlink/connection.js';
import { NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTI } from '../../src/netlink/constants.js';
import { NetlinkError, NetlinkTimeoutError } from '../../src/netlink/error.js';
import type { NetlinkMessage } from '../../src/netlink/message.js';
import { ScriptedTransport, ackPayload, type ReplySpec } from './fixtures/scripted-transport.js';

const ADD: NetlinkRequest = { type: 0x13, flags: 0, body: Buffer.alloc(168, 1), operation: 'XFRM_MSG_NEWPOLICY test' };
const GET: NetlinkRequest = { type: 0x15, flags: 0, body: Buffer.alloc(64), operation: 'XFRM_MSG_GETPOLICY test', replyType: 0x13 };
const DUMP: NetlinkRequest = { type: 0x15, flags: NLM_F_DUMP, body: Buffer.alloc(0), operation: 'XFRM_MSG_GETPOLICY dump', replyType: 0x13 };

const codeOf = (error: NetlinkError | NetlinkCodecError): string => (error instanceof NetlinkError ? error.code : 'codec');

const ack = (request: NetlinkMessage, errno = 0, reason?: string): ReplySpec => ({ type: 2, sequence: request.sequence, payload: ackPayload(request, errno, reason), flags: 0x100 | (reason ? 0x200 : 0) });

describe('requests', () => {
  it('numbers requests, sets NLM_F_REQUEST|NLM_F_ACK, and resolves on the matching ack', async () => {
    const transport = new ScriptedTransport((request) => [[ack(request)]]);
    const connection = new NetlinkConnection(transport);
    await Promise.all([connection.request(ADD), connection.request(ADD)]);
    const [first, second] = transport.requests;
    expect(first!.flags).toBe(0x5);
    // nlmsg_pid = our port id, so notifications caused by our requests can be recognised.
    expect(first!.portId).toBe(transport.portId);
    expect(second!.sequence).toBe(first!.sequence + 1);
    expect(connection.inFlight).toBe(0);
  });

  it('matches answers that arrive in another order, and ignores other ports and unknown sequences', async () => {
    const held: NetlinkMessage[] = [];
    const transport = new ScriptedTransport((request) => {
      held.push(request);
      if (held.length < 2) return [];
      const [a, b] = held as [NetlinkMessage, NetlinkMessage];
      return [
        [{ ...ack(b), portId: 999 }], // not ours: another socket's port id
        [ack({ ...b, sequence: b.sequence + 1000 })], // a sequence nobody waits for
        [ack(b, 2, 'second failed')],
        [ack(a)],
      ];
    });
    const connection = new NetlinkConnection(transport);
    const results = await Promise.allSettled([connection.request(ADD), connection.request(ADD)]);
    expect(results[0].status).toBe('fulfilled');
    expect(results[1].status).toBe('rejected');
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'ENOENT', kernelMessage: 'second failed' });
  });

  it('collects a GET reply that precedes the ack', async () => {
    const transport = new ScriptedTransport((request) => [[{ type: 0x13, sequence: request.sequence, payload: Buffer.from('abcd') }, ack(request)]]);
    const replies = await new NetlinkConnection(transport).request(GET);
    expect(replies.map((r) => r.payload.toString())).toEqual(['abcd']);
  });

  it('rejects with a NetlinkError carrying the extended ack', async () => {
    const transport = new ScriptedTransport((request) => [[ack(request, 17)]]);
    const error = await new NetlinkConnection(transport).request(ADD).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetlinkError);
    expect(error).toMatchObject({ code: 'EEXIST', errno: 17, operation: 'XFRM_MSG_NEWPOLICY test' });
  });

  it('times out a request nobody answers, with the operation and sequence', async () => {
    const transport = new ScriptedTransport(() => []);
    const connection = new NetlinkConnection(transport, { requestTimeoutMs: 20 });
    const error = await connection.request(ADD).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetlinkTimeoutError);
    expect((error as NetlinkError).message).toMatch(/^XFRM_MSG_NEWPOLICY test: ETIMEDOUT .*no reply within 20 ms \(seq \d+\)/);
    expect(connection.inFlight).toBe(0);
  });

  it('an undecodable datagram fails what is in flight with a codec error', async () => {
    const transport = new ScriptedTransport(() => []);
    const connection = new NetlinkConnection(transport);
    const pending = connection.request(ADD).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve));
    transport.inject(Buffer.from([1, 2, 3]));
    expect(await pending).toBeInstanceOf(NetlinkCodecError);
  });

  it('close rejects what is pending with ECANCELED and refuses new requests', async () => {
    const transport = new ScriptedTransport(() => []);
    const connection = new NetlinkConnection(transport);
    const pending = connection.request(ADD).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve));
    connection.close();
    expect(await pending).toMatchObject({ code: 'ECANCELED' });
    await expect(connection.request(ADD)).rejects.toMatchObject({ code: 'ECANCELED' });
    expect(transport.closed).toBe(true);
  });

  it('ENOBUFS from the socket fails what is in flight (the acks may be lost)', async () => {
    const transport = new ScriptedTransport(() => []);
    const connection = new NetlinkConnection(transport);
    const pending = connection.request(ADD).catch((e: unknown) => e);
    await new Promise((resolve) => setImmediate(resolve));
    transport.fail(Object.assign(new Error('No buffer space available'), { errno: 105, code: 'ENOBUFS' }));
    expect(await pending).toMatchObject({ code: 'ENOBUFS', detail: expect.stringMatching(/replies were lost/) });
  });
});

describe('dumps', () => {
  function entries(request: NetlinkMessage, count: number, flags = NLM_F_MULTI): ReplySpec[] {
    return Array.from({ length: count }, (_, i) => ({ type: 0x13, flags, sequence: request.sequence, payload: Buffer.from([i]) }));
  }

  it('collects multipart entries across datagrams until NLMSG_DONE', async () => {
    const transport = new ScriptedTransport((request) => [
      entries(request, 3),
      [...entries(request, 2), { type: 0x10, flags: NLM_F_MULTI, sequence: request.sequence, payload: Buffer.alloc(1) }],
      [{ type: 3, flags: NLM_F_MULTI, sequence: request.sequence, payload: Buffer.alloc(4) }],
    ]);
    const replies = await new NetlinkConnection(transport).dump(DUMP);
    expect(replies).toHaveLength(5); // the NEWSA-typed message is not a reply of a policy dump
    expect(transport.requests[0]!.flags).toBe(0x301); // NLM_F_REQUEST | NLM_F_DUMP, no ACK
  });

  it('repeats a dump marked NLM_F_DUMP_INTR', async () => {
    let attempt = 0;
    const transport = new ScriptedTransport((request) => {
      attempt += 1;
      const flags = attempt === 1 ? NLM_F_MULTI | NLM_F_DUMP_INTR : NLM_F_MULTI;
      return [[...entries(request, attempt, flags), { type: 3, flags, sequence: request.sequence, payload: Buffer.alloc(4) }]];
    });
    const replies = await new NetlinkConnection(transport).dump(DUMP);
    expect(attempt).toBe(2);
    expect(replies).toHaveLength(2);
  });

  it('gives up after maxDumpAttempts interrupted dumps with EINTR', async () => {
    const transport = new ScriptedTransport((request) => [[{ type: 3, flags: NLM_F_MULTI | NLM_F_DUMP_INTR, sequence: request.sequence, payload: Buffer.alloc(4) }]]);
    const error = await new NetlinkConnection(transport, { maxDumpAttempts: 3 }).dump(DUMP).catch((e: unknown) => e);
    expect(transport.requests).toHaveLength(3);
    expect(error).toMatchObject({ code: 'EINTR', message: expect.stringMatching(/interrupted by concurrent changes \(NLM_F_DUMP_INTR\) 3 times/) });
  });

  it('runs dumps one at a time (the kernel allows one per socket)', async () => {
    let running = 0;
    let overlapped = false;
    const transport = new ScriptedTransport((request) => {
      running += 1;
      if (running > 1) overlapped = true;
      setImmediate(() => {
        running -= 1;
        transport.enqueue(Buffer.concat([datagramFor(request, transport.portId)]));
      });
      return [];
    });
    const connection = new NetlinkConnection(transport);
    await Promise.all([connection.dump(DUMP), connection.dump(DUMP), connection.dump(DUMP)]);
    expect(overlapped).toBe(false);
    expect(transport.requests).toHaveLength(3);
  });

  it('a DONE carrying an error rejects the dump', async () => {
    const errno = Buffer.alloc(4);
    errno.writeInt32LE(-22);
    const transport = new ScriptedTransport((request) => [[{ type: 3, flags: NLM_F_MULTI, sequence: request.sequence, payload: errno }]]);
    await expect(new NetlinkConnection(transport).dump(DUMP)).rejects.toMatchObject({ code: 'EINVAL' });
  });
});

function datagramFor(request: NetlinkMessage, portId: number): Buffer {
  const done = Buffer.alloc(20);
  done.writeUInt32LE(20, 0);
  done.writeUInt16LE(3, 4);
  done.writeUInt16LE(NLM_F_MULTI, 6);
  done.writeUInt32LE(request.sequence, 8);
  done.writeUInt32LE(portId, 12);
  return done;
}

describe('batches', () => {
  it('pipelines 10,000 requests within the datagram size and in-flight bounds, in order', async () => {
    const transport = new ScriptedTransport((request) => [[request.payload[0] === 7 ? ack(request, 17, 'File exists') : ack(request)]], {
      receiveBufferBytes: 256 * 1024,
    });
    const connection = new NetlinkConnection(transport, { maxInFlight: 256 });
    const requests = Array.from({ length: 10_000 }, (_, i) => ({ ...ADD, body: Buffer.alloc(300, i === 5000 ? 7 : 1), operation: `entry ${i}` }));
    const outcomes = await connection.batch(requests);
    expect(outcomes).toHaveLength(10_000);
    expect(outcomes.filter((o) => o.ok)).toHaveLength(9_999);
    const failed = outcomes[5000];
    expect(failed?.ok).toBe(false);
    if (failed && !failed.ok) expect(failed.error).toMatchObject({ code: 'EEXIST', operation: 'entry 5000', kernelMessage: 'File exists' });
    expect(transport.droppedDatagrams).toBe(0);
    expect(transport.maxUnanswered).toBeLessThanOrEqual(256);
    expect(Math.max(...transport.sent.map((d) => d.length))).toBeLessThanOrEqual(64 * 1024);
    expect(transport.sent.length).toBeLessThan(10_000 / 50); // many requests per datagram
    const sequences = transport.requests.map((r) => r.sequence);
    expect(new Set(sequences).size).toBe(10_000);
  });

  it('without a bound, a small receive buffer would lose acks (the fake models the kernel)', async () => {
    const transport = new ScriptedTransport((request) => [[ack(request)]], { receiveBufferBytes: 64 * 830 });
    transport.autoDeliver = false;
    const connection = new NetlinkConnection(transport, { maxInFlight: 1000, requestTimeoutMs: 1000 });
    const requests = Array.from({ length: 200 }, () => ADD);
    const done = connection.batch(requests);
    await new Promise((resolve) => setImmediate(resolve));
    transport.flush();
    const outcomes = await done;
    expect(transport.droppedDatagrams).toBeGreaterThan(0);
    expect(outcomes.some((o) => !o.ok && codeOf(o.error) === 'ENOBUFS')).toBe(true);
  });

  it('packs no more than maxDatagramBytes, but always at least one request', async () => {
    const transport = new ScriptedTransport((request) => [[ack(request)]]);
    const connection = new NetlinkConnection(transport, { maxDatagramBytes: 1000 });
    const outcomes = await connection.batch([
      { ...ADD, body: Buffer.alloc(400) },
      { ...ADD, body: Buffer.alloc(400) },
      { ...ADD, body: Buffer.alloc(2000) },
      { ...ADD, body: Buffer.alloc(10) },
    ]);
    expect(outcomes.every((o) => o.ok)).toBe(true);
    expect(transport.sent.map((d) => d.length)).toEqual([832, 2016, 28]);
  });

  it('a failed send fails exactly the requests of that datagram', async () => {
    const transport = new ScriptedTransport((request) => [[ack(request)]]);
    transport.failNextSend = Object.assign(new Error('Message too long'), { errno: 90, code: 'EMSGSIZE' });
    const connection = new NetlinkConnection(transport, { maxDatagramBytes: 200 }); // one request per datagram
    const outcomes = await connection.batch([ADD, ADD, ADD]);
    expect(outcomes.map((o) => (o.ok ? 'ok' : codeOf(o.error)))).toEqual(['EMSGSIZE', 'ok', 'ok']);
  });
});
