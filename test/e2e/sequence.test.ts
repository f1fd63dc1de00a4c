// Sequence continuity and expiry through the operator (issue 12 A), on the real control plane and
// the VM's kernel: examples/host-to-host (AES-GCM, rfc4106) applied with kubectl, then
// - a hand flush of node a's SAs (`ip xfrm state flush`): the agent restores them with the same
//   keys, the restored outbound SA's counter and its first ESP sequence number on the wire
//   (tcpdump on node b) are above the last one before the flush, the first ping after the repair
//   is answered, and node b counts no sequence error;
// - the same after the agent was SIGKILLed and restarted (its marks come from the ledger on
//   disk, not from memory) and the tables flushed then;
// - an SA with a short hard lifetime: the kernel removes it, the agents never add that key
//   again (`ip xfrm monitor` sees one add in all), and the resource reports Ready=False, reason
//   Expired, with an Event and the agent's metric.
// The CLI's side (apply after a flush resumes, a key past its hard lifetime is refused) is
// test/kernel/vm/sequence-continuity.test.ts, on both kernels of the matrix.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';
import { NAMESPACE, startCluster, type Cluster } from '../infra/cluster/cluster.js';
import { warmCrypto } from '../support/vm-cli.js';
import { agentEndpoint, espSequencesOnWire, metricSum, outboundSequence, resourceStates, timed, waitFor, xfrmStat } from './support.js';

const vm = vmFromInject();
const EXAMPLE = join(REPO_ROOT, 'examples/host-to-host');
const A = '198.51.100.1';
const B = '198.51.100.2';
const A_TO_B = 0x1000;
const SHORT_SPI = 0x3000;
const SHORT_LIFETIME_SECONDS = 20;
const SHORT = `apiVersion: v1
kind: Secret
metadata: {name: sequence-e2e-keys, namespace: ${NAMESPACE}}
stringData:
  short: "5f1e0c2b7a9d4e3f60718293a4b5c6d7e8f90112"
---
apiVersion: ipsec.xfrm.io/v1alpha1
kind: SecurityAssociation
metadata: {name: sequence-e2e-short}
spec:
  nodeSelector:
    matchExpressions: [{key: ipsec.xfrm.io/node, operator: In, values: [a, b]}]
  source: ${A}
  destination: ${B}
  protocol: esp
  spi: ${SHORT_SPI}
  reqid: 30
  aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: sequence-e2e-keys, key: short, encoding: hex}}
  lifetime: {hard: {addExpiresSeconds: ${SHORT_LIFETIME_SECONDS}}}
`;

let cluster: Cluster;
const node = (name: string) => cluster.topology.node(name);
const allReady = async () => {
  const states = await resourceStates(cluster);
  return states.length > 0 && states.every((state) => state.ready === 'True') ? states : undefined;
};
const ownedStateCount = async () => (await node('a').sh('ip xfrm state count')).stdout.trim();

/**
 * Pings through a→b, flushes node a's SAs by hand, and proves the repair continued the
 * sequence: kernel counter and wire above the last number before the flush, the first ping
 * after the repair answered, no sequence error at node b.
 */
async function flushAndProveContinuity(label: string): Promise<void> {
  const before = await espSequencesOnWire(node('b'), A_TO_B, () => node('a').trySh(`ping -c 3 -i 0.5 -W 5 ${B}`));
  expect(before.result.stdout, 'pings before the flush').toMatch(/3 packets transmitted, 3 (packets )?received/);
  const counterBefore = await outboundSequence(node('a'), A, B, A_TO_B);
  const lastOnWire = before.sequences.at(-1);
  expect(lastOnWire, 'tcpdump saw a→b before the flush').toBeDefined();
  expect(counterBefore, 'the kernel counter is the last number sent').toBeGreaterThanOrEqual(lastOnWire!);
  const seqErrors = await xfrmStat(node('b'), 'XfrmInStateSeqError');
  const owned = await ownedStateCount();

  const flushed = Date.now();
  await node('a').sh('ip xfrm state flush');
  // What the repair needs: a kernel event, one reconcile. Bounded by that, not by traffic hoping
  // for a replay window to catch up.
  const restoredAfter = await waitFor('node a SAs restored by the agent', async () => ((await ownedStateCount()) === owned ? Date.now() - flushed : undefined), 30_000, 100);
  const resumed = await outboundSequence(node('a'), A, B, A_TO_B);
  console.log(`[e2e] ${label}: restored ${restoredAfter} ms after the flush (seen from the test); a→b counter ${counterBefore} before, ${resumed} after (+${resumed - counterBefore})`);
  expect(resumed, 'the restored SA resumes above the last sequence number before the flush').toBeGreaterThan(counterBefore);

  const after = await espSequencesOnWire(node('b'), A_TO_B, () => node('a').trySh(`ping -c 1 -W 5 ${B}`));
  expect(after.result.stdout, 'the first ping after the repair is answered').toMatch(/1 packets transmitted, 1 (packets )?received/);
  console.log(`[e2e] ${label}: ESP seq of a→b on the wire: last before ${lastOnWire}, first after ${after.sequences[0]}`);
  expect(after.sequences.length, 'tcpdump saw the restored SA on the wire').toBeGreaterThanOrEqual(1);
  expect(after.sequences[0]!, 'the first ESP sequence number after the repair').toBeGreaterThan(counterBefore);
  expect(await xfrmStat(node('b'), 'XfrmInStateSeqError'), 'node b counted no sequence error').toBe(seqErrors);
}

describe('sequence continuity and expiry through the operator', () => {
  beforeAll(async () => {
    await warmCrypto(vm);
    cluster = await startCluster({ vm, kubeconfigPath: injectedKubeconfigPath(), nodes: ['a', 'b'], log: (line) => console.log(`[e2e] ${line}`) });
    await cluster.kubectl(['apply', '-f', EXAMPLE]);
    await timed('examples Ready', () => waitFor('every resource Ready', allReady, 240_000, 1000));
    // Neighbours resolved and both directions carried once before anything is measured.
    await node('a').sh(`ping -c 2 -W 5 ${B}`);
  });
  afterAll(async () => {
    if (!cluster) return;
    for (const name of ['a', 'b']) console.log(`[e2e] agent ${name} log tail:\n${(await cluster.agentLogs(name).catch(() => '')).slice(-3000)}`);
    console.log(`[e2e] controller log tail:\n${cluster.controllerLogs().slice(-3000)}`);
    await cluster.kubectl(['delete', '-f', '-', '--ignore-not-found', '--wait=false'], SHORT).catch(() => undefined);
    await cluster.kubectl(['delete', '-f', EXAMPLE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await waitFor('every object gone', async () => ((await resourceStates(cluster)).length === 0 ? true : undefined), 180_000, 1000).catch((error) => console.log(`[e2e] ${String(error)}`));
    await cluster.stop();
  });

  it('repairs a hand flush with the same key past its last sequence number: the first ping is answered', async () => {
    await flushAndProveContinuity('hand flush');
  });

  it('does the same after the agent was SIGKILLed and restarted: the mark comes from its ledger, not its memory', async () => {
    await node('a').sh(`ping -c 5 -i 0.3 -W 5 ${B}`);
    await cluster.stopAgent('a', 'SIGKILL');
    await cluster.startAgent('a');
    const port = cluster.agents.get('a')!.metricsPort;
    // Ready means the caches synced and the kernel was reconciled once by the new process.
    await timed('restarted agent ready', () => waitFor('agent a ready again', async () => (await agentEndpoint(vm, port, '/readyz')).code === 200, 180_000, 1000));
    await flushAndProveContinuity('SIGKILL, restart, hand flush');
  });

  it('never adds a key again after its hard lifetime: the resource reports Expired, with an Event and the metric', async () => {
    const watch = `/tmp/e2e-xfrm-monitor-${process.pid}`;
    await node('a').sh(`ip xfrm monitor SA expire > ${watch}.txt 2>&1 < /dev/null & echo $! > ${watch}.pid`);
    await cluster.kubectl(['apply', '-f', '-'], SHORT);
    await waitFor('the short-lived SA in node a kernel', async () => (await node('a').trySh(`ip xfrm state get src ${A} dst ${B} proto esp spi ${SHORT_SPI}`)).exitCode === 0, 120_000, 250);
    await timed('hard lifetime reached', () =>
      waitFor('the kernel removed the SA at its hard lifetime', async () => (await node('a').trySh(`ip xfrm state get src ${A} dst ${B} proto esp spi ${SHORT_SPI}`)).exitCode !== 0, 120_000, 250),
    );
    const state = await timed('Expired reported', () =>
      waitFor('SecurityAssociation/sequence-e2e-short Ready=False reason Expired', async () => {
        const found = (await resourceStates(cluster)).find((item) => item.name === 'sequence-e2e-short');
        return found?.ready === 'False' && found.reason === 'Expired' ? found : undefined;
      }, 120_000, 1000),
    );
    console.log(`[e2e] sequence-e2e-short: ${state.reason}: ${state.message}`);
    const events = await waitFor('an Expired Event on the resource', async () => {
      const list = JSON.parse(await cluster.kubectl(['get', 'events', '-A', '--field-selector', 'involvedObject.name=sequence-e2e-short,reason=Expired', '-o', 'json'])) as {
        items: { source?: { component?: string }; reportingComponent?: string; message: string; involvedObject: { kind: string } }[];
      };
      return list.items.length > 0 ? list.items : undefined;
    }, 60_000, 1000);
    console.log(`[e2e] Expired Events: ${events.map((event) => `${event.source?.component ?? event.reportingComponent}: ${event.message}`).join(' | ')}`);
    expect(events.every((event) => event.involvedObject.kind === 'SecurityAssociation')).toBe(true);
    expect(events.some((event) => /node a/.test(event.message))).toBe(true);
    const port = cluster.agents.get('a')!.metricsPort;
    const metrics = (await agentEndpoint(vm, port, '/metrics')).body;
    expect(metricSum(metrics, 'ipsec_operator_rekey_required', { reason: 'Expired' }), 'agent a: rekey_required{reason="Expired"}').toBeGreaterThanOrEqual(1);
    expect(metricSum(metrics, 'ipsec_operator_sa_expire_events_total', { kind: 'hard' }), 'agent a: sa_expire_events_total{kind="hard"}').toBeGreaterThanOrEqual(1);

    // Two more passes of agent a (its resync timer runs them): still not in either kernel.
    const passes = (text: string) => metricSum(text, 'ipsec_operator_reconcile_total', { controller: 'agent' });
    const passesBefore = passes(metrics);
    await waitFor('two more reconciles of agent a', async () => passes((await agentEndpoint(vm, port, '/metrics')).body) >= passesBefore + 2, 120_000, 1000);
    for (const name of ['a', 'b']) expect((await node(name).sh(`ip xfrm state list spi ${SHORT_SPI}`)).stdout.trim(), `node ${name}: the expired key is not in the kernel`).toBe('');
    await node('a').sh(`kill $(cat ${watch}.pid); sleep 0.5`);
    const monitor = (await node('a').sh(`cat ${watch}.txt; rm -f ${watch}.*`)).stdout;
    // `ip xfrm monitor` prints an added SA as its `src ... dst ...` line with no prefix
    // (deletions and expiries carry one), then its `proto esp spi ...` line. It prints keys
    // (iproute2 6.1 ignores `nokeys` here): their lines are left out of the test log.
    const adds = [...monitor.matchAll(/^src \S+ dst \S+\n\s+proto esp spi (0x[0-9a-f]+)/gm)].filter((match) => Number(match[1]) === SHORT_SPI);
    const withoutKeys = monitor.split('\n').filter((line) => !/^\s*(aead|enc|auth|auth-trunc|comp)\s/.test(line)).join('\n');
    console.log(`[e2e] ip xfrm monitor on node a during the lifetime test (key lines left out):\n${withoutKeys.slice(-3000)}`);
    expect(adds.length, 'node a: the short-lived key was added once, never again').toBe(1);
  });
});
