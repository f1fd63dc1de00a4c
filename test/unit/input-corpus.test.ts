// The malformed corpus through the CLI's apply/diff path: every case is refused as input (exit
// status 2: InputError), each error names its file, document and field, the kernel is never
// opened, and no byte of any key (hex or base64) reaches stdout or stderr.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runApply, type ApplyIo, type ApplyOptions } from '../../src/cli/apply.js';
import { InputError } from '../../src/cli/errors.js';
import { CORPUS, keyFingerprints, policy, sa, SECRET, type MalformedCase } from './fixtures/malformed/corpus.js';

const root = mkdtempSync(join(tmpdir(), 'ipsecop-corpus-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  readonly status: number | 'threw';
  readonly stdout: string;
  readonly stderr: string;
  readonly kernelOpened: boolean;
}

const KERNEL_OPENED = new Error('the kernel was opened');

/** runApply as main() runs it (InputError → 2), with every edge recorded instead of touched. */
async function run(files: Readonly<Record<string, string>>, options: Partial<ApplyOptions> = {}): Promise<Run> {
  const dir = mkdtempSync(join(root, 'case-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const stdout: string[] = [];
  const stderr: string[] = [];
  let kernelOpened = false;
  const io: ApplyIo = {
    openKernel: async () => {
      kernelOpened = true;
      throw KERNEL_OPENED;
    },
    readDevices: async () => ({ indexByName: new Map([['lo', 1]]), nameByIndex: new Map([[1, 'lo']]) }),
    out: (line) => stdout.push(line),
    err: (line) => stderr.push(line),
  };
  let status: Run['status'];
  try {
    status = await runApply({ mode: 'apply', files: [dir], netns: undefined, prune: false, nodeLabels: undefined, stateDirectory: join(dir, 'state'), ...options }, io);
  } catch (error) {
    if (error instanceof InputError) {
      stderr.push(`ipsec-operator: ${error.message}`);
      status = 2;
    } else if (error === KERNEL_OPENED) {
      status = 'threw';
    } else {
      throw error;
    }
  }
  return { status, stdout: stdout.join('\n'), stderr: stderr.join('\n').replaceAll(`${dir}/`, ''), kernelOpened };
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const fingerprints = keyFingerprints();

describe('malformed input corpus', () => {
  it('holds at least 100 cases with distinct names', () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(100);
    expect(new Set(CORPUS.map((entry) => entry.name)).size).toBe(CORPUS.length);
  });

  it.each(CORPUS.map((entry) => [entry.name, entry] as [string, MalformedCase]))('%s: exit 2, file, document and field named, kernel untouched, no key bytes', async (_name, entry) => {
    const result = await run(entry.files);
    expect(result.status).toBe(2);
    expect(result.kernelOpened).toBe(false);
    const lines = result.stderr.split('\n');
    for (const where of entry.at) {
      const pattern = new RegExp(`^${escapeRegExp(`${where.file}: document ${where.document}`)}( \\([^)]*\\))?: ${escapeRegExp(where.path)}[.\\[:]`);
      expect(lines.some((line) => pattern.test(line)), `no line for ${where.file} document ${where.document} at ${where.path} in:\n${result.stderr.slice(0, 4000)}`).toBe(true);
    }
    expect(lines.at(-1)).toMatch(/problems? in the input; nothing was applied$/);
    const output = `${result.stdout}\n${result.stderr}`;
    for (const fingerprint of fingerprints) expect(output.includes(fingerprint), `key bytes ${fingerprint} in the output`).toBe(false);
    // Every echoed value is capped: a 10 MB input never comes back whole.
    for (const line of lines) expect(line.length).toBeLessThan(2048);
  });

  it('names both resources and both files when two ask for one kernel identity', async () => {
    const result = await run({ 'a.yaml': `${SECRET}---\n${sa('first')}`, 'b.yaml': sa('second') });
    expect(result.stderr).toContain('b.yaml: document 1 (SecurityAssociation/second): spec: asks for the same SA (destination, SPI, protocol and mark) as SecurityAssociation/first (a.yaml: document 2)');
  });

  it('reads numbers as the API server does: 011 is octal 9, 0x10 hex 16, 1_0 ten, 09 the float 9', async () => {
    // The policy index's low 3 bits must say "out" (1): which values pass shows how each was read.
    const withIndex = (name: string, index: string) => ({ 'p.yaml': policy(name, `direction: out\nindex: ${index}\nselector: {source: 10.0.0.0/8, destination: 10.0.0.0/8}`) });
    expect((await run(withIndex('octal', '011'))).kernelOpened).toBe(true); // 9 % 8 == 1
    expect((await run(withIndex('decimal', '11'))).stderr).toContain('spec.index: the low 3 bits of an index give its direction: out needs index % 8 == 1, and 11 % 8 is 3');
    expect((await run(withIndex('hex', '0x10'))).stderr).toContain('and 16 % 8 is 0');
    expect((await run(withIndex('underscores', '1_0'))).stderr).toContain('and 10 % 8 is 2');
    expect((await run(withIndex('nine', '09'))).kernelOpened).toBe(true); // go-yaml: not octal, so the float 9
    expect((await run(withIndex('octal-o', '0o11'))).kernelOpened).toBe(true);
  });
});

describe('apply --prune with no resources', () => {
  it.each([
    ['an empty directory', {}],
    ['files with other extensions only', { 'policies.yml.txt': policy('p') }],
    ['only Secrets', { 'keys.yaml': SECRET }],
  ])('refuses %s unless --prune-all is given', async (_name, files) => {
    const refused = await run(files, { prune: true });
    expect(refused.status).toBe(2);
    expect(refused.kernelOpened).toBe(false);
    expect(refused.stderr).toContain('--prune would delete every entry ipsec-operator created; pass --prune-all to do that');
    const diff = await run(files, { prune: true, mode: 'diff' });
    expect(diff.status).toBe(2);
    expect(diff.kernelOpened).toBe(false);
    const all = await run(files, { prune: false, pruneAll: true });
    expect(all.kernelOpened).toBe(true);
    const plain = await run(files, { prune: false });
    expect(plain.kernelOpened).toBe(true);
  });

  it('refuses --prune when --node-labels selects none of the resources', async () => {
    const refused = await run({ 'in.yaml': policy('p') }, { prune: true, nodeLabels: { 'ipsec.xfrm.io/node': 'z' } });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('--node-labels selects none of the 1 resource(s)');
  });

  it('applies a valid input (the kernel is opened)', async () => {
    const result = await run({ 'in.yaml': `${SECRET}---\n${sa('fine')}---\n${policy('fine')}` }, { prune: true });
    expect(result.stderr).toBe('');
    expect(result.kernelOpened).toBe(true);
  });
});
