/**
 * The bundle as scripts/bundle.mjs builds it (into a directory of this run under dist/, so that
 * dist/bundle is left alone and the native addon is found from the package root): the entry
 * runs, and every command loads its own chunks. Each command is run with input it refuses after
 * its module has loaded, and the test asserts that module's own message: a missing or broken
 * chunk would end in a module error instead.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OUT = join(ROOT, 'dist', 'test-bundles', `bundle-${randomBytes(4).toString('hex')}`);
const ENTRY = join(OUT, 'ipsec-operator.mjs');

function run(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [ENTRY, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_NAME: '', POD_NAMESPACE: '' } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(() => {
  const built = spawnSync(process.execPath, ['scripts/bundle.mjs', '--outdir', OUT], { cwd: ROOT, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`scripts/bundle.mjs failed:\n${built.stdout}${built.stderr}`);
}, 120_000);

afterAll(() => rmSync(OUT, { recursive: true, force: true }));

describe('the bundle', () => {
  it('is an entry file with its chunks beside it, and the entry holds no command', () => {
    const chunks = readdirSync(join(OUT, 'chunks')).filter((name) => name.endsWith('.mjs'));
    expect(chunks.length).toBeGreaterThan(1);
    // --help parses the entry and main's chunk only: the Kubernetes client and the engine are elsewhere.
    expect(statSync(ENTRY).size).toBeLessThan(20_000);
    expect(readFileSync(ENTRY, 'utf8')).not.toContain('CustomObjectsApi');
  });

  it('prints the usage text', () => {
    const result = run(['--help']);
    expect(result).toMatchObject({ status: 0, stderr: '' });
    expect(result.stdout).toMatch(/^Usage: ipsec-operator <command>/);
  });

  it('says what is wrong with an unknown command', () => {
    const result = run(['frobnicate']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('unknown command "frobnicate"');
  });

  it('runs crds to the end', () => {
    const result = run(['crds']);
    expect(result).toMatchObject({ status: 0, stderr: '' });
    expect(result.stdout).toContain('kind: CustomResourceDefinition');
  });

  // Each command past its import(): what it says comes from the command's own chunk.
  const missing = join(OUT, 'no-such-manifest.yaml');
  const cases: { command: string[]; status: number; says: RegExp }[] = [
    { command: ['apply', '-f', missing], status: 2, says: /no-such-manifest\.yaml/ },
    { command: ['diff', '-f', missing], status: 2, says: /no-such-manifest\.yaml/ },
    { command: ['hold-encap', '-f', missing], status: 2, says: /no-such-manifest\.yaml/ },
    { command: ['import', '--netns', 'no-such-netns-bundle-test'], status: 1, says: /no-such-netns-bundle-test/ },
    { command: ['monitor', '--netns', 'no-such-netns-bundle-test'], status: 1, says: /no-such-netns-bundle-test/ },
    { command: ['agent'], status: 2, says: /--node-name is required/ },
    { command: ['controller', '--lease-duration-seconds', '0'], status: 2, says: /--lease-duration-seconds must be a positive whole number/ },
    { command: ['mesh'], status: 2, says: /mesh: which\?/ },
  ];
  for (const { command, status, says } of cases) {
    it(`loads ${command[0]}`, () => {
      const result = run(command);
      expect(result.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find module|SyntaxError/);
      expect(result.stderr).toMatch(says);
      expect(result.status).toBe(status);
    });
  }
});
