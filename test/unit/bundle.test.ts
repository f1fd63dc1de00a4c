/**
 * The bundle as scripts/bundle.mjs builds it (into a directory of this run under dist/, so that
 * dist/bundle is left alone and the native addon is found from the package root): the entry
 * runs, and every command loads its own chunks. Each command is run with input it refuses after
 * its module has loaded, and the test asserts that module's own message: a missing or broken
 * chunk would end in a module error instead. The long-running commands run from server.cjs with
 * its V8 code cache (src/cli/code-cache.ts): used when valid, and ignored, with the command
 * working all the same, when absent, corrupt, for another script, from another node, or
 * refused by V8 itself.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeCache, encodeCache } from '../../src/cli/code-cache.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OUT = join(ROOT, 'dist', 'test-bundles', `bundle-${randomBytes(4).toString('hex')}`);
const ENTRY = join(OUT, 'ipsec-operator.mjs');

const SERVER = join(OUT, 'server.cjs');
const CACHE = join(OUT, 'server.cjs.cache');

function run(args: readonly string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [ENTRY, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_NAME: '', POD_NAMESPACE: '', ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(() => {
  const built = spawnSync(process.execPath, ['scripts/bundle.mjs', '--outdir', OUT], { cwd: ROOT, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`scripts/bundle.mjs failed:\n${built.stdout}${built.stderr}`);
}, 120_000);

afterAll(() => rmSync(OUT, { recursive: true, force: true }));

describe('the bundle', { timeout: 60_000 }, () => {
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

describe("the long-running commands' code cache", { timeout: 60_000 }, () => {
  let cache: Buffer;
  let server: Buffer;
  beforeAll(() => {
    cache = readFileSync(CACHE);
    server = readFileSync(SERVER);
  });
  afterEach(() => {
    writeFileSync(CACHE, cache);
    writeFileSync(SERVER, server);
  });

  /** `agent` with the cache's outcome reported; it must say what the agent says without a cache. */
  function agentWithCache(): string {
    const result = run(['agent'], { IPSEC_OPERATOR_CODE_CACHE_DEBUG: '1' });
    expect(result.stderr).toContain('--node-name is required');
    expect(result.status).toBe(2);
    const outcome = /code cache \S+: (\S+)/.exec(result.stderr)?.[1];
    expect(outcome).toBeDefined();
    return outcome!;
  }

  it('is made by the build for this node and used', () => {
    expect(decodeCache(cache)?.header).toMatchObject({ node: process.version, v8: process.versions.v8, arch: process.arch });
    expect(agentWithCache()).toBe('used');
    for (const command of [['controller', '--lease-duration-seconds', '0'], ['mesh']]) {
      const result = run(command, { IPSEC_OPERATOR_CODE_CACHE_DEBUG: '1' });
      expect(result.stderr).toContain(': used');
      expect(result.status).toBe(2);
    }
  });

  it('is not read for the other commands', () => {
    const result = run(['crds'], { IPSEC_OPERATOR_CODE_CACHE_DEBUG: '1' });
    expect(result).toMatchObject({ status: 0, stderr: '' });
  });

  it('is ignored when absent', () => {
    rmSync(CACHE);
    expect(agentWithCache()).toBe('absent');
  });

  it('is ignored when a byte of its payload is wrong', () => {
    const corrupt = Buffer.from(cache);
    corrupt.writeUInt8(corrupt.readUInt8(corrupt.length - 100) ^ 0xff, corrupt.length - 100);
    writeFileSync(CACHE, corrupt);
    expect(agentWithCache()).toBe('corrupt');
  });

  it('is ignored when truncated or not a cache at all', () => {
    writeFileSync(CACHE, cache.subarray(0, 20));
    expect(agentWithCache()).toBe('corrupt');
    writeFileSync(CACHE, 'not a cache');
    expect(agentWithCache()).toBe('corrupt');
  });

  it('is ignored when made by another node', () => {
    const { header, payload } = decodeCache(cache)!;
    writeFileSync(CACHE, encodeCache({ ...header, node: 'v20.0.0' }, payload));
    expect(agentWithCache()).toBe('other-node');
  });

  it('is ignored when made for another script', () => {
    writeFileSync(SERVER, Buffer.concat([server, Buffer.from('\n// another build\n')]));
    expect(agentWithCache()).toBe('other-script');
  });

  it('is ignored when V8 refuses it (its data from another V8 version, under a header that says otherwise)', () => {
    const { header, payload } = decodeCache(cache)!;
    const foreign = Buffer.from(payload);
    // V8's SerializedCodeData header: magic, version hash, source hash, flag hash, ... (uint32 each).
    foreign.writeUInt32LE(foreign.readUInt32LE(4) ^ 0x5a5a5a5a, 4);
    writeFileSync(CACHE, encodeCache({ ...header, payload: createHash('sha256').update(foreign).digest('hex') }, foreign));
    expect(agentWithCache()).toBe('rejected-by-v8');
  });
});
