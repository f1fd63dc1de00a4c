// Malformed input through the real CLI process against a host-kernel namespace: exit status 2,
// the file, document and field named, no key bytes in the output, and `ip xfrm policy`
// exactly as before (a foreign policy is present; the host kernel has no ESP, so this layer
// checks policies; SAs never get as far as the kernel either).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, type TestNetns } from './netns.js';
import { bundleCli } from './cli-bundle.js';
import { CORPUS, keyFingerprints, policy, type MalformedCase } from '../../unit/fixtures/malformed/corpus.js';

const CHOSEN = [
  'unclosed double quote on a line with a key',
  'unresolved alias',
  'unknown field beside spec',
  'upper-case name',
  'duplicate policy flags',
  'out policy with an index of direction in',
  'transport template changing family',
  'keyRef key that is a pasted hex key',
  'base64 without padding',
  'two policies with one kernel identity',
  'every bad document of a file reported',
];

let netns: TestNetns;
let scratch: string;
let before: string;
/**
 * The CLI of this checkout, bundled once for this file (as scripts/bundle.mjs does, but into a
 * private path so that other builds are left alone); inside the package, so that the native
 * addon is found from it. Transpiling the sources per process would take 25 s a run here.
 */
let bundle: string;

function cli(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [bundle, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}\n${result.stderr}` };
}

beforeAll(async () => {
  bundle = await bundleCli('ipsecop-input-invalid');
  netns = createNetns();
  scratch = mkdtempSync(join(tmpdir(), 'ipsecop-invalid-'));
  netns.ip('xfrm', 'policy', 'add', 'src', '192.0.2.1/32', 'dst', '192.0.2.2/32', 'dir', 'out', 'priority', '77', 'tmpl', 'proto', 'esp', 'reqid', '9');
  before = netns.ip('xfrm', 'policy', 'list');
}, 120_000);
afterAll(() => {
  netns?.remove();
  if (bundle) rmSync(bundle, { force: true });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('the real CLI refuses malformed input and leaves the kernel as it was', () => {
  const cases = CHOSEN.map((name) => CORPUS.find((entry) => entry.name === name)).filter((entry): entry is MalformedCase => entry !== undefined);

  it('finds every chosen case in the corpus', () => expect(cases).toHaveLength(CHOSEN.length));

  it.each(cases.map((entry) => [entry.name, entry] as [string, MalformedCase]))('%s', (_name, entry) => {
    const dir = mkdtempSync(join(scratch, 'case-'));
    for (const [file, text] of Object.entries(entry.files)) writeFileSync(join(dir, file), text);
    const result = cli(['apply', '-f', dir, '--netns', netns.name, '--state-dir', join(dir, 'state'), '--prune']);
    expect(result.status, result.output).toBe(2);
    for (const where of entry.at) expect(result.output).toContain(`${join(dir, where.file)}: document ${where.document}`);
    for (const where of entry.at) expect(result.output).toMatch(new RegExp(`: ${where.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[.\\[:]`));
    for (const fingerprint of keyFingerprints()) expect(result.output.includes(fingerprint), fingerprint).toBe(false);
    expect(netns.ip('xfrm', 'policy', 'list')).toBe(before);
  }, 90_000);

  it('refuses --prune of an input without resources, and --prune-all of it leaves foreign entries alone', () => {
    const dir = mkdtempSync(join(scratch, 'empty-'));
    writeFileSync(join(dir, 'policy.yaml.bak'), policy('kept-aside'));
    const refused = cli(['apply', '-f', dir, '--netns', netns.name, '--state-dir', join(dir, 'state'), '--prune']);
    expect(refused.status, refused.output).toBe(2);
    expect(refused.output).toContain('pass --prune-all to do that');
    expect(netns.ip('xfrm', 'policy', 'list')).toBe(before);
    const all = cli(['apply', '-f', dir, '--netns', netns.name, '--state-dir', join(dir, 'state'), '--prune-all']);
    expect(all.status, all.output).toBe(0);
    expect(netns.ip('xfrm', 'policy', 'list')).toBe(before);
  }, 180_000);
});
