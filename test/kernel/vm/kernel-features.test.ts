// Kernel features on both kernels of the matrix (projects `vm`: Debian 12's 6.1, `vm-6.12`:
// linux-image-6.12-amd64). What the engine learns at start must be what the kernel does:
// - on 6.12 an SA's direction round-trips: `apply` installs it, iproute2 6.15 shows `dir out`
//   and `dir in`, our dump decodes it (`import`), and a second apply changes nothing;
// - on 6.1 the kernel silently drops the attribute (shown with iproute2 6.15 here), so `apply`
//   and `diff` refuse a resource with a direction (exit 2, KernelUnsupported, the field and the
//   release named) and nothing at all is applied.
// Debian 12's own iproute2 (6.1) predates SA direction and cannot show it; scripts/fetch-iproute2.sh
// unpacks bookworm-backports' 6.15 into the cache (bootstrap runs it).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../../infra/vm/inject.js';
import { cli, formatResult, freshNamespace, REPO, stateDir, warmCrypto } from '../../support/vm-cli.js';
import { kernelFeatures } from '../../../src/xfrm/kernel-features.js';

const vm = vmFromInject();

const A = '198.51.100.1';
const B = '198.51.100.2';
const KEY = '0x' + '4a'.repeat(20);

const manifests = (extra = '') => `apiVersion: v1
kind: Secret
metadata: {name: keys}
type: Opaque
stringData: {gcm: "${KEY}"}
---
apiVersion: ipsec.xfrm.io/v1alpha1
kind: SecurityAssociation
metadata: {name: a-to-b}
spec:
  source: ${A}
  destination: ${B}
  protocol: esp
  spi: 0x7001
  reqid: 1
  direction: out
  aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: keys, key: gcm, encoding: hex}}
---
apiVersion: ipsec.xfrm.io/v1alpha1
kind: SecurityAssociation
metadata: {name: b-to-a}
spec:
  source: ${B}
  destination: ${A}
  protocol: esp
  spi: 0x7002
  reqid: 2
  direction: in
  replayWindow: 32
  aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: keys, key: gcm, encoding: hex}}
${extra}`;

/** An SA without direction: on 6.1 it must not be applied either when another resource is refused. */
const PLAIN = `---
apiVersion: ipsec.xfrm.io/v1alpha1
kind: SecurityAssociation
metadata: {name: plain}
spec:
  source: ${A}
  destination: ${B}
  protocol: esp
  spi: 0x7003
  aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: keys, key: gcm, encoding: hex}}
`;

/** What openKernelTables learned in the VM, printed by the compiled product itself. */
async function learnedFeatures(netns: string): Promise<{ release: string; supported: string[]; learnedBy: Record<string, string> }> {
  const script = `const { openKernelTables } = await import(${JSON.stringify(join(REPO, 'dist/engine/kernel.js'))});
const tables = await openKernelTables(${JSON.stringify(netns)});
const f = tables.features;
console.log(JSON.stringify({ release: f.release, supported: [...f.supported].sort(), learnedBy: f.learnedBy }));
tables.close();`;
  const result = await vm.exec({ argv: ['node', '--input-type=module', '-e', script] }, { timeoutMs: 120_000 });
  expect(result.exitCode, formatResult(result)).toBe(0);
  return JSON.parse(result.stdout.trim().split('\n').pop()!);
}

describe('kernel features, on the kernel this project boots', () => {
  let release: string;
  let ip615: string;
  let ns: Awaited<ReturnType<typeof freshNamespace>>;
  beforeAll(async () => {
    ip615 = execFileSync('bash', [join(REPO, 'scripts/fetch-iproute2.sh')], { encoding: 'utf8' }).trim().split('\n').pop()!;
    release = (await vm.health()).kernel;
    await warmCrypto(vm);
    ns = await freshNamespace(vm, 'feat');
  });
  afterAll(async () => {
    await ns?.remove();
  });

  it('boots a kernel of the matrix, the one its project asks for', () => {
    const asked = process.env['IPSEC_OPERATOR_VM_KERNEL'] ?? '6.1';
    expect(release.startsWith(`${asked}.`) || release.startsWith(`${asked}-`), `asked ${asked}, booted ${release}`).toBe(true);
    expect(['6.1', '6.12']).toContain(asked);
  });

  it('learns SA direction from the kernel itself, and the probe agrees with the release table', async () => {
    const learned = await learnedFeatures(ns.name);
    expect(learned.release).toBe(release);
    expect(learned.learnedBy['sa-direction']).toBe('probe');
    expect(learned.supported).toEqual([...kernelFeatures(release).supported].sort());
    expect(learned.supported.includes('sa-direction')).toBe(release.startsWith('6.12'));
  });

  it('the kernel keeps an SA direction sent by iproute2 6.15 exactly when the engine says so', async () => {
    const added = await vm.exec({ argv: [ip615, '-n', ns.name, 'xfrm', 'state', 'add', 'src', A, 'dst', B, 'proto', 'esp', 'spi', '0x7fff', 'dir', 'out', 'aead', 'rfc4106(gcm(aes))', KEY, '128'] });
    expect(added.exitCode, formatResult(added)).toBe(0); // 6.1 acknowledges it too: the silent drop
    const shown = await vm.sh(`${ip615} -n ${ns.name} xfrm state get src ${A} dst ${B} proto esp spi 0x7fff`);
    expect(/\bdir out\b/.test(shown.stdout), shown.stdout).toBe(release.startsWith('6.12'));
    await vm.sh(`ip -n ${ns.name} xfrm state flush`);
  });

  it('6.12: direction round-trips and a second apply is a no-op; 6.1: refused clearly, nothing applied', async () => {
    const dir = stateDir(ns.name);
    const input = manifests(PLAIN);
    const applied = await cli(vm, ['apply', '-f', '-', '--netns', ns.name, '--state-dir', dir], input);
    if (release.startsWith('6.12')) {
      expect(applied.exitCode, formatResult(applied)).toBe(0);
      expect(applied.stdout).toContain('applied 3 change(s); the kernel matches');
      const shown = await vm.sh(`${ip615} -n ${ns.name} xfrm state`);
      expect(shown.stdout).toMatch(new RegExp(`src ${A} dst ${B}\\s+proto esp spi 0x00007001[\\s\\S]*?\\bdir out\\b`));
      expect(shown.stdout).toMatch(new RegExp(`src ${B} dst ${A}\\s+proto esp spi 0x00007002[\\s\\S]*?\\bdir in\\b`));
      const imported = await cli(vm, ['import', '--netns', ns.name]);
      expect(imported.exitCode, formatResult(imported)).toBe(0);
      // import prints SPIs in decimal; one document per entry.
      const documentOf = (spi: number) => imported.stdout.split(/^---$/m).find((document) => new RegExp(`^  spi: ${spi}$`, 'm').test(document)) ?? '';
      expect(documentOf(0x7001), imported.stdout).toMatch(/^ {2}direction: out$/m);
      expect(documentOf(0x7002), imported.stdout).toMatch(/^ {2}direction: in$/m);
      expect(documentOf(0x7003), imported.stdout).not.toMatch(/direction:/);
      const again = await cli(vm, ['apply', '-f', '-', '--netns', ns.name, '--state-dir', dir], input);
      expect(again.exitCode, formatResult(again)).toBe(0);
      expect(again.stdout.trim()).toBe('no changes');
      const diff = await cli(vm, ['diff', '-f', '-', '--netns', ns.name, '--state-dir', dir, '--prune'], input);
      expect(diff.exitCode, formatResult(diff)).toBe(0);
    } else {
      expect(applied.exitCode, formatResult(applied)).toBe(2);
      for (const name of ['a-to-b', 'b-to-a']) {
        expect(applied.stderr).toContain(`SecurityAssociation/${name}: spec.direction: kernel ${release} does not keep spec.direction (XFRMA_SA_DIR (33) needs Linux 6.10 or later`);
      }
      expect(applied.stderr).toContain('(KernelUnsupported)');
      expect(applied.stderr).toContain('2 fields this kernel cannot keep; nothing was applied');
      expect(applied.stdout).toBe('');
      const count = await vm.sh(`ip -n ${ns.name} xfrm state count`);
      expect(count.stdout.trim()).toBe('SAD count 0');
      const diff = await cli(vm, ['diff', '-f', '-', '--netns', ns.name, '--state-dir', dir], input);
      expect(diff.exitCode, formatResult(diff)).toBe(2);
      expect(diff.stderr).toContain('KernelUnsupported');
      // Without the direction the same SAs apply, and stay applied.
      const plain = await cli(vm, ['apply', '-f', '-', '--netns', ns.name, '--state-dir', dir], input.replace(/^ {2}direction: (in|out)\n/gm, ''));
      expect(plain.exitCode, formatResult(plain)).toBe(0);
      expect(plain.stdout).toContain('applied 3 change(s); the kernel matches');
    }
  }, 600_000); // four runs of the CLI in a TCG guest on a loaded machine: a bound, not a measure
});
