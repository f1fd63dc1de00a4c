// The operator end to end, on the real control plane and the VM's kernel: examples/host-to-host
// applied with kubectl → Ready → ESP between the nodes → edits converge → a hand flush is
// repaired and reported (the restored SA continues its sequence: the first pings after the
// repair are answered) → an agent killed and restarted during a ping loses no packet →
// deleting the resources removes their entries from every node, also from a node whose agent
// was down at the time → foreign entries untouched from start to end.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';
import { startCluster, type Cluster } from '../infra/cluster/cluster.js';
import { warmCrypto } from '../support/vm-cli.js';
import { outboundSequence, resourceStates, timed, waitFor, xfrmStat } from './support.js';

const vm = vmFromInject();
const EXAMPLE = join(REPO_ROOT, 'examples/host-to-host');
const A = '198.51.100.1';
const B = '198.51.100.2';
const FOREIGN = [
  'ip xfrm state add src 203.0.113.1 dst 203.0.113.2 proto esp spi 0xf00d reqid 77 mode transport aead "rfc4106(gcm(aes))" 0x0102030405060708090a0b0c0d0e0f1011121314 128',
  'ip xfrm policy add src 203.0.113.0/24 dst 192.0.2.0/24 dir out priority 9 tmpl proto esp reqid 77',
];
const FOREIGN_VIEW = 'ip xfrm state get src 203.0.113.1 dst 203.0.113.2 proto esp spi 0xf00d; ip xfrm policy get src 203.0.113.0/24 dst 192.0.2.0/24 dir out';

let cluster: Cluster;
const foreignBefore = new Map<string, string>();
const node = (name: string) => cluster.topology.node(name);
const packets = async (name: string, src: string, dst: string, spi: string) => {
  const { stdout } = await node(name).sh(`ip -s xfrm state get src ${src} dst ${dst} proto esp spi ${spi}`);
  return Number(/(\d+)\(bytes\), (\d+)\(packets\)/.exec(stdout)?.[2] ?? NaN);
};
const allReady = async () => {
  const states = await resourceStates(cluster);
  return states.length > 0 && states.every((state) => state.ready === 'True') ? states : undefined;
};

describe('ipsec-operator end to end', () => {
  beforeAll(async () => {
    await warmCrypto(vm);
    cluster = await startCluster({ vm, kubeconfigPath: injectedKubeconfigPath(), nodes: ['a', 'b'], log: (line) => console.log(`[e2e] ${line}`) });
    for (const name of ['a', 'b']) {
      await node(name).sh(FOREIGN.join('\n'));
      foreignBefore.set(name, (await node(name).sh(FOREIGN_VIEW)).stdout);
    }
  });
  afterAll(async () => {
    if (!cluster) return;
    for (const name of ['a', 'b']) console.log(`[e2e] agent ${name} log tail:\n${(await cluster.agentLogs(name).catch(() => '')).slice(-3000)}`);
    console.log(`[e2e] controller log tail:\n${cluster.controllerLogs().slice(-3000)}`);
    await cluster.kubectl(['delete', '-f', EXAMPLE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await cluster.stop();
  });

  it('applies examples/host-to-host with kubectl: every resource becomes Ready', async () => {
    await cluster.kubectl(['apply', '-f', EXAMPLE]);
    const states = await timed('examples Ready', () => waitFor('every resource Ready', allReady, 240_000, 1000));
    expect(states.map((state) => `${state.kind}/${state.name}`).sort()).toEqual(
      ['IpsecPolicy/a-in', 'IpsecPolicy/a-out', 'IpsecPolicy/a-out-block', 'IpsecPolicy/b-in', 'IpsecPolicy/b-out', 'IpsecPolicy/b-out-block', 'SecurityAssociation/a-to-b', 'SecurityAssociation/b-to-a'].sort(),
    );
    expect(states.every((state) => state.reason === 'Applied' && state.finalizers.includes('ipsec.xfrm.io/kernel-cleanup'))).toBe(true);
    const table = await cluster.kubectl(['get', 'xsa', '-o', 'wide']);
    console.log(`[e2e] kubectl get xsa -o wide:\n${table}`);
    expect(table).toMatch(/a-to-b\s+esp\s+4096\s+198\.51\.100\.1\s+198\.51\.100\.2\s+transport\s+2\s+True\s+Applied/);
  });

  it('carries ping between the nodes as ESP: counters move and the wire shows ESP', async () => {
    const before = await packets('a', A, B, '0x1000');
    const ping = await node('a').sh(`ping -c 3 -W 5 ${B}`);
    expect(ping.stdout).toMatch(/3 packets transmitted, 3 (packets )?received/);
    expect(await packets('a', A, B, '0x1000')).toBeGreaterThanOrEqual(before + 3);
    expect(await packets('b', B, A, '0x1001')).toBeGreaterThanOrEqual(3);
    const capture = await node('b').trySh(
      `tcpdump -l -n -i eth0 -c 2 'host ${A} and (esp or icmp)' > /tmp/e2e-capture.txt 2>/dev/null & sleep 2; ip netns exec ${node('a').netns} ping -c 1 -W 5 ${B} >/dev/null; wait; cat /tmp/e2e-capture.txt`,
      { timeoutMs: 60_000 },
    );
    expect(capture.stdout).toMatch(/ESP\(spi=0x00001000/);
    expect(capture.stdout).not.toMatch(/ICMP echo request/);
  });

  it('converges edits: policy priority (UPDPOLICY), SA lifetime (UPDSA, counters kept)', async () => {
    const bytesBefore = await packets('a', A, B, '0x1000');
    await cluster.kubectl(['patch', 'ipsecpolicy', 'a-out', '--type=merge', '-p', '{"spec":{"priority":50}}']);
    await cluster.kubectl(['patch', 'securityassociation', 'a-to-b', '--type=merge', '-p', '{"spec":{"lifetime":{"hard":{"addExpiresSeconds":86400}}}}']);
    await timed('edits converged', () =>
      waitFor('priority 50 and the new lifetime in the kernel of node a', async () => {
        const policy = await node('a').sh(`ip xfrm policy get src ${A}/32 dst ${B}/32 dir out`);
        const state = await node('a').sh(`ip -s xfrm state get src ${A} dst ${B} proto esp spi 0x1000`);
        return policy.stdout.includes('priority 50') && /hard 86400\(sec\)/.test(state.stdout);
      }),
    );
    // Updated in place: the SA kept its counters (a replacement would have reset them).
    expect(await packets('a', A, B, '0x1000')).toBeGreaterThanOrEqual(bytesBefore);
    await waitFor('every resource Ready after the edits', allReady, 120_000, 1000);
  });

  it('rekeys make-before-break: a new SA with a new SPI replaces the old one', async () => {
    const secret = JSON.parse(await cluster.kubectl(['get', 'secret', '-n', 'ipsec-operator', 'host-to-host-keys', '-o', 'json'])) as { data: Record<string, string> };
    const keyName = Object.keys(secret.data)[0]!;
    const spec = JSON.parse(await cluster.kubectl(['get', 'securityassociation', 'a-to-b', '-o', 'json'])) as { spec: Record<string, unknown> };
    const next = { apiVersion: 'ipsec.xfrm.io/v1alpha1', kind: 'SecurityAssociation', metadata: { name: 'a-to-b-2' }, spec: { ...spec.spec, spi: 0x2000 } };
    expect(keyName).toBeTruthy();
    await cluster.kubectl(['apply', '-f', '-'], JSON.stringify(next));
    await waitFor('the new SA on both nodes', async () => {
      const [onA, onB] = await Promise.all([node('a').trySh(`ip xfrm state get src ${A} dst ${B} proto esp spi 0x2000`), node('b').trySh(`ip xfrm state get src ${A} dst ${B} proto esp spi 0x2000`)]);
      return onA.exitCode === 0 && onB.exitCode === 0;
    });
    await cluster.kubectl(['delete', 'securityassociation', 'a-to-b', '--wait=true', '--timeout=120s']);
    await waitFor('the old SA gone from both nodes', async () => {
      const [onA, onB] = await Promise.all([node('a').trySh(`ip xfrm state get src ${A} dst ${B} proto esp spi 0x1000`), node('b').trySh(`ip xfrm state get src ${A} dst ${B} proto esp spi 0x1000`)]);
      return onA.exitCode !== 0 && onB.exitCode !== 0;
    });
    const ping = await node('a').sh(`ping -c 3 -W 5 ${B}`);
    expect(ping.stdout).toMatch(/3 packets transmitted, 3 (packets )?received/);
    expect(await packets('a', A, B, '0x2000')).toBeGreaterThanOrEqual(3);
  });

  it('repairs a hand flush of both tables and reports the drift', async () => {
    const owned = (await node('a').sh('ip xfrm state count; ip xfrm policy count')).stdout;
    await node('a').sh(`ping -c 2 -W 5 ${B}`);
    const counterBefore = await outboundSequence(node('a'), A, B, 0x2000); // a-to-b-2, since the rekey
    const seqErrors = await xfrmStat(node('b'), 'XfrmInStateSeqError');
    const started = Date.now();
    await node('a').sh('ip xfrm state flush; ip xfrm policy flush');
    // Our own entries come back; the foreign ones are their owner's to restore, as here.
    await node('a').sh(FOREIGN.join('\n'));
    const restoredAfter = await waitFor(
      'the owned entries back on node a',
      async () => ((await node('a').sh('ip xfrm state count; ip xfrm policy count')).stdout === owned ? Date.now() - started : undefined),
      30_000,
      50,
    );
    console.log(`[e2e] hand flush repaired ${restoredAfter} ms after the flush (seen from the test, through the VM's control channel)`);
    await waitFor('the repair in the agent log', async () => {
      const repairs = [...(await cluster.agentLogs('a')).matchAll(/"msg":"repaired drift[^\n]*?"elapsedMs":(\d+)/g)].map((match) => Number(match[1]));
      if (repairs.length === 0) return undefined;
      console.log(`[e2e] agent a: kernel event to repair applied: ${repairs.join(', ')} ms`);
      return true;
    }, 30_000, 500);
    const state = JSON.parse(await cluster.kubectl(['get', 'ipsecnodestate', 'a', '-o', 'json'])) as { status: { driftRepairs: number } };
    await waitFor('the repair reported in IpsecNodeState/a', async () => {
      const current = JSON.parse(await cluster.kubectl(['get', 'ipsecnodestate', 'a', '-o', 'json'])) as { status: { driftRepairs: number } };
      return current.status.driftRepairs > 0;
    });
    expect(state.status).toBeDefined();
    // Traffic flows again at once: the restored outbound SA (same key) resumes past its last
    // sequence number, so node b's replay window takes its first packet and no nonce repeats.
    // A counter started again from 0 fails here (the window would drop the first packets).
    const resumed = await outboundSequence(node('a'), A, B, 0x2000);
    console.log(`[e2e] a→b counter ${counterBefore} before the flush, ${resumed} after the repair`);
    expect(resumed, 'the restored SA resumes above its last sequence number').toBeGreaterThan(counterBefore);
    const ping = await node('a').trySh(`ping -c 2 -W 5 ${B}`);
    if (!/2 packets transmitted, 2 (packets )?received/.test(ping.stdout)) {
      for (const name of ['a', 'b']) {
        const diagnostics = await node(name).trySh('grep -v " 0$" /proc/net/xfrm_stat; ip xfrm state | grep -E "spi|anti-replay"');
        console.log(`[e2e] node ${name} after a failed ping:\n${diagnostics.stdout}`);
      }
    }
    expect(ping.stdout, 'the first pings after the repair are answered').toMatch(/2 packets transmitted, 2 (packets )?received/);
    expect(await xfrmStat(node('b'), 'XfrmInStateSeqError'), 'node b counted no sequence error').toBe(seqErrors);
  });

  it('loses no packet of a continuous ping while the agent is killed (SIGKILL) and restarted', async () => {
    // Both directions work before the kill (any neighbour or route setup is done).
    await node('a').sh(`ping -c 2 -W 5 ${B}`);
    // The tables without the counters that traffic moves.
    const table = async () => (await node('a').sh('ip xfrm state; ip xfrm policy')).stdout.replace(/anti-replay context:.*$/gm, '');
    const tableBefore = await table();
    const { id } = await vm.spawn({ argv: ['ip', 'netns', 'exec', node('a').netns, 'ping', '-c', '40', '-i', '0.25', '-W', '2', B] });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await cluster.stopAgent('a', 'SIGKILL');
    await cluster.startAgent('a');
    const ping = await vm.wait(id, 60_000);
    expect(ping.stdout).toMatch(/40 packets transmitted, 40 (packets )?received/);
    // The restarted agent found nothing to change.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await table()).toBe(tableBefore);
  });

  it('deletes resources: entries leave every node, also one whose agent was down, before the objects go', async () => {
    await cluster.stopAgent('b');
    await cluster.kubectl(['delete', '-f', EXAMPLE, '--ignore-not-found', '--wait=false']);
    await cluster.kubectl(['delete', 'securityassociation', 'a-to-b-2', '--wait=false']);
    await waitFor('node a without owned entries', async () => (await node('a').sh('ip xfrm state count')).stdout.includes('SAD count 1'));
    // Node b still holds its entries: the finalizer keeps the objects.
    const held = await waitFor('a held resource reporting what its deletion waits for', async () => {
      const states = await resourceStates(cluster);
      return states.some((state) => state.reason === 'Deleting' && /waiting for agents to remove/.test(state.message ?? '')) ? states : undefined;
    });
    expect(held.length).toBeGreaterThan(0);
    expect((await node('b').sh('ip xfrm state count')).stdout).not.toContain('SAD count 1');
    await cluster.startAgent('b');
    await timed('objects released after agent b returned', () => waitFor('every object gone', async () => ((await resourceStates(cluster)).length === 0 ? true : undefined), 180_000, 1000));
    for (const name of ['a', 'b']) {
      const { stdout } = await node(name).sh('ip xfrm state count; ip xfrm policy count');
      expect(stdout).toContain('SAD count 1');
      expect(stdout).toMatch(/SPD IN\s+0 OUT\s+1 FWD\s+0/);
    }
  });

  it('never touched the foreign entries', async () => {
    for (const name of ['a', 'b']) expect((await node(name).sh(FOREIGN_VIEW)).stdout).toBe(foreignBefore.get(name));
  });
});
