/**
 * The NETLINK_XFRM socket addon against the host kernel, each test in network namespaces it
 * creates and deletes. Needs root and the built addon (`npx node-gyp rebuild --directory native`);
 * without them every test fails with the reason.
 *
 * Messages here are built and read by hand, on purpose sharing nothing with the codec: this file
 * tests the socket, and a codec bug must not be able to hide a socket bug (or the reverse).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Errno } from '../../../src/netlink/errno.js';
import { NetlinkSocket, NetlinkSocketError, XfrmMulticastGroup } from '../../../src/netlink/socket.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

// linux/netlink.h and linux/xfrm.h. Typed here rather than imported so the test does not trust
// the code it tests.
const NLMSG_HDRLEN = 16;
const NLMSG_NOOP = 1;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;
const NLMSGERR_ATTR_OFFS = 2;
const XFRM_MSG_NEWPOLICY = 0x13;
const XFRM_MSG_NEWSPDINFO = 0x24;
const XFRM_MSG_GETSPDINFO = 0x25;
const XFRMA_SPD_INFO = 1;
const XFRMA_SPD_IPV4_HTHRESH = 3;

// ---------------------------------------------------------------------------------------------
// Namespaces and commands

const createdNamespaces = new Set<string>();

/** A fresh, empty network namespace that afterAll deletes. */
function freshNetns(): string {
  const name = `ipsecop-t-${randomBytes(4).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name]);
  createdNamespaces.add(name);
  return name;
}

function ipIn(netns: string, ...args: string[]): void {
  execFileSync('ip', ['-n', netns, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Inode of the calling thread's network namespace: what setns changes. */
function threadNetnsInode(): number {
  return statSync('/proc/thread-self/ns/net').ino;
}

// ---------------------------------------------------------------------------------------------
// Hand-built netlink

interface Nlmsg {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  readonly payload: Buffer;
}

function nlmsg(type: number, flags: number, seq: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(NLMSG_HDRLEN);
  header.writeUInt32LE(NLMSG_HDRLEN + payload.length, 0);
  header.writeUInt16LE(type, 4);
  header.writeUInt16LE(flags, 6);
  header.writeUInt32LE(seq, 8);
  header.writeUInt32LE(0, 12);
  return Buffer.concat([header, payload]);
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value, 0);
  return b;
}

/** XFRM_MSG_GETSPDINFO: nlmsghdr + a u32 flags body. */
function getSpdInfo(seq: number): Buffer {
  return nlmsg(XFRM_MSG_GETSPDINFO, NLM_F_REQUEST, seq, u32(0));
}

function splitDatagram(datagram: Buffer): Nlmsg[] {
  const out: Nlmsg[] = [];
  let offset = 0;
  while (offset + NLMSG_HDRLEN <= datagram.length) {
    const len = datagram.readUInt32LE(offset);
    if (len < NLMSG_HDRLEN || offset + len > datagram.length) throw new Error(`bad nlmsg_len ${len} at ${offset}`);
    out.push({
      type: datagram.readUInt16LE(offset + 4),
      flags: datagram.readUInt16LE(offset + 6),
      seq: datagram.readUInt32LE(offset + 8),
      pid: datagram.readUInt32LE(offset + 12),
      payload: datagram.subarray(offset + NLMSG_HDRLEN, offset + len),
    });
    offset += (len + 3) & ~3;
  }
  return out;
}

/** Attributes (type → payload) from `start` to the end of `buf`. */
function attributes(buf: Buffer, start: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let offset = start;
  while (offset + 4 <= buf.length) {
    const len = buf.readUInt16LE(offset);
    if (len < 4 || offset + len > buf.length) break;
    out.set(buf.readUInt16LE(offset + 2) & 0x3fff, buf.subarray(offset + 4, offset + len));
    offset += (len + 3) & ~3;
  }
  return out;
}

/** Outbound policy count (xfrmu_spdinfo.outcnt) from a NEWSPDINFO reply. */
function outboundPolicyCount(reply: Nlmsg): number {
  const info = attributes(reply.payload, 4).get(XFRMA_SPD_INFO);
  if (info === undefined) throw new Error('NEWSPDINFO without XFRMA_SPD_INFO');
  return info.readUInt32LE(4); // incnt, outcnt, ...
}

function ipv4(bytes: Buffer, offset: number): string {
  return [...bytes.subarray(offset, offset + 4)].join('.');
}

// ---------------------------------------------------------------------------------------------
// Receiving

/** Collects everything a socket delivers and lets a test wait for a condition on it. */
class Inbox {
  readonly messages: Nlmsg[] = [];
  readonly errors: NetlinkSocketError[] = [];
  #waiters: { done: () => boolean; resolve: () => void }[] = [];

  constructor(socket: NetlinkSocket) {
    socket.onMessage((datagram) => {
      this.messages.push(...splitDatagram(datagram));
      this.#wake();
    });
    socket.onError((error) => {
      this.errors.push(error);
      this.#wake();
    });
  }

  /** Resolves once `done()` holds. A condition that never holds fails by the test timeout. */
  until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ done, resolve }));
  }

  async reply(seq: number): Promise<Nlmsg> {
    await this.until(() => this.messages.some((m) => m.seq === seq));
    return this.messages.find((m) => m.seq === seq)!;
  }

  #wake(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.done()) return true;
      w.resolve();
      return false;
    });
  }
}

const openSockets: NetlinkSocket[] = [];

function open(options: Parameters<typeof NetlinkSocket.open>[0]): NetlinkSocket {
  const socket = NetlinkSocket.open(options);
  openSockets.push(socket);
  return socket;
}

async function spdInfo(socket: NetlinkSocket, inbox: Inbox, seq: number): Promise<Nlmsg> {
  await socket.send(getSpdInfo(seq));
  const reply = await inbox.reply(seq);
  expect(reply.type).toBe(XFRM_MSG_NEWSPDINFO);
  return reply;
}

// ---------------------------------------------------------------------------------------------

beforeAll(() => {
  if (process.getuid?.() !== 0) {
    throw new Error('test/kernel/host needs root: it creates network namespaces and XFRM policies. Run it as root.');
  }
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch (error) {
    throw new Error('test/kernel/host needs iproute2 (`ip`) on PATH: apt-get install iproute2', { cause: error });
  }
  // Loads the addon: a missing build fails here with the command to build it.
  NetlinkSocket.open().close();
});

afterEach(() => {
  for (const socket of openSockets.splice(0)) socket.close();
});

afterAll(() => {
  const failures: string[] = [];
  for (const name of createdNamespaces) {
    try {
      execFileSync('ip', ['netns', 'delete', name], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message}`);
    }
  }
  createdNamespaces.clear();
  if (failures.length > 0) throw new Error(`could not delete test namespaces:\n${failures.join('\n')}`);
});

describe('NetlinkSocket: request and reply', () => {
  it('sends a hand-built GETSPDINFO and receives the NEWSPDINFO reply addressed to its port', async () => {
    const socket = open({ netns: freshNetns() });
    const inbox = new Inbox(socket);
    expect(socket.portId).toBeGreaterThan(0);

    const reply = await spdInfo(socket, inbox, 4242);

    expect(reply.pid).toBe(socket.portId);
    expect(outboundPolicyCount(reply)).toBe(0);
  });

  it('receives NLMSG_ERROR with a negative errno, a capped echo and extended-ack text and offset for a malformed request', async () => {
    const socket = open({ netns: freshNetns() });
    const inbox = new Inbox(socket);
    // GETSPDINFO whose one attribute (XFRMA_SPD_IPV4_HTHRESH, 20 bytes into the message) is
    // too short for its type: the kernel's attribute policy rejects it.
    const request = nlmsg(XFRM_MSG_GETSPDINFO, NLM_F_REQUEST | NLM_F_ACK, 77, Buffer.concat([u32(0), Buffer.from([4, 0, XFRMA_SPD_IPV4_HTHRESH, 0])]));

    await socket.send(request);
    const reply = await inbox.reply(77);

    expect(reply.type).toBe(NLMSG_ERROR);
    const errno = reply.payload.readInt32LE(0);
    expect(errno).toBeLessThan(0);
    // NETLINK_CAP_ACK (the default): only the request's header comes back, then the TLVs.
    expect(reply.flags & NLM_F_CAPPED).toBe(NLM_F_CAPPED);
    expect(reply.flags & NLM_F_ACK_TLVS).toBe(NLM_F_ACK_TLVS);
    const echoed = reply.payload.subarray(4, 4 + NLMSG_HDRLEN);
    expect(echoed).toEqual(request.subarray(0, NLMSG_HDRLEN)); // which request failed
    const tlvs = attributes(reply.payload, 4 + NLMSG_HDRLEN);
    const text = tlvs.get(NLMSGERR_ATTR_MSG)?.toString('utf8').replace(/\0+$/, '');
    expect(text).toMatch(/\S/);
    expect(tlvs.get(NLMSGERR_ATTR_OFFS)?.readUInt32LE(0)).toBe(NLMSG_HDRLEN + 4);
  });

  it('echoes the whole request when capAck is off, and sends no TLVs when extendedAck is off', async () => {
    const netns = freshNetns();
    const request = nlmsg(XFRM_MSG_GETSPDINFO, NLM_F_REQUEST | NLM_F_ACK, 5, Buffer.concat([u32(0), Buffer.from([4, 0, XFRMA_SPD_IPV4_HTHRESH, 0])]));

    const uncapped = open({ netns, capAck: false });
    const uncappedInbox = new Inbox(uncapped);
    await uncapped.send(request);
    const full = await uncappedInbox.reply(5);
    expect(full.flags & NLM_F_CAPPED).toBe(0);
    expect(full.payload.subarray(4, 4 + request.length)).toEqual(request);

    const plain = open({ netns, extendedAck: false });
    const plainInbox = new Inbox(plain);
    await plain.send(request);
    const bare = await plainInbox.reply(5);
    expect(bare.type).toBe(NLMSG_ERROR);
    expect(bare.payload.readInt32LE(0)).toBeLessThan(0);
    expect(bare.flags & NLM_F_ACK_TLVS).toBe(0);
  });

  it('sends several nlmsgs in one datagram and gets every reply', async () => {
    const socket = open({ netns: freshNetns() });
    const inbox = new Inbox(socket);

    await socket.send(Buffer.concat([getSpdInfo(1), getSpdInfo(2), nlmsg(NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, 3)]));

    await inbox.until(() => inbox.messages.length === 3);
    expect(inbox.messages.map((m) => [m.seq, m.type])).toEqual([
      [1, XFRM_MSG_NEWSPDINFO],
      [2, XFRM_MSG_NEWSPDINFO],
      [3, NLMSG_ERROR],
    ]);
    expect(inbox.messages[2]!.payload.readInt32LE(0)).toBe(0); // an ack
  });

  it('refuses a datagram larger than the send buffer with EMSGSIZE, and takes it with sendBufferBytes raised', async () => {
    const netns = freshNetns();
    // 20,000 NOOPs without NLM_F_ACK: 320,000 bytes and no replies.
    const big = Buffer.concat(Array.from({ length: 20_000 }, (_, i) => nlmsg(NLMSG_NOOP, NLM_F_REQUEST, i)));

    const small = open({ netns, sendBufferBytes: 64 * 1024 });
    expect(big.length).toBeGreaterThan(small.sendBufferBytes);
    const refused = await small.send(big).then(() => undefined, (error: unknown) => error);
    expect(refused).toBeInstanceOf(NetlinkSocketError);
    expect(refused).toMatchObject({ code: 'EMSGSIZE', errno: Errno.EMSGSIZE, syscall: 'sendto' });
    expect((refused as Error).message).toContain('sendBufferBytes');

    const large = open({ netns, sendBufferBytes: 1024 * 1024 });
    await expect(large.send(big)).resolves.toBeUndefined();
  });
});

describe('NetlinkSocket: network namespaces', () => {
  it('lives in the target namespace: its policy count follows `ip -n NS`, and the host does not get the policy', async () => {
    const netns = freshNetns();
    const socket = open({ netns });
    const inbox = new Inbox(socket);
    expect(outboundPolicyCount(await spdInfo(socket, inbox, 1))).toBe(0);

    ipIn(netns, 'xfrm', 'policy', 'add', 'src', '10.77.0.1/32', 'dst', '10.77.0.2/32', 'dir', 'out');

    expect(outboundPolicyCount(await spdInfo(socket, inbox, 2))).toBe(1);
    const hostPolicies = execFileSync('ip', ['xfrm', 'policy', 'list'], { encoding: 'utf8' });
    expect(hostPolicies).not.toContain('10.77.0.1');
  });

  it('returns the calling thread to its own namespace after opening elsewhere', () => {
    const before = threadNetnsInode();
    const netns = freshNetns();
    expect(statSync(join('/run/netns', netns)).ino).not.toBe(before);

    open({ netns });
    open({ netns: join('/run/netns', netns) }); // the absolute-path form

    expect(threadNetnsInode()).toBe(before);
  });

  it('throws a clear ENOENT for a namespace that does not exist, and the thread stays home', () => {
    const before = threadNetnsInode();
    const missing = `ipsecop-t-missing-${randomBytes(4).toString('hex')}`;

    let thrown: unknown;
    try {
      open({ netns: missing });
    } catch (error) {
      thrown = error;
    }

    expect(thrown).toBeInstanceOf(NetlinkSocketError);
    expect(thrown).toMatchObject({ code: 'ENOENT', errno: Errno.ENOENT, syscall: 'open' });
    expect((thrown as Error).message).toContain(`/run/netns/${missing}`);
    expect((thrown as Error).message).toContain('ip netns add');
    expect(threadNetnsInode()).toBe(before);
  });

  it('throws EINVAL from setns for a file that is not a network namespace, and the thread stays home', () => {
    const before = threadNetnsInode();

    for (const notNetns of ['/proc/self/ns/uts', '/etc/hostname']) {
      expect(() => open({ netns: notNetns })).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'setns' }));
    }

    expect(threadNetnsInode()).toBe(before);
  });

  it('rejects namespace names and options that cannot be right before touching the kernel', () => {
    expect(() => NetlinkSocket.open({ netns: '' })).toThrow(TypeError);
    expect(() => NetlinkSocket.open({ netns: 'a/b' })).toThrow(/neither a name/);
    expect(() => NetlinkSocket.open({ netns: '..' })).toThrow(TypeError);
    expect(() => NetlinkSocket.open({ groups: [0] })).toThrow(/XFRMNLGRP/);
    expect(() => NetlinkSocket.open({ groups: [9] })).toThrow(RangeError);
    expect(() => NetlinkSocket.open({ receiveBufferBytes: 0 })).toThrow(RangeError);
    expect(() => NetlinkSocket.open({ receiveBufferBytes: 1.5 })).toThrow(RangeError);
  });
});

describe('NetlinkSocket: multicast events', () => {
  it('joins XFRMNLGRP_POLICY and receives the NEWPOLICY event of `ip xfrm policy add`', async () => {
    const netns = freshNetns();
    const socket = open({ netns, groups: [XfrmMulticastGroup.POLICY] });
    const inbox = new Inbox(socket);

    ipIn(netns, 'xfrm', 'policy', 'add', 'src', '10.0.0.1/32', 'dst', '10.0.0.2/32', 'dir', 'out');

    await inbox.until(() => inbox.messages.some((m) => m.type === XFRM_MSG_NEWPOLICY));
    const event = inbox.messages.find((m) => m.type === XFRM_MSG_NEWPOLICY)!;
    // xfrm_userpolicy_info starts with the selector: daddr (16 bytes), then saddr.
    expect(ipv4(event.payload, 0)).toBe('10.0.0.2');
    expect(ipv4(event.payload, 16)).toBe('10.0.0.1');
    expect(inbox.errors).toEqual([]);
  });

  it('with a big receive buffer, keeps all 2,000 events of an `ip -batch` while nobody reads', async () => {
    const netns = freshNetns();
    const socket = open({ netns, groups: [XfrmMulticastGroup.POLICY], receiveBufferBytes: 16 * 1024 * 1024 });
    const inbox = new Inbox(socket);

    // Synchronous on purpose: the event loop is blocked, so every event must wait in the buffer.
    runPolicyBatch(netns, 2000);

    await inbox.until(() => inbox.messages.length >= 2000 || inbox.errors.length > 0);
    expect(inbox.errors).toEqual([]);
    const sources = new Set(inbox.messages.filter((m) => m.type === XFRM_MSG_NEWPOLICY).map((m) => ipv4(m.payload, 16)));
    expect(sources.size).toBe(2000);
  });

  it('with a tiny receive buffer, reports ENOBUFS as data after what was queued, and a request sent from the error handler gets its reply', async () => {
    const netns = freshNetns();
    const socket = open({ netns, groups: [XfrmMulticastGroup.POLICY], receiveBufferBytes: 1 });
    const timeline: string[] = [];
    const replies: Nlmsg[] = [];
    const errors: NetlinkSocketError[] = [];
    socket.onMessage((datagram) => {
      for (const m of splitDatagram(datagram)) {
        timeline.push(m.type === XFRM_MSG_NEWPOLICY ? 'event' : 'reply');
        if (m.seq === 99) replies.push(m);
      }
    });
    const resynced = new Promise<void>((resolve, reject) => {
      socket.onError((error) => {
        errors.push(error);
        timeline.push('error');
        // What a monitor does on ENOBUFS: ask the kernel for the current state at once.
        socket.send(getSpdInfo(99)).then(resolve, reject);
      });
    });

    runPolicyBatch(netns, 2000);
    await resynced;
    while (replies.length === 0) await new Promise((resolve) => setImmediate(resolve));

    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'ENOBUFS', errno: Errno.ENOBUFS, syscall: 'recvmsg', fatal: false });
    expect(errors[0]!.message).toContain('resynchronise');
    // The few events that fitted come first, then the loss, then the answer to the resync.
    const firstError = timeline.indexOf('error');
    expect(timeline.slice(0, firstError).every((entry) => entry === 'event')).toBe(true);
    expect(timeline.slice(firstError)).toEqual(['error', 'reply']);
    expect(socket.closed).toBe(false);
    expect(outboundPolicyCount(replies[0]!)).toBe(2000);
  });
});

function runPolicyBatch(netns: string, count: number): void {
  const dir = mkdtempSync(join(tmpdir(), 'ipsecop-batch-'));
  try {
    const lines = Array.from(
      { length: count },
      (_, i) => `xfrm policy add src 10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32 dst 10.99.0.1/32 dir out`,
    );
    const file = join(dir, 'policies.batch');
    writeFileSync(file, `${lines.join('\n')}\n`);
    execFileSync('ip', ['-n', netns, '-batch', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('NetlinkSocket: lifecycle', () => {
  it('closes idempotently; a closed socket refuses to send', async () => {
    const socket = open({ netns: freshNetns() });
    new Inbox(socket);

    socket.close();
    socket.close();

    expect(socket.closed).toBe(true);
    await expect(socket.send(getSpdInfo(1))).rejects.toMatchObject({ code: 'EBADF', syscall: 'sendto' });
    expect(() => socket.onMessage(() => undefined)).not.toThrow();
  });

  it('can be closed from inside its own message handler; nothing is delivered after that', async () => {
    const socket = open({ netns: freshNetns() });
    const seen: number[][] = [];
    socket.onMessage((datagram) => {
      seen.push(splitDatagram(datagram).map((m) => m.seq));
      socket.close();
    });

    // Three replies (one datagram each) are queued before the socket gets to read any of them.
    await socket.send(Buffer.concat([getSpdInfo(1), getSpdInfo(2), getSpdInfo(3)]));
    while (seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));

    expect(socket.closed).toBe(true);
    expect(seen).toEqual([[1]]);
  });

  it('holds datagrams in the kernel while paused and delivers them on resume', async () => {
    const socket = open({ netns: freshNetns() });
    const inbox = new Inbox(socket);

    socket.pause();
    await socket.send(getSpdInfo(31)); // the reply is queued once send resolves
    for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(inbox.messages).toEqual([]);

    socket.resume();
    expect((await inbox.reply(31)).type).toBe(XFRM_MSG_NEWSPDINFO);
  });

  describe('in a child process', () => {
    let scratch: string;
    beforeAll(() => {
      scratch = mkdtempSync(join(tmpdir(), 'ipsecop-child-'));
      writeTsLoader(scratch);
    });
    afterAll(() => rmSync(scratch, { recursive: true, force: true }));

    it('stays alive while waiting for a reply, then exits by itself once the socket is closed', async () => {
      const netns = freshNetns();
      const result = await runChild(scratch, netns, `
        const socket = NetlinkSocket.open({ netns: process.env.NETNS });
        socket.onMessage((datagram) => {
          console.log('reply type ' + datagram.readUInt16LE(4));
          socket.close();
        });
        await socket.send(${getSpdInfoSource()});
      `);
      expect(result).toEqual({ code: 0, stdout: `reply type ${XFRM_MSG_NEWSPDINFO}\n` });
    });

    it('exits with an open socket that has no handler, or that was unref()ed', async () => {
      const netns = freshNetns();
      const idle = await runChild(scratch, netns, `
        NetlinkSocket.open({ netns: process.env.NETNS, groups: [4] });
        console.log('opened');
      `);
      expect(idle).toEqual({ code: 0, stdout: 'opened\n' });

      // With a reply waiting at exit, which Node's teardown polls while JavaScript is off limits.
      const unrefd = await runChild(scratch, netns, `
        const socket = NetlinkSocket.open({ netns: process.env.NETNS, groups: [4] });
        socket.onMessage(() => undefined).unref();
        await socket.send(${getSpdInfoSource()});
        console.log('listening');
      `);
      expect(unrefd).toEqual({ code: 0, stdout: 'listening\n' });
    });

    it('turns an exception thrown by a message handler into an uncaught exception', async () => {
      const netns = freshNetns();
      const result = await runChild(scratch, netns, `
        const socket = NetlinkSocket.open({ netns: process.env.NETNS });
        process.on('uncaughtException', (error) => {
          console.log('uncaught ' + error.message);
          socket.close();
        });
        socket.onMessage(() => {
          throw new Error('handler failed');
        });
        await socket.send(${getSpdInfoSource()});
      `);
      expect(result).toEqual({ code: 0, stdout: 'uncaught handler failed\n' });
    });

    it('survives worker threads that are terminated with the socket open, or close it and end at once', async () => {
      const netns = freshNetns();
      const socketModule = pathToFileURL(join(repoRoot, 'src', 'netlink', 'socket.ts')).href;
      const workerScript = join(scratch, 'socket-worker.mjs');
      writeFileSync(
        workerScript,
        `import { parentPort, workerData } from 'node:worker_threads';
        import { NetlinkSocket } from ${JSON.stringify(socketModule)};
        const socket = NetlinkSocket.open({ netns: workerData.netns, groups: [4] });
        socket.onMessage(() => parentPort.postMessage('reply'));
        await socket.send(${getSpdInfoSource()});
        if (workerData.closeAndEnd) { socket.close(); parentPort.postMessage('closed'); }
        `,
      );
      const result = await runChild(scratch, netns, `
        import { Worker } from 'node:worker_threads';
        const run = (closeAndEnd) => new Promise((resolve, reject) => {
          const worker = new Worker(${JSON.stringify(workerScript)}, { workerData: { netns: process.env.NETNS, closeAndEnd } });
          worker.on('message', (message) => {
            console.log(message);
            if (message === 'reply') worker.terminate();
          });
          worker.on('error', reject);
          worker.on('exit', resolve);
        });
        console.log('terminated worker exit ' + await run(false));
        console.log('closing worker exit ' + await run(true));
      `);
      expect(result).toEqual({ code: 0, stdout: 'reply\nterminated worker exit 1\nclosed\nclosing worker exit 0\n' });
    });
  });
});

/** The GETSPDINFO request as a JavaScript expression for the child script. */
function getSpdInfoSource(): string {
  return `Buffer.from('${getSpdInfo(7).toString('hex')}', 'hex')`;
}

/**
 * Node 20 cannot run TypeScript, so the child gets module hooks that transpile src/ on the fly
 * with the project's own TypeScript (types are not checked: the test run does that).
 */
function writeTsLoader(dir: string): void {
  const typescript = pathToFileURL(createRequire(import.meta.url).resolve('typescript')).href;
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import ts from ${JSON.stringify(typescript)};
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (context.parentURL?.endsWith('.ts') && specifier.endsWith('.js')) return next(specifier.slice(0, -3) + '.ts', context);
    throw error;
  }
}
export async function load(url, context, next) {
  if (!url.endsWith('.ts')) return next(url, context);
  const fileName = fileURLToPath(url);
  const { outputText } = ts.transpileModule(await readFile(fileName, 'utf8'), {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  return { format: 'module', source: outputText, shortCircuit: true };
}
`,
  );
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`);
}

/** Runs `body` (top-level await allowed) with NetlinkSocket imported; resolves with how it ended. */
async function runChild(dir: string, netns: string, body: string): Promise<{ code: number | null; stdout: string }> {
  const socketModule = pathToFileURL(join(repoRoot, 'src', 'netlink', 'socket.ts')).href;
  const script = join(dir, `child-${randomBytes(4).toString('hex')}.mjs`);
  writeFileSync(script, `import { NetlinkSocket } from ${JSON.stringify(socketModule)};\nvoid NetlinkSocket;\n${body}\n`);
  const child = spawn(process.execPath, ['--import', pathToFileURL(join(dir, 'register.mjs')).href, script], {
    env: { ...process.env, NETNS: netns },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });
    if (code !== 0) throw new Error(`child exited with ${String(code)}:\n${stderr}`);
    return { code, stdout };
  } finally {
    // A child that never exits fails the test by timeout; do not leave it behind.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
