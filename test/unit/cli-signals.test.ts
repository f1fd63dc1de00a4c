import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { installSignalHandlers, signalExitStatus, type SignalTarget } from '../../src/cli/signals.js';
import { createLogger } from '../../src/kube/logger.js';

class Exited extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** A stand-in for `process`: signals are emitted by hand, exit throws so the test sees it. */
function fakeProcess() {
  const emitter = new EventEmitter();
  const exits: number[] = [];
  const timers: { callback: () => void; ms: number }[] = [];
  const lines: string[] = [];
  const target: SignalTarget = {
    on: (event, listener) => emitter.on(event, listener),
    exit: (code) => {
      exits.push(code);
      throw new Exited(code);
    },
  };
  const signals = installSignalHandlers({
    target,
    logger: createLogger({ write: (line) => lines.push(line) }),
    exitDeadlineMs: 25_000,
    setTimer: (callback, ms) => timers.push({ callback, ms }),
  });
  const send = (signal: 'SIGTERM' | 'SIGINT') => {
    try {
      emitter.emit(signal);
    } catch (error) {
      if (!(error instanceof Exited)) throw error;
    }
  };
  return { signals, send, exits, timers, lines, listeners: (signal: string) => emitter.listenerCount(signal) };
}

describe('stop signals (PID 1 has no default signal actions)', () => {
  it('before a command claims them, SIGTERM and SIGINT end the process as their default action would', () => {
    const fake = fakeProcess();
    fake.send('SIGTERM');
    fake.send('SIGINT');
    expect(fake.exits).toEqual([143, 130]);
    expect(signalExitStatus('SIGTERM')).toBe(143);
  });

  it('once claimed, the first SIGTERM aborts the stop signal and arms an exit deadline; the handlers stay installed', () => {
    const fake = fakeProcess();
    const stop = fake.signals.claim();
    expect(fake.signals.claimed).toBe(true);
    expect(fake.signals.claim()).toBe(stop);
    fake.send('SIGTERM');
    expect(stop.aborted).toBe(true);
    expect(String(stop.reason)).toContain('SIGTERM received');
    expect(fake.exits).toEqual([]);
    expect(fake.timers.map((timer) => timer.ms)).toEqual([25_000]);
    expect(fake.listeners('SIGTERM')).toBe(1);
    expect(fake.lines.some((line) => line.includes('"msg":"stop signal received: stopping"') && line.includes('"signal":"SIGTERM"'))).toBe(true);
  });

  it('a shutdown that outlives the deadline exits with status 1', () => {
    const fake = fakeProcess();
    fake.signals.claim();
    fake.send('SIGINT');
    expect(() => fake.timers[0]!.callback()).toThrow(Exited);
    expect(fake.exits).toEqual([1]);
    expect(fake.lines.some((line) => line.includes('shutdown did not finish in time'))).toBe(true);
  });

  it('a second signal while stopping exits at once', () => {
    const fake = fakeProcess();
    fake.signals.claim();
    fake.send('SIGTERM');
    fake.send('SIGINT');
    expect(fake.exits).toEqual([130]);
  });
});
