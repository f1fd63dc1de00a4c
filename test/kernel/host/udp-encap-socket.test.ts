/**
 * The addon's UDP encapsulation sockets against the host kernel, in throwaway network
 * namespaces. The host kernel has no ESP, but UDP sockets and the UDP_ENCAP option are XFRM
 * core: create, set UDP_ENCAP, bind, read it back, and see what happens when another process
 * holds the port. (Whether the kernel then decapsulates ESP is shown in the test VM:
 * test/kernel/vm/nat-traversal.test.ts.)
 */
import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { once } from 'node:events';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { UdpEncapSocket, UdpEncapSocketError } from '../../../src/xfrm/udp-encap-socket.js';
import { createNetns, type TestNetns } from './netns.js';

let netns: TestNetns;
beforeAll(() => {
  netns = createNetns();
  netns.ip('addr', 'add', '192.0.2.10/24', 'dev', 'lo');
});
afterAll(() => netns?.remove());

/** Local UDP sockets of the namespace as `ss -uln` lists them: "address:port" each. */
function listening(): string[] {
  const out = execFileSync('ip', ['netns', 'exec', netns.name, 'ss', '-Hunl'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.trim().split(/\s+/)[3] ?? '');
}

/** Another process holding a UDP port in the namespace (plain socket, no UDP_ENCAP). */
async function holdPort(address: string, port: number): Promise<ChildProcess> {
  const script = `const s=require('node:dgram').createSocket('udp4');s.bind(${port},${JSON.stringify(address)},()=>console.log('bound'));`;
  const child = spawn('ip', ['netns', 'exec', netns.name, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  expect(chunk.toString()).toContain('bound');
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
}

function openError(options: Parameters<typeof UdpEncapSocket.open>[0]): UdpEncapSocketError {
  try {
    UdpEncapSocket.open(options).close();
  } catch (error) {
    expect(error).toBeInstanceOf(UdpEncapSocketError);
    return error as UdpEncapSocketError;
  }
  throw new Error(`opening ${options.address}:${options.port} succeeded`);
}

describe('UdpEncapSocket on the host kernel', () => {
  it('binds in the namespace with UDP_ENCAP espinudp set, and frees the port on close', () => {
    const socket = UdpEncapSocket.open({ netns: netns.name, address: '192.0.2.10', port: 4500, encapsulation: 'espinudp' });
    try {
      expect(socket.address).toBe('192.0.2.10');
      expect(socket.port).toBe(4500);
      expect(socket.netnsPath).toBe(`/run/netns/${netns.name}`);
      expect(socket.encapsulation).toBe('espinudp');
      expect(listening()).toContain('192.0.2.10:4500');
    } finally {
      socket.close();
    }
    expect(socket.closed).toBe(true);
    expect(socket.encapsulation).toBeUndefined();
    expect(listening()).not.toContain('192.0.2.10:4500');
    socket.close(); // idempotent
  });

  it('sets espinudp-nonike where the kernel still has it, and otherwise says so and leaves nothing open', () => {
    let socket: UdpEncapSocket | undefined;
    try {
      socket = UdpEncapSocket.open({ netns: netns.name, address: '127.0.0.1', port: 4501, encapsulation: 'espinudp-nonike' });
    } catch (error) {
      // Measured: the 6.18 host kernel refuses the type; 6.1 in the test VM accepts it
      // (test/kernel/vm/nat-traversal.test.ts).
      expect(error).toBeInstanceOf(UdpEncapSocketError);
      expect((error as UdpEncapSocketError).code).toBe('ENOPROTOOPT');
      expect((error as UdpEncapSocketError).message).toContain('use espinudp');
      expect(listening()).not.toContain('127.0.0.1:4501');
      return;
    }
    try {
      expect(socket.encapsulation).toBe('espinudp-nonike');
    } finally {
      socket.close();
    }
  });

  it('reports a port another process holds as EADDRINUSE, on that address or on the any-address', async () => {
    for (const holderAddress of ['192.0.2.10', '0.0.0.0']) {
      const holder = await holdPort(holderAddress, 4502);
      try {
        const error = openError({ netns: netns.name, address: '192.0.2.10', port: 4502, encapsulation: 'espinudp' });
        expect(error.code).toBe('EADDRINUSE');
        expect(error.syscall).toBe('bind');
        expect(error.message).toContain('192.0.2.10:4502');
        expect(error.message).toContain('Another process holds this port');
        // The holder keeps its socket: nothing was fought over.
        expect(listening()).toContain(`${holderAddress}:4502`);
      } finally {
        await stop(holder);
      }
    }
    // Once the holder is gone, the port is ours.
    const socket = UdpEncapSocket.open({ netns: netns.name, address: '192.0.2.10', port: 4502, encapsulation: 'espinudp' });
    socket.close();
  });

  it('refuses a second encapsulation socket on a port it holds itself', () => {
    const first = UdpEncapSocket.open({ netns: netns.name, address: '192.0.2.10', port: 4503, encapsulation: 'espinudp' });
    try {
      expect(openError({ netns: netns.name, address: '192.0.2.10', port: 4503, encapsulation: 'espinudp' }).code).toBe('EADDRINUSE');
    } finally {
      first.close();
    }
  });

  it('says EADDRNOTAVAIL for an address the namespace does not have (an SA this node only sends with)', () => {
    const error = openError({ netns: netns.name, address: '198.51.100.7', port: 4500, encapsulation: 'espinudp' });
    expect(error.code).toBe('EADDRNOTAVAIL');
    expect(error.message).toContain('not one of this network namespace');
  });

  it('opens nothing in the caller namespace when the netns is missing', () => {
    const error = openError({ netns: `${netns.name}-missing`, address: '127.0.0.1', port: 4504, encapsulation: 'espinudp' });
    expect(error.code).toBe('ENOENT');
    expect(error.syscall).toBe('open');
  });

  it('validates before any system call', () => {
    expect(() => UdpEncapSocket.open({ address: '192.0.2.300', port: 4500, encapsulation: 'espinudp' })).toThrow(TypeError);
    expect(() => UdpEncapSocket.open({ address: '192.0.2.1', port: 0, encapsulation: 'espinudp' })).toThrow(RangeError);
    expect(() => UdpEncapSocket.open({ address: '192.0.2.1', port: 4500, encapsulation: 'espintcp' as never })).toThrow(/espinudp or espinudp-nonike/);
  });
});
