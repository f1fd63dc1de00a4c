// The kernel's sequence reports (XFRMNLGRP_AEVENTS) against the real kernel, on both kernels of
// the matrix (the vm and vm-6.12 projects run this file). Node a's AES-GCM SAs come from
// `ipsec-operator apply` (a legacy 32-bit counter on one pair, ESN on the other); then the
// compiled product itself, inside a's namespace, proves:
// - every NEWSA carried XFRMA_REPLAY_THRESH: GETAE reads the threshold back as
//   SEQUENCE_REPORT_PACKETS;
// - a NEWAE sets it (8 here, so a few datagrams cross it) and GETAE reads the new value;
// - traffic makes the kernel send NEWAE reports (threshold crossings), and the agent's sequence
//   watch turns them into the key's mark in the ledger on disk, with no reconcile in between:
//   the mark is one of the reported counters, above 0, not above the kernel's counter;
// - the watch sets the threshold of an owned SA that has another one back to
//   SEQUENCE_REPORT_PACKETS (SAs created before NEWSA carried it).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../../infra/vm/inject.js';
import { createNodes, type Topology, type TopologyNode } from '../../infra/vm/topology.js';
import { cli, formatResult, REPO, stateDir, warmCrypto } from '../../support/vm-cli.js';

const vm = vmFromInject();
const hex = (bytes: number, seed: number) => Array.from({ length: bytes }, (_, i) => ((seed * 41 + i * 11) & 0xff).toString(16).padStart(2, '0')).join('');
const A = '198.51.100.1';
const B = '198.51.100.2';
const LEGACY_SPI = 0x6100;
const ESN_SPI = 0x6200;
const DATAGRAMS = 40;

const doc = (kind: string, name: string, spec: string) => `apiVersion: ipsec.xfrm.io/v1alpha1\nkind: ${kind}\nmetadata: {name: ${name}}\nspec:\n${spec.trim().replace(/^/gm, '  ')}\n`;

function manifests(local: string, peer: string): string {
  const documents = [`apiVersion: v1\nkind: Secret\nmetadata: {name: ae-keys}\nstringData:\n  legacy: "${hex(20, 1)}"\n  esn: "${hex(20, 2)}"\n`];
  for (const [name, spi, reqid, port, extra] of [
    ['legacy', LEGACY_SPI, 61, 7101, 'replayWindow: 32'],
    ['esn', ESN_SPI, 62, 7102, 'esn: true\nreplayWindow: 128'],
  ] as const) {
    const out = local === A ? spi : spi + 1;
    const back = local === A ? spi + 1 : spi;
    const sa = (from: string, to: string, s: number) =>
      doc('SecurityAssociation', `${name}-${s.toString(16)}`, `source: ${from}\ndestination: ${to}\nprotocol: esp\nspi: ${s}\nreqid: ${reqid}\naead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: ae-keys, key: ${name}, encoding: hex}}\n${extra}`);
    const selector = (source: string, destination: string, ports: string) => `selector: {source: '${source}/32', destination: '${destination}/32', protocol: udp, ${ports}}`;
    const policy = (suffix: string, direction: string, source: string, destination: string, ports: string) =>
      doc('IpsecPolicy', `${name}-${suffix}`, `direction: ${direction}\n${selector(source, destination, ports)}\ntemplates: [{protocol: esp, reqid: ${reqid}}]`);
    documents.push(
      sa(local, peer, out),
      sa(peer, local, back),
      policy('out', 'out', local, peer, `destinationPort: ${port}`),
      policy('in', 'in', peer, local, `destinationPort: ${port}`),
      policy('out-reply', 'out', local, peer, `sourcePort: ${port}`),
      policy('in-reply', 'in', peer, local, `sourcePort: ${port}`),
    );
  }
  return documents.join('---\n');
}

/** The guest program: the product's own modules, run inside node a's namespace. */
function watchScript(netns: string): string {
  const dist = (path: string) => JSON.stringify(join(REPO, 'dist', path));
  return `
const { openKernelTables } = await import(${dist('engine/kernel.js')});
const { Ledger, ledgerPath } = await import(${dist('ownership/ledger.js')});
const { XfrmMonitor } = await import(${dist('xfrm/monitor.js')});
const { SequenceWatch } = await import(${dist('agent/sequence-watch.js')});
const { SEQUENCE_REPORT_PACKETS } = await import(${dist('xfrm/messages.js')});
const dgram = await import('node:dgram');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const tables = await openKernelTables(${JSON.stringify(netns)});
const ledger = await Ledger.open(ledgerPath(${JSON.stringify(stateDir(netns))}, ${JSON.stringify(netns)}), { scope: tables.scope });
const spis = { legacy: ${LEGACY_SPI}, esn: ${ESN_SPI} };
const ports = { legacy: 7101, esn: 7102 };
const { states } = await tables.dump();
const outbound = Object.fromEntries(Object.entries(spis).map(([name, spi]) => [name, states.find((sa) => sa.id.spi === spi && sa.id.destination === '${B}')]));
const result = { thresholdAtCreate: {}, thresholdSet: {}, thresholdRestored: {}, reports: {}, marks: {}, kernel: {}, answered: {} };
for (const [name, sa] of Object.entries(outbound)) {
  result.thresholdAtCreate[name] = (await tables.readSequence(sa.id))?.replayThreshold ?? null;
  await tables.setReplayThreshold(sa.id, 8);
  result.thresholdSet[name] = (await tables.readSequence(sa.id))?.replayThreshold ?? null;
  result.reports[name] = [];
}
const failures = [];
const watch = new SequenceWatch({ store: () => ledger, threshold: SEQUENCE_REPORT_PACKETS, failed: (what, error) => failures.push(what + ': ' + error.message) });
watch.track(states);
const monitor = XfrmMonitor.open({ groups: ['aevents'] });
const reading = (async () => {
  for await (const event of monitor) {
    if (event.kind !== 'sequence-reported') continue;
    const name = Object.keys(spis).find((key) => spis[key] === event.report.id.spi && event.report.id.destination === '${B}');
    if (name) result.reports[name].push({ cause: event.report.cause, oseq: event.report.replayState.outboundSequence, hi: event.report.replayState.outboundSequenceHigh, esnFormat: event.report.esnFormat });
    watch.observe(event.report);
  }
})();
// Numbered datagrams, each answered by b's echo server before the next.
for (const [name, port] of Object.entries(ports)) {
  const socket = dgram.createSocket('udp4');
  await new Promise((resolve) => socket.bind(port, '${A}', resolve));
  let answered = 0;
  for (let i = 0; i < ${DATAGRAMS}; i += 1) {
    const reply = new Promise((resolve) => { const timer = setTimeout(() => resolve(false), 5000); socket.once('message', () => { clearTimeout(timer); resolve(true); }); });
    socket.send('n' + i, port, '${B}');
    if (await reply) answered += 1;
  }
  socket.close();
  result.answered[name] = answered;
}
// The reports and the marks follow the traffic: wait for them (a generous bound, not a measure).
const markOf = (sa) => ledger.usage(ledger.usageKey(sa))?.mark ?? 0n;
for (let i = 0; i < 300 && !Object.values(outbound).every((sa) => markOf(sa) > 0n); i += 1) await sleep(100);
await watch.flush();
for (const [name, sa] of Object.entries(outbound)) {
  result.marks[name] = markOf(sa).toString();
  const report = await tables.readSequence(sa.id);
  result.kernel[name] = ((BigInt(report.replayState.outboundSequenceHigh) << 32n) | BigInt(report.replayState.outboundSequence)).toString();
}
// An owned SA with another threshold (8 now) is set back by the watch once it has the kernel.
const upgrading = new SequenceWatch({ store: () => ledger, kernel: () => tables, threshold: SEQUENCE_REPORT_PACKETS });
upgrading.track(states);
for (const [name, sa] of Object.entries(outbound)) {
  let threshold = null;
  for (let i = 0; i < 200; i += 1) {
    threshold = (await tables.readSequence(sa.id))?.replayThreshold ?? null;
    if (threshold === SEQUENCE_REPORT_PACKETS) break;
    await sleep(100);
  }
  result.thresholdRestored[name] = threshold;
}
result.failures = failures;
result.expected = SEQUENCE_REPORT_PACKETS;
monitor.close();
await reading;
await ledger.close();
tables.close();
console.log(JSON.stringify(result));
`;
}

describe('sequence reports (AEVENTS) become sequence marks', () => {
  let topology: Topology;
  let a: TopologyNode;
  let b: TopologyNode;

  beforeAll(async () => {
    await warmCrypto(vm);
    topology = await createNodes(vm, ['a', 'b'], { ipv4: true });
    a = topology.node('a');
    b = topology.node('b');
    // The first rfc4106(gcm(aes)) SA instantiates the AEAD (slow self-tests under TCG): once, by hand.
    await a.sh(`ip xfrm state add src 10.9.9.1 dst 10.9.9.2 proto esp spi 9 mode transport aead 'rfc4106(gcm(aes))' 0x${hex(20, 9)} 128 && ip xfrm state flush`, { timeoutMs: 180_000 });
    for (const [node, local, peer] of [[a, A, B], [b, B, A]] as const) {
      const applied = await cli(vm, ['apply', '-f', '-', '--netns', node.netns, '--state-dir', stateDir(node.netns)], manifests(local, peer));
      expect(applied.exitCode, formatResult(applied)).toBe(0);
    }
    await b.sh(
      `python3 -c "import socket,threading\ndef serve(p):\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('${B}',p))\n  while True:\n    d,a=s.recvfrom(100); s.sendto(d,a)\nfor p in (7101,7102): threading.Thread(target=serve,args=(p,),daemon=True).start()\nimport time\nwhile True: time.sleep(60)" > /dev/null 2>&1 < /dev/null & echo $! > /tmp/ae-echo.pid`,
    );
    const bound = await b.trySh(`for i in $(seq 300); do [ "$(ss -Hlun | grep -c ':710[12] ')" = 2 ] && { echo bound; exit 0; }; sleep 0.2; done; echo not-bound`, { timeoutMs: 120_000 });
    expect(bound.stdout.trim()).toBe('bound');
  }, 300_000);
  afterAll(async () => {
    await b?.trySh('kill $(cat /tmp/ae-echo.pid)');
    await topology?.cleanup();
  });

  it('NEWSA sets the threshold, NEWAE changes it, traffic brings reports, and the ledger mark follows them', async () => {
    const run = await vm.exec({ argv: ['ip', 'netns', 'exec', a.netns, 'node', '--input-type=module', '-e', watchScript(a.netns)] }, { timeoutMs: 240_000 });
    expect(run.exitCode, formatResult(run)).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
      thresholdAtCreate: Record<string, number | null>;
      thresholdSet: Record<string, number | null>;
      thresholdRestored: Record<string, number | null>;
      reports: Record<string, { cause: string; oseq: number; hi: number; esnFormat: boolean }[]>;
      marks: Record<string, string>;
      kernel: Record<string, string>;
      answered: Record<string, number>;
      failures: string[];
      expected: number;
    };
    expect(result.failures).toEqual([]);
    for (const name of ['legacy', 'esn']) {
      expect(result.thresholdAtCreate[name], `${name}: XFRMA_REPLAY_THRESH of the NEWSA`).toBe(result.expected);
      expect(result.thresholdSet[name], `${name}: the NEWAE's threshold`).toBe(8);
      expect(result.answered[name], `${name}: datagrams answered`).toBe(DATAGRAMS);
      const reports = result.reports[name]!;
      expect(reports.some((report) => report.cause === 'threshold'), `${name}: a threshold report among ${JSON.stringify(reports)}`).toBe(true);
      expect(reports.every((report) => report.esnFormat === (name === 'esn')), `${name}: the replay attribute of its format`).toBe(true);
      const mark = BigInt(result.marks[name]!);
      const kernel = BigInt(result.kernel[name]!);
      expect(kernel, `${name}: the kernel's counter`).toBeGreaterThanOrEqual(BigInt(DATAGRAMS));
      expect(mark, `${name}: the ledger's mark`).toBeGreaterThan(0n);
      expect(mark).toBeLessThanOrEqual(kernel);
      expect(reports.map((report) => BigInt(report.oseq) | (BigInt(report.hi) << 32n)), `${name}: the mark is a reported counter`).toContain(mark);
      expect(result.thresholdRestored[name], `${name}: the watch set the threshold back`).toBe(result.expected);
    }
  }, 300_000);
});
