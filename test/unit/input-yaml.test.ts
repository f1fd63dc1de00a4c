// YAML read as kubectl reads it: plain scalars resolved with go-yaml v2's rules (the table
// below was checked against go.yaml.in/yaml/v2 v2.4.4 resolve.go, which sigs.k8s.io/yaml
// v1.6.0 uses for kubectl), errors rebuilt from position and kind, never the source line.
import { describe, expect, it } from 'vitest';
import { MAX_EXPANDED_NODES, readYamlDocuments, resolvePlain } from '../../src/model/yaml-documents.js';

describe('plain scalars as go-yaml v2 resolves them', () => {
  it.each([
    ['010', 8],
    ['0o10', 8],
    ['0x10', 16],
    ['0X1f', 31],
    ['0b11', 3],
    ['-0b11', -3],
    ['+10', 10],
    ['-010', -8],
    ['1_000', 1000],
    ['0x_1_0', 16],
    ['09', 9],
    ['08.5', 8.5],
    ['1e3', 1000],
    ['1.', 1],
    ['.5', 0.5],
    ['-.5', -0.5],
    ['0', 0],
    ['00', 0],
    ['18446744073709551615', 18446744073709551615],
    ['yes', true],
    ['Y', true],
    ['on', true],
    ['ON', true],
    ['n', false],
    ['Off', false],
    ['FALSE', false],
    ['~', null],
    ['', null],
    ['NULL', null],
    ['yEs', 'yEs'],
    ['0x', '0x'],
    ['1e400', '1e400'],
    ['0x1ffffffffffffffff', '0x1ffffffffffffffff'],
    ['2024-01-02', '2024-01-02'],
    ['1:20', '1:20'],
    ['+Inf', '+Inf'],
    ['10.0.0.1', '10.0.0.1'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['rfc4106(gcm(aes))', 'rfc4106(gcm(aes))'],
    // Edges, each checked against go-yaml v2 itself (a Go program over the module cache).
    ['1E3', 1000],
    ['.5e3', 500],
    ['18446744073709551616', 18446744073709552000],
    ['-9223372036854775809', -9223372036854776000],
    ['nULL', 'nULL'],
    ['2024-1-2', '2024-1-2'],
    ['Infinity', 'Infinity'],
    ['1_0.5', 10.5],
    ['1__0', 10],
    ['_1', '_1'],
    ['1_', 1],
    ['0_10', 8],
    ['0x1p3', '0x1p3'],
    ['0b012', '0b012'],
    ['0o8', '0o8'],
    ['0799', 799],
    ['12abc', '12abc'],
    ['-0', 0],
    ['007', 7],
    ['0x-1', '0x-1'],
    ['0b-1', -1],
    ['0b+1', 1],
    ['-0b-1', '-0b-1'],
  ] as [string, unknown][])('%s → %o', (text, value) => {
    expect(resolvePlain(text)).toStrictEqual(value);
  });

  it('reads quoted scalars as strings, whatever they hold', () => {
    const [document] = readYamlDocuments('a: "010"\nb: \'yes\'\nc: |\n  0x10\nd: 010\n');
    expect(document!.value).toEqual({ a: '010', b: 'yes', c: '0x10\n', d: 8 });
  });
});

describe('YAML errors', () => {
  it('name line, column and kind, never the text of the line', () => {
    const secret = 'c0ffee4a5b6c7d8e9fa0b1c2d3e4f5061728394a';
    const [document] = readYamlDocuments(`kind: Secret\nstringData: {k: "${secret}\n`);
    expect(document!.problems.length).toBeGreaterThan(0);
    for (const problem of document!.problems) {
      expect(problem.path).toBe('(yaml)');
      expect(problem.message).toMatch(/^line \d+, column \d+: .+ \([A-Z_]+\)$/);
      expect(problem.message).not.toContain(secret.slice(0, 16));
    }
  });

  it('reports every document of a stream, alias errors included, each with its index', () => {
    const documents = readYamlDocuments('a: *missing\n---\nb: [\n---\nc: &x [*x]\n---\nd: 1\n');
    expect(documents.map((document) => document.index)).toEqual([1, 2, 3, 4]);
    expect(documents[0]!.problems[0]).toMatchObject({ path: 'a', message: expect.stringContaining('alias without an anchor before it') });
    expect(documents[1]!.problems[0]!.path).toBe('(yaml)');
    expect(documents[2]!.problems[0]).toMatchObject({ path: 'c[0]', message: expect.stringContaining('alias refers to the node that contains it') });
    expect(documents[3]).toEqual({ index: 4, value: { d: 1 }, problems: [] });
  });

  it('refuses an alias bomb quickly, once, at the alias that crossed the bound', () => {
    const levels = ['l0: &l0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let level = 1; level < 9; level += 1) levels.push(`l${level}: &l${level} [${Array.from({ length: 10 }, () => `*l${level - 1}`).join(', ')}]`);
    const [document] = readYamlDocuments(levels.join('\n'));
    expect(document!.value).toBeUndefined();
    expect(document!.problems).toHaveLength(1);
    expect(document!.problems[0]!.message).toContain(`aliases expand to more than ${MAX_EXPANDED_NODES} values`);
  });

  it('keeps an anchor shared by a few aliases', () => {
    const [document] = readYamlDocuments('base: &b {protocol: esp, mode: tunnel}\nfirst: *b\nsecond: *b\n');
    expect(document!.problems).toEqual([]);
    expect(document!.value).toEqual({ base: { protocol: 'esp', mode: 'tunnel' }, first: { protocol: 'esp', mode: 'tunnel' }, second: { protocol: 'esp', mode: 'tunnel' } });
  });

  it('never lets a key named __proto__ reach a prototype', () => {
    const [document] = readYamlDocuments('__proto__: {polluted: true}\n');
    expect(Object.keys(document!.value as object)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(document!.value)).toBe(Object.prototype);
  });

  it('treats an empty stream and bare separators as no documents', () => {
    expect(readYamlDocuments('')).toEqual([]);
    expect(readYamlDocuments('# only a comment\n')).toEqual([]);
    expect(readYamlDocuments('---\n---\n').every((document) => (document.value ?? null) === null && document.problems.length === 0)).toBe(true);
  });
});
