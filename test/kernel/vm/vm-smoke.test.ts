// Smoke test of the test VM (booted by test/infra/vm/global-setup.ts): the guest kernel does
// what the host kernel cannot (ESP SAs, AEAD), tests reach it through the control server,
// and it sees the host's files and loopback servers. Plain iproute2 here, no product code:
// when this fails, the VM is at fault, not the operator.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VmCommandError } from '../../infra/vm/client.js';
import { vmFromInject } from '../../infra/vm/inject.js';
import { createNodes, type Topology, type TopologyNode } from '../../infra/vm/topology.js';

const vm = vmFromInject();

// Fixed test keys: 128-bit AES-CBC + HMAC-SHA256, and AES-GCM (128-bit key + 32-bit salt).
const ENC_KEY = '0x0123456789abcdef0123456789abcdef';
const AUTH_KEY = '0x' + 'fedcba9876543210'.repeat(4);
const AEAD_KEY = '0x0123456789abcdef0123456789abcdef01234567';

/** `ip xfrm` lines giving `local` an ESP transport SA pair and policies towards `peer`. */
function espTransport(local: TopologyNode, peer: TopologyNode, spiOut: string, spiIn: string): string {
  const sa = (src: string, dst: string, spi: string) =>
    `ip xfrm state add src ${src} dst ${dst} proto esp spi ${spi} mode transport ` +
    `enc 'cbc(aes)' ${ENC_KEY} auth-trunc 'hmac(sha256)' ${AUTH_KEY} 128`;
  const policy = (dir: 'out' | 'in', src: string, dst: string) =>
    `ip xfrm policy add src ${src}/32 dst ${dst}/32 dir ${dir} tmpl src ${src} dst ${dst} proto esp mode transport`;
  const [l, p] = [local.ipv4!, peer.ipv4!];
  return [sa(l, p, spiOut), sa(p, l, spiIn), policy('out', l, p), policy('in', p, l)].join('\n');
}

/** Packet counter of one SA, from `ip -s xfrm state get`. */
async function saPackets(node: TopologyNode, src: string, dst: string, spi: string): Promise<number> {
  const { stdout } = await node.sh(`ip -s xfrm state get src ${src} dst ${dst} proto esp spi ${spi}`);
  const match = /(\d+)\(bytes\), (\d+)\(packets\)/.exec(stdout);
  if (!match) throw new Error(`no byte/packet counters in:\n${stdout}`);
  return Number(match[2]);
}

describe('the test VM', () => {
  it('runs a kernel with the XFRM, ESP and veth modules loaded', async () => {
    const health = await vm.health();
    expect(health.kernel).toMatch(/-amd64$/);
    const { stdout } = await vm.sh('cat /proc/modules');
    for (const module of ['xfrm_user', 'esp4', 'esp6', 'ah4', 'ipcomp', 'xfrm_interface', 'veth', 'bridge']) {
      expect(stdout).toMatch(new RegExp(`^${module} `, 'm'));
    }
  });

  it('carries ping over ESP transport SAs between two namespaces joined by veth', async () => {
    const topo = await createNodes(vm, ['a', 'b'], { ipv4: true, ipv6: false });
    try {
      const a = topo.node('a');
      const b = topo.node('b');
      await a.sh(espTransport(a, b, '0x1001', '0x1002'));
      await b.sh(espTransport(b, a, '0x1002', '0x1001'));

      const ping = await a.sh(`ping -c 3 -W 5 ${b.ipv4}`);
      // iputils says "3 received", busybox "3 packets received".
      expect(ping.stdout).toMatch(/3 packets transmitted, 3 (packets )?received/);
      expect(await saPackets(a, a.ipv4!, b.ipv4!, '0x1001')).toBe(3);
      expect(await saPackets(a, b.ipv4!, a.ipv4!, '0x1002')).toBe(3);
      expect(await saPackets(b, a.ipv4!, b.ipv4!, '0x1001')).toBe(3);
      expect(await saPackets(b, b.ipv4!, a.ipv4!, '0x1002')).toBe(3);
    } finally {
      await topo.cleanup();
    }
  });

  it("accepts an ESP SA with aead 'rfc4106(gcm(aes))'", async () => {
    const topo = await createNodes(vm, ['a', 'b'], { ipv4: false, ipv6: true });
    try {
      const a = topo.node('a');
      await a.sh(
        `ip xfrm state add src ${a.ipv6} dst ${topo.node('b').ipv6} proto esp spi 0x2001 mode transport ` +
          `aead 'rfc4106(gcm(aes))' ${AEAD_KEY} 128`,
      );
      const { stdout } = await a.sh('ip xfrm state list');
      expect(stdout).toContain('aead rfc4106(gcm(aes))');
      expect(stdout).toContain('spi 0x00002001');
    } finally {
      await topo.cleanup();
    }
  });

  it('joins three nodes through a bridge', async () => {
    const topo: Topology = await createNodes(vm, ['a', 'b', 'c'], { ipv4: true, ipv6: true });
    try {
      const [a, b, c] = topo.nodes as [TopologyNode, TopologyNode, TopologyNode];
      await a.sh(`ping -c 1 -W 5 ${c.ipv4} && ping -c 1 -W 5 ${b.ipv6}`);
    } finally {
      await topo.cleanup();
    }
    const left = await vm.sh('ip netns list');
    expect(left.stdout).not.toContain(topo.nodes[0]!.netns);
  });

  describe('reaching the host', () => {
    let server: Server;
    let port: number;
    const nonce = `hello-from-the-host-${process.pid}-${Date.now()}`;

    beforeAll(async () => {
      server = createServer((_req, res) => res.end(nonce));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as { port: number }).port;
    });
    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    it("runs node, which reaches a server on the host's 127.0.0.1 at 10.0.2.2", async () => {
      const script = `fetch('http://10.0.2.2:${port}/').then(r => r.text()).then(t => console.log(t))`;
      const { stdout } = await vm.run(['node', '-e', script]);
      expect(stdout.trim()).toBe(nonce);
    });
  });

  it('sees host files at the same paths, keeping its writes to itself', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vm-smoke-'));
    try {
      const file = join(dir, 'shared.txt');
      writeFileSync(file, 'written by the host\n');
      const { stdout } = await vm.run(['cat', file]);
      expect(stdout).toBe('written by the host\n');
      await vm.sh('echo written by the guest > "$F" && cat "$F"', { env: { F: file } });
      expect(readFileSync(file, 'utf8')).toBe('written by the host\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('control server', () => {
    it('passes stdin, env and cwd, and reports the exit status', async () => {
      const r = await vm.exec({ script: 'cat; echo "$GREETING"; pwd; echo oops >&2; exit 3' }, {
        stdin: 'from stdin\n',
        env: { GREETING: 'hi' },
        cwd: '/proc',
      });
      expect(r).toMatchObject({ exitCode: 3, signal: null, timedOut: false, stdout: 'from stdin\nhi\n/proc\n', stderr: 'oops\n' });
      await expect(vm.sh('exit 3')).rejects.toThrow(VmCommandError);
    });

    it('kills a command that outlives its timeout', async () => {
      const r = await vm.trySh('sleep 600', { timeoutMs: 500 });
      expect(r).toMatchObject({ timedOut: true, exitCode: null, signal: 'SIGKILL' });
    });

    it('spawns a long-running process, shows its output and kills it', async () => {
      const { id } = await vm.spawn({ script: 'echo started; exec sleep 600' });
      let status = await vm.logs(id);
      while (status.running && !status.stdout.includes('started')) status = await vm.logs(id);
      expect(status).toMatchObject({ running: true, stdout: 'started\n' });
      await vm.kill(id, 'SIGKILL');
      status = await vm.wait(id, 30_000);
      expect(status).toMatchObject({ running: false, exitCode: null, signal: 'SIGKILL' });
    });
  });
});
