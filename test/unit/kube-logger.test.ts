import { describe, expect, it } from 'vitest';
import { createLogger, isLogLevel, type LogFields, type LogLevel } from '../../src/kube/logger.js';

function capture(level: LogLevel = 'debug', fields?: LogFields) {
  const raw: string[] = [];
  const logger = createLogger({ level, write: (line) => raw.push(line), now: () => new Date('2025-01-02T03:04:05.678Z'), fields });
  const lines = (): LogFields[] => raw.map((line) => JSON.parse(line) as LogFields);
  return { logger, raw, lines };
}

describe('logger', () => {
  it('writes one JSON object per line with level, time, msg and fields', () => {
    const { logger, raw, lines } = capture();
    logger.info('applied', { node: 'n1', entries: 3 });
    expect(raw).toHaveLength(1);
    expect(raw[0]?.endsWith('\n')).toBe(true);
    expect(lines()[0]).toEqual({ level: 'info', time: '2025-01-02T03:04:05.678Z', msg: 'applied', node: 'n1', entries: 3 });
  });

  it('drops lines below its level', () => {
    const { logger, lines } = capture('warn');
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(lines().map((line) => line.level)).toEqual(['warn', 'error']);
  });

  it('children carry fixed fields; a line field wins over a fixed one; envelope fields cannot be overridden', () => {
    const { logger, lines } = capture('debug', { component: 'controller' });
    const child = logger.child({ controller: 'sa', reconcileID: 'r1' }).child({ key: 'k' });
    child.info('reconciling', { key: 'k2', msg: 'sneaky', level: 'error' });
    expect(lines()[0]).toEqual({
      level: 'info',
      time: '2025-01-02T03:04:05.678Z',
      msg: 'reconciling',
      component: 'controller',
      controller: 'sa',
      reconcileID: 'r1',
      key: 'k2',
      'field.msg': 'sneaky',
      'field.level': 'error',
    });
  });

  it('serialises errors with name, message, code and cause', () => {
    const { logger, lines } = capture();
    const error = Object.assign(new Error('refused', { cause: new Error('socket closed') }), { code: 'ECONNREFUSED' });
    logger.error('list failed', { error });
    const logged = lines()[0]?.error as LogFields;
    expect(logged).toMatchObject({ name: 'Error', message: 'refused', code: 'ECONNREFUSED', cause: { message: 'socket closed' } });
    expect(typeof logged.stack).toBe('string');
  });

  it('never writes the content of a Secret, wherever it is nested', () => {
    const { logger, raw, lines } = capture();
    const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'keys', namespace: 'ipsec' }, data: { key: 'c2VjcmV0LWtleS1ieXRlcw==' } };
    // A SecretList item has no kind, but has type and data.
    const listItem = { metadata: { name: 'keys2', namespace: 'ipsec' }, type: 'Opaque', stringData: { key: 'plain-secret' } };
    logger.info('loaded', { secret, nested: { items: [listItem] } });
    expect(raw[0]).not.toContain('c2VjcmV0');
    expect(raw[0]).not.toContain('plain-secret');
    expect(lines()[0]).toMatchObject({
      secret: { kind: 'Secret', namespace: 'ipsec', name: 'keys', redacted: true },
      nested: { items: [{ kind: 'Secret', name: 'keys2', redacted: true }] },
    });
  });

  it('still logs ConfigMaps (data without a Secret type)', () => {
    const { logger, lines } = capture();
    logger.info('cm', { configMap: { kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } }, bare: { metadata: { name: 'c' }, data: { a: 'b' } } });
    expect(lines()[0]).toMatchObject({ configMap: { data: { a: 'b' } }, bare: { data: { a: 'b' } } });
  });

  it('prints byte buffers as their length only, bigints as text, cycles as markers', () => {
    const { logger, lines } = capture();
    const cyclic: Record<string, unknown> = { name: 'a' };
    cyclic.self = cyclic;
    const shared = { x: 1 };
    logger.info('odd values', { key: Buffer.from('abcd'), bytes: new Uint8Array(7), big: 2n ** 64n, cyclic, twice: [shared, shared] });
    expect(lines()[0]).toMatchObject({ key: '[4 bytes]', bytes: '[7 bytes]', big: '18446744073709551616', cyclic: { name: 'a', self: '[Circular]' }, twice: [{ x: 1 }, { x: 1 }] });
  });

  it('never throws into the caller', () => {
    const { logger, lines } = capture();
    const hostile = {
      get boom(): string {
        throw new Error('getter exploded');
      },
    };
    expect(() => logger.info('hostile', { hostile })).not.toThrow();
    expect(lines()[0]).toMatchObject({ level: 'info', msg: 'hostile' });
    const broken = createLogger({
      write: () => {
        throw new Error('stderr closed');
      },
    });
    expect(() => broken.error('x')).not.toThrow();
  });

  it('recognises level names', () => {
    expect(isLogLevel('warn')).toBe(true);
    expect(isLogLevel('verbose')).toBe(false);
  });
});
