// The readers behind zero-loss proofs (test/support/traffic-proof.ts), on hand-written input in
// the formats of iproute2, /proc/net/xfrm_stat and the guest's traffic node.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { directionCounts, dumpedKeys, parseStateDump, parseTrafficSummary, parseXfrmStat, scanKeys, SequenceTracker, xfrmStatIncrease } from '../support/traffic-proof.js';

const KEY_A = '0a'.repeat(36);
const KEY_B = '0b'.repeat(36);

/** An SA as `ip -s xfrm state` prints it (iproute2 6.x), legacy replay state or ESN. */
function dumpBlock(options: { spi: number; key: string; oseq: number; esn?: { hi: number }; mode?: string; packets?: number }): string {
  const spi = options.spi.toString(16).padStart(8, '0');
  const counters = options.esn
    ? `\tanti-replay esn context:\n\t seq-hi 0x0, seq 0x0, oseq-hi 0x${options.esn.hi.toString(16)}, oseq 0x${options.oseq.toString(16)}\n\t replay_window 128, bitmap-length 4\n\t 00000000 00000000 00000000 00000000 \n`
    : `\tanti-replay context: seq 0x0, oseq 0x${options.oseq.toString(16)}, bitmap 0x00000000\n`;
  return (
    `src 198.51.100.1 dst 198.51.100.2\n` +
    `\tproto esp spi 0x${spi}(${options.spi}) reqid 1(0x00000001) mode ${options.mode ?? 'transport'}\n` +
    `\treplay-window 0 seq 0x00000000 flag  (0x00000000)\n` +
    `\taead rfc4106(gcm(aes)) 0x${options.key} (288 bits) 128\n` +
    counters +
    `\tsel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0\n` +
    `\tlifetime current:\n\t  ${84 * (options.packets ?? 1)}(bytes), ${options.packets ?? 1}(packets)\n\tstats:\n\t  replay-window 0 replay 0 failed 0\n`
  );
}

describe('parseStateDump', () => {
  it('reads identity, a hash of the keys and the outbound counter, legacy and ESN', () => {
    const states = parseStateDump(dumpBlock({ spi: 0x1000, key: KEY_A, oseq: 5 }) + dumpBlock({ spi: 0x1001, key: KEY_B, oseq: 7, esn: { hi: 2 } }));
    expect(states).toHaveLength(2);
    expect(states[0]).toMatchObject({ source: '198.51.100.1', destination: '198.51.100.2', protocol: 'esp', spi: 0x1000, mode: 'transport', outboundSequence: 5n, packets: 1n });
    expect(states[1]).toMatchObject({ spi: 0x1001, outboundSequence: (2n << 32n) | 7n });
    expect(states[0]!.keyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(states[0]!.keyHash).not.toBe(states[1]!.keyHash);
    expect(JSON.stringify(states.map((state) => ({ ...state, outboundSequence: String(state.outboundSequence), packets: String(state.packets) })))).not.toContain(KEY_A.slice(0, 24));
    expect(dumpedKeys(dumpBlock({ spi: 1, key: KEY_A, oseq: 1 })).map((key) => key.toString('hex'))).toEqual([KEY_A]);
  });
});

describe('SequenceTracker', () => {
  it('accepts counters that only grow, and a new key on the same SPI starting at 0', () => {
    const tracker = new SequenceTracker();
    tracker.observe('a', dumpBlock({ spi: 0x1000, key: KEY_A, oseq: 5 }));
    tracker.observe('a', dumpBlock({ spi: 0x1000, key: KEY_A, oseq: 9 }));
    tracker.observe('a', dumpBlock({ spi: 0x1000, key: KEY_B, oseq: 0 }));
    expect(tracker.restarts).toEqual([]);
    expect(tracker.pairs.size).toBe(2);
  });

  it('sums, per mode and direction, the highest packet counter of each (key, SPI) seen', () => {
    const tracker = new SequenceTracker();
    tracker.observe('b', dumpBlock({ spi: 0x1000, key: KEY_A, oseq: 0, mode: 'tunnel', packets: 40 }));
    tracker.observe('b', dumpBlock({ spi: 0x1000, key: KEY_A, oseq: 0, mode: 'tunnel', packets: 90 }) + dumpBlock({ spi: 0x1001, key: KEY_B, oseq: 0, mode: 'tunnel', packets: 3 }));
    // The old SA gone (a rotation), the new one counting on.
    tracker.observe('b', dumpBlock({ spi: 0x1001, key: KEY_B, oseq: 0, mode: 'tunnel', packets: 20 }));
    tracker.observe('b', dumpBlock({ spi: 0x1002, key: KEY_B, oseq: 0, mode: 'transport', packets: 7 }));
    expect(tracker.carried('b', 'tunnel', '198.51.100.1', '198.51.100.2')).toBe(110n);
    expect(tracker.carried('b', 'transport', '198.51.100.1', '198.51.100.2')).toBe(7n);
    expect(tracker.carried('a', 'tunnel', '198.51.100.1', '198.51.100.2')).toBe(0n);
    expect(tracker.carried('b', 'tunnel', '198.51.100.2', '198.51.100.1')).toBe(0n);
  });

  it('reports the same key and SPI sending lower numbers again, even after the SA was gone', () => {
    const tracker = new SequenceTracker();
    tracker.observe('a', dumpBlock({ spi: 0x1000, key: KEY_A, oseq: 50 }));
    tracker.observe('a', '');
    tracker.observe('a', dumpBlock({ spi: 0x1000, key: KEY_A, oseq: 2 }));
    expect(tracker.restarts).toEqual([{ node: 'a', spi: 0x1000, destination: '198.51.100.2', before: 50n, after: 2n, sample: 3 }]);
  });
});

describe('xfrm_stat', () => {
  it('parses counters and reports only those that moved', () => {
    const before = parseXfrmStat('XfrmInError             \t0\nXfrmInNoStates          \t3\nXfrmInStateSeqError     \t0\n');
    const after = parseXfrmStat('XfrmInError             \t0\nXfrmInNoStates          \t5\nXfrmInStateSeqError     \t0\n');
    expect(before.get('XfrmInNoStates')).toBe(3);
    expect([...xfrmStatIncrease(before, after)]).toEqual([['XfrmInNoStates', 2]]);
  });
});

describe('traffic summaries', () => {
  it('counts per direction what was sent against what the receiver got', () => {
    const a = parseTrafficSummary(`ready 10.0.0.1\n${JSON.stringify({ self: '10.0.0.1', sent: { '10.0.0.2': 100 }, received: { '10.0.0.2': { unique: 98, duplicates: 0, highest: 98, missing: [] } } })}\n`);
    const b = parseTrafficSummary(JSON.stringify({ self: '10.0.0.2', sent: { '10.0.0.1': 98 }, received: { '10.0.0.1': { unique: 97, duplicates: 1, highest: 100, missing: [40, 41, 42] } } }));
    expect(directionCounts([a, b])).toEqual([
      { from: '10.0.0.1', to: '10.0.0.2', sent: 100, received: 97, lost: 3, duplicates: 1, missing: [40, 41, 42] },
      { from: '10.0.0.2', to: '10.0.0.1', sent: 98, received: 98, lost: 0, duplicates: 0, missing: [] },
    ]);
  });

  it('refuses output without a summary', () => {
    expect(() => parseTrafficSummary('ready 10.0.0.1\n')).toThrow(/no traffic summary/);
  });
});

describe('scanKeys', () => {
  const key = randomBytes(36);
  const other = randomBytes(36);

  it.each([
    ['hex in a log line', (k: Buffer) => `level=info msg="installed" key=${k.toString('hex')}`],
    ['upper-case hex', (k: Buffer) => `KEY 0X${k.toString('hex').toUpperCase()}`],
    ['a 12-byte fragment in hex', (k: Buffer) => `partial ${k.subarray(10, 22).toString('hex')}`],
    ['base64 at offset 0 (a Secret value)', (k: Buffer) => JSON.stringify({ data: { k: k.toString('base64') } })],
    ['base64 at offset 1 inside a longer value', (k: Buffer) => Buffer.concat([Buffer.from('x'), k]).toString('base64')],
    ['base64 at offset 2 inside a longer value', (k: Buffer) => Buffer.concat([Buffer.from('xy'), k, Buffer.from('z')]).toString('base64')],
    ['base64url', (k: Buffer) => Buffer.concat([Buffer.from('xy'), k]).toString('base64url')],
  ])('finds a key as %s', (_name, render) => {
    const findings = scanKeys([other, key], new Map([['source', render(key)]]));
    expect(findings.map((finding) => ({ source: finding.source, key: finding.key }))).toEqual([{ source: 'source', key: 1 }]);
  });

  it('finds raw bytes in binary content', () => {
    expect(scanKeys([key], new Map([['etcd value', Buffer.concat([Buffer.from([0, 1, 2]), key.subarray(3, 20)])]]))).toHaveLength(1);
  });

  it('finds nothing where no key is, and never returns key bytes', () => {
    const sources = new Map([['log', `hash=${key.subarray(0, 8).toString('hex')} other=${randomBytes(36).toString('hex')}`]]);
    expect(scanKeys([key], sources)).toEqual([]);
    const findings = scanKeys([key], new Map([['log', key.toString('hex')]]));
    expect(JSON.stringify(findings)).not.toContain(key.subarray(0, 6).toString('hex'));
  });
});
