import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { EXIT_FATAL, describeFatal, installFatalHandlers, redact, type FatalTarget } from '../../src/cli/fatal.js';

const KEY_HEX = '0102030405060708090a0b0c0d0e0f1011121314';
const KEY_BASE64 = Buffer.from(KEY_HEX, 'hex').toString('base64');

function fakeProcess() {
  const emitter = new EventEmitter();
  const exits: number[] = [];
  const lines: string[] = [];
  const target: FatalTarget = {
    on: (event, listener) => emitter.on(event, listener),
    exit: (code) => {
      exits.push(code);
      return undefined as never;
    },
  };
  installFatalHandlers({ target, write: (line) => lines.push(line), now: () => new Date(Date.UTC(2026, 11, 2)) });
  return { emitter, exits, lines };
}

describe('process-level failure handlers', () => {
  it('an unhandled rejection is logged as one JSON line and exits non-zero', () => {
    const fake = fakeProcess();
    fake.emitter.emit('unhandledRejection', Object.assign(new Error('socket closed'), { code: 'ECONNRESET' }));
    expect(fake.exits).toEqual([EXIT_FATAL]);
    expect(fake.lines).toHaveLength(1);
    const line = JSON.parse(fake.lines[0]!) as { level: string; msg: string; error: { name: string; code: string; message: string; stack: string[] } };
    expect(line.level).toBe('error');
    expect(line.msg).toBe('unhandled promise rejection: exiting');
    expect(line.error).toMatchObject({ name: 'Error', code: 'ECONNRESET', message: 'socket closed' });
    expect(line.error.stack[0]).toMatch(/^at /);
  });

  it('an uncaught exception likewise', () => {
    const fake = fakeProcess();
    fake.emitter.emit('uncaughtException', new TypeError('x is undefined'));
    expect(fake.exits).toEqual([EXIT_FATAL]);
    expect(fake.lines[0]).toContain('"msg":"uncaught exception: exiting"');
  });

  it('never prints key material: not from a message, a cause, a Buffer or a Secret rejected as a value', () => {
    const fake = fakeProcess();
    const secret = { kind: 'Secret', metadata: { name: 'keys' }, data: { 'a-to-b': KEY_BASE64 } };
    fake.emitter.emit('unhandledRejection', secret);
    fake.emitter.emit('unhandledRejection', Buffer.from(KEY_HEX, 'hex'));
    fake.emitter.emit('unhandledRejection', new Error(`Secret "keys" has no key "${KEY_HEX}"`, { cause: new Error(`bad base64 ${KEY_BASE64}`) }));
    expect(fake.exits).toEqual([EXIT_FATAL, EXIT_FATAL, EXIT_FATAL]);
    const output = fake.lines.join('');
    expect(output).not.toContain(KEY_HEX);
    expect(output).not.toContain(KEY_BASE64);
    expect(output).not.toContain(KEY_BASE64.slice(0, 16));
    expect(output).toContain('a non-Error value of type object (content not logged)');
    expect(output).toContain('Secret \\"keys\\" has no key \\"[redacted]\\"');
    expect(output).toContain('bad base64 [redacted]');
  });

  it('clips what it echoes', () => {
    const described = describeFatal(new Error(`no such field `.repeat(1_000)));
    expect(described.message.length).toBeLessThan(400);
    expect(described.message).toContain('more characters');
  });

  it('redacts long hex and base64 runs and nothing shorter', () => {
    expect(redact(`key 0x${KEY_HEX} and ${KEY_BASE64}`)).toBe('key [redacted] and [redacted]');
    expect(redact('spi 0x1000 reqid 7 ipsecpolicies/a-out EADDRINUSE')).toBe('spi 0x1000 reqid 7 ipsecpolicies/a-out EADDRINUSE');
  });
});
