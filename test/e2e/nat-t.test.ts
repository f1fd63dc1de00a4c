// examples/nat-t end to end: applied with kubectl, the agents alone make ESP in UDP work — each
// holds the UDP_ENCAP socket on its own address and adds the carrier exemption — and report
// the sockets in IpsecNodeState. A restarted agent holds its socket again; a port another
// process holds is reported (HeldElsewhere), left to it, and taken once it is free.
// (The same code through a real NAT: test/kernel/vm/nat-traversal.test.ts.)
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';
import { startCluster, type Cluster } from '../infra/cluster/cluster.js';
import { warmCrypto } from '../support/vm-cli.js';
import { resourceStates, timed, waitFor } from './support.js';

const vm = vmFromInject();
const EXAMPLE = join(REPO_ROOT, 'examples/nat-t');
const A = '192.0.2.41';
const B = '192.0.2.42';

interface SocketReport {
  address: string;
  port: number;
  encapsulation: string;
  state: string;
  message?: string;
  resources?: string[];
}

let cluster: Cluster;
const node = (name: string) => cluster.topology.node(name);
const sockets = async (name: string): Promise<SocketReport[]> => {
  const state = JSON.parse(await cluster.kubectl(['get', 'xnode', name, '-o', 'json'])) as { status?: { encapsulationSockets?: SocketReport[] } };
  return state.status?.encapsulationSockets ?? [];
};
const socketState = (name: string, address: string) => sockets(name).then((reports) => reports.find((report) => report.address === address && report.port === 4500)?.state);
const port4500 = async (name: string) => (await node(name).sh('ss -Hulpn')).stdout.split('\n').filter((line) => /:4500\s/.test(line));
const packets = async (name: string, src: string, dst: string, spi: string) => {
  const { stdout } = await node(name).sh(`ip -s xfrm state get src ${src} dst ${dst} proto esp spi ${spi}`);
  return Number(/(\d+)\(bytes\), (\d+)\(packets\)/.exec(stdout)?.[2] ?? NaN);
};
const ping = async (from: string, to: string) => Number(/(\d+) (packets )?received/.exec((await node(from).trySh(`ping -c 3 -W 5 ${to}`, { timeoutMs: 60_000 })).stdout)?.[1] ?? 0);

describe('examples/nat-t with the agents', () => {
  beforeAll(async () => {
    await warmCrypto(vm);
    cluster = await startCluster({ vm, kubeconfigPath: injectedKubeconfigPath(), nodes: ['a', 'b'], resyncSeconds: 5, log: (line) => console.log(`[e2e] ${line}`) });
    await node('a').sh(`ip addr add ${A}/24 dev eth0`);
    await node('b').sh(`ip addr add ${B}/24 dev eth0`);
  });
  afterAll(async () => {
    if (!cluster) return;
    for (const name of ['a', 'b']) console.log(`[e2e] agent ${name} log tail:\n${(await cluster.agentLogs(name).catch(() => '')).slice(-3000)}`);
    await vm.trySh('pkill -f nat-t-e2e-holder');
    await cluster.kubectl(['delete', '-f', EXAMPLE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await cluster.stop();
  });

  it('becomes Ready; each agent holds its socket, reports it, and exempts the carrier datagrams', async () => {
    await cluster.kubectl(['apply', '-f', EXAMPLE]);
    await timed('nat-t Ready', () =>
      waitFor('every nat-t resource Ready', async () => {
        const states = await resourceStates(cluster);
        return states.length === 6 && states.every((state) => state.ready === 'True') ? states : undefined;
      }, 300_000, 1000),
    );
    for (const [name, local, peer, receives, sends] of [['a', A, B, 'natt-b-to-a', 'natt-a-to-b'], ['b', B, A, 'natt-a-to-b', 'natt-b-to-a']] as const) {
      const reports = await waitFor(`xnode ${name} reports its socket`, async () => {
        const all = await sockets(name);
        return all.some((report) => report.state === 'Held') ? all : undefined;
      }, 120_000, 1000);
      expect(reports).toHaveLength(2);
      expect(reports).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ address: local, port: 4500, encapsulation: 'espinudp', state: 'Held', resources: [receives] }),
          expect.objectContaining({ address: peer, port: 4500, encapsulation: 'espinudp', state: 'NotLocal', resources: [sends] }),
        ]),
      );
      const held = await port4500(name);
      expect(held, held.join('\n')).toHaveLength(1);
      expect(held[0]).toContain(`${local}:4500`);
      expect(held[0]).toContain('users:(("node"');
      const exemption = await node(name).sh(`ip xfrm policy get src ${peer}/32 dst ${local}/32 proto udp dport 4500 dir in`);
      expect(exemption.stdout).toContain('priority 1');
    }
  });

  it('carries ping both ways in UDP 4500; the receivers count', async () => {
    const before = await packets('b', A, B, '0x4000');
    expect(await ping('a', B)).toBe(3);
    expect(await ping('b', A)).toBe(3);
    expect(await packets('b', A, B, '0x4000')).toBeGreaterThanOrEqual(before + 6);
    expect(await packets('a', B, A, '0x4001')).toBeGreaterThanOrEqual(6);
    const capture = await node('b').trySh(
      `tcpdump -l -n -i eth0 -c 2 'host ${A} and (udp or icmp)' > /tmp/e2e-natt.txt 2>/dev/null & sleep 2; ip netns exec ${node('a').netns} ping -c 1 -W 5 ${B} >/dev/null; wait; cat /tmp/e2e-natt.txt`,
      { timeoutMs: 60_000 },
    );
    expect(capture.stdout).toMatch(/4500: UDP-encap: ESP\(spi=0x00004000/);
    expect(capture.stdout).not.toMatch(/ICMP/);
  });

  it('a restarted agent holds its socket again and traffic resumes', async () => {
    await cluster.stopAgent('a');
    expect(await port4500('a')).toEqual([]);
    await cluster.startAgent('a');
    await waitFor('agent a holds 4500 again', async () => (await port4500('a')).length === 1, 180_000, 1000);
    expect(await ping('a', B)).toBe(3);
  });

  it('a port another process holds is reported and left to it; the agent takes it once it is free', async () => {
    await cluster.stopAgent('b');
    const holder = await vm.spawn({
      argv: [
        'ip', 'netns', 'exec', node('b').netns, 'python3', '-c',
        "import socket, signal\n# nat-t-e2e-holder\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_UDP, 100, 2)\ns.bind(('0.0.0.0', 4500))\nprint('bound', flush=True)\nsignal.pause()",
      ],
    });
    try {
      await waitFor('the other process holds 4500', async () => (await vm.logs(holder.id)).stdout.includes('bound'), 30_000, 250);
      await cluster.startAgent('b');
      await waitFor('xnode b reports HeldElsewhere', async () => (await socketState('b', B)) === 'HeldElsewhere', 180_000, 1000);
      const report = (await sockets('b')).find((entry) => entry.address === B)!;
      expect(report.message).toContain(`another process holds ${B}:4500`);
      const held = await port4500('b');
      expect(held, held.join('\n')).toHaveLength(1);
      expect(held[0]).toContain('0.0.0.0:4500');
      expect(held[0]).toContain('python3');
      expect(await ping('a', B)).toBe(3); // received through the other process's socket
    } finally {
      await vm.kill(holder.id, 'SIGKILL');
    }
    await waitFor('xnode b reports Held again', async () => (await socketState('b', B)) === 'Held', 120_000, 1000);
    expect(await ping('a', B)).toBe(3);
  });
});
