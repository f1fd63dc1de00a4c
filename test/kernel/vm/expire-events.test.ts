// The kernel's lifetime expiries (XFRM_MSG_EXPIRE on XFRMNLGRP_EXPIRE) against the real kernel,
// on both kernels of the matrix (the vm and vm-6.12 projects run this file). build_expire sends
// struct xfrm_user_expire followed by XFRMA_MARK and XFRMA_IF_ID only — no algorithms, no key —
// so an expiry decoded like a dump entry was dropped as "no algorithm attribute", and the agent
// never saw one (no Expired from the event, no SoftExpired, no expire metric: seen end to end in
// test/e2e/sequence.test.ts). The product's own monitor, in a namespace of the VM, must report the
// soft and then the hard expiry of an AES-GCM SA added by `ip` (soft 2 s, hard 20 s: a timer run
// late under emulation that finds the hard limit due skips the soft one), with its identity and
// add time, and the agent's lookup must find that very SA (with its key) in a dump taken before.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../../infra/vm/inject.js';
import { formatResult, freshNamespace, REPO, warmCrypto } from '../../support/vm-cli.js';

const vm = vmFromInject();
const SPI = 0x7100;
const KEY = '0x6a1f0e2d3c4b5a69788796a5b4c3d2e1f0011223';

function probeScript(): string {
  const dist = (path: string) => JSON.stringify(join(REPO, 'dist', path));
  return `
const { XfrmMonitor } = await import(${dist('xfrm/monitor.js')});
const { openKernelTables } = await import(${dist('engine/kernel.js')});
const { stateKey } = await import(${dist('plan/identity.js')});
const { dumpedIncarnation } = await import(${dist('agent/node-worker.js')});
const { execFileSync } = await import('node:child_process');
const monitor = XfrmMonitor.open({ groups: ['expire'] });
const events = [];
let hard;
let added = Date.now();
const reading = (async () => {
  for await (const event of monitor) {
    events.push(event.kind === 'state-expired'
      ? { kind: event.kind, hard: event.hard, spi: event.state.id.spi, destination: event.state.id.destination, hasAlgorithms: 'algorithms' in event.state, addTime: String(event.state.observed?.current.addTime), afterMs: Date.now() - added }
      : { kind: event.kind, detail: event.detail ?? null });
    if (event.kind === 'state-expired' && event.hard) { hard = event; break; }
  }
})();
execFileSync('ip', ['xfrm', 'state', 'add', 'src', '198.51.100.1', 'dst', '198.51.100.2', 'proto', 'esp', 'spi', '${SPI}', 'mode', 'transport',
  'aead', 'rfc4106(gcm(aes))', '${KEY}', '128', 'limit', 'time-soft', '2', 'limit', 'time-hard', '20']);
added = Date.now();
const tables = await openKernelTables(undefined);
const { states } = await tables.dump();
const dumped = new Map(states.map((sa) => [stateKey(sa.id), sa]));
const deadline = Date.now() + 120000;
while (!hard && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
monitor.close();
await reading;
const found = hard ? dumpedIncarnation(dumped, hard.state) : undefined;
tables.close();
console.log(JSON.stringify({ events, found: found ? { spi: found.id.spi, algorithm: found.algorithms.kind === 'aead' ? found.algorithms.aead.name : found.algorithms.kind } : null }));
`;
}

describe('lifetime expiries (XFRM_MSG_EXPIRE) from the real kernel', () => {
  let namespace: Awaited<ReturnType<typeof freshNamespace>> | undefined;

  beforeAll(async () => {
    await warmCrypto(vm);
    namespace = await freshNamespace(vm, 'expire');
  }, 300_000);
  afterAll(async () => {
    await namespace?.remove();
  });

  it('reports the soft and the hard expiry of an SA, without its algorithms, and the last dump holds that SA with its key', async () => {
    const run = await vm.exec({ argv: ['ip', 'netns', 'exec', namespace!.name, 'node', '--input-type=module', '-e', probeScript()] }, { timeoutMs: 240_000 });
    expect(run.exitCode, formatResult(run)).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
      events: { kind: string; hard?: boolean; spi?: number; destination?: string; hasAlgorithms?: boolean; addTime?: string; detail?: string | null }[];
      found: { spi: number; algorithm: string } | null;
    };
    console.log(`[vm] expiry events: ${JSON.stringify(result.events)}`);
    expect(result.events.filter((event) => event.kind !== 'state-expired'), 'nothing undecodable').toEqual([]);
    expect(result.events.map((event) => [event.hard, event.spi, event.destination])).toEqual([
      [false, SPI, '198.51.100.2'],
      [true, SPI, '198.51.100.2'],
    ]);
    expect(result.events.every((event) => event.hasAlgorithms === false && Number(event.addTime) > 0)).toBe(true);
    expect(result.found, 'the SA of the dump, by identity and add time').toEqual({ spi: SPI, algorithm: 'rfc4106(gcm(aes))' });
    const { stdout } = await vm.sh(`ip -n ${namespace!.name} xfrm state list spi ${SPI}`);
    expect(stdout.trim(), 'the kernel removed it at its hard lifetime').toBe('');
  }, 300_000);
});
