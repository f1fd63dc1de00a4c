// The fast YAML reader (src/model/yaml-fast.ts) must give exactly what the general reader
// gives, or nothing: then the general reader runs, so errors keep their messages and positions.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readSimpleYaml } from '../../src/model/yaml-fast.js';
import { readYamlDocuments } from '../../src/model/yaml-documents.js';
import { parseManifests } from '../../src/model/manifests.js';
import { manifestText, workload } from '../../bench/xfrm-workload.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

/** Forms the fast reader takes, each with the values the general reader gives. */
const SIMPLE: Record<string, string> = {
  'nested block mappings and a leading ---': '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\n  labels:\n    ipsec.xfrm.io/node: a\n',
  'a sequence at its key\'s column': 'spec:\n  templates:\n  - protocol: esp\n    mode: transport\n    reqid: 1\n  - protocol: ah\n  priority: 5\n',
  'a deeper sequence of scalars': 'a:\n  b:\n    - x\n    - 2\n    - -3\n  c: d\n',
  'flow collections on one line': 'spec:\n  selector: {source: 10.0.0.1/32, destination: 192.0.2.1/32}\n  templates: [{protocol: esp, mode: transport, reqid: 1}, {protocol: ah}]\n  empty: {}\n  none: []\n',
  'quoted scalars stay strings': "a: '0x10'\nb: \"yes\"\nc: ''\nd: 'rfc7539esp(chacha20,poly1305)'\ne: {f: 'g, h', i: \"010\"}\n",
  'go-yaml (YAML 1.1) plain scalars': 'spi: 0x1000\noctal: 010\nunderscore: 1_000\nbool: yes\nfalsy: off\nnull1: ~\nnull2:\nfloat: 1.5\nneg: -7\nword: -abc\nip6: 2001:db8::1\ndate: 2026-12-02\n',
  'several documents': 'a: 1\n---\nb: 2\n\n---\nc:\n  d: e\n',
  'plain scalars with inner punctuation': "algorithm: rfc4106(gcm(aes))\nlist: a,b\nquote: it's\nsentence: a b c\n",
  'trailing spaces and blank lines': 'a: 1   \n\n\nb:\n\n  c: 2  \n',
};

/** Forms the fast reader leaves to the general reader. */
const NOT_SIMPLE: Record<string, string> = {
  comment: 'a: 1 # one\n',
  'comment line': '# header\na: 1\n',
  anchor: 'a: &x 1\nb: *x\n',
  tag: 'a: !!str 1\n',
  'block scalar': 'a: |\n  text\n',
  'multi-line flow': 'a: {b: 1,\n  c: 2}\n',
  'multi-line plain scalar': 'a: one\n  two\n',
  tab: 'a:\n\tb: 1\n',
  'duplicate key': 'a: 1\na: 2\n',
  'trailing empty document': 'a: 1\n---\n',
  'empty document between': 'a: 1\n---\n---\nb: 2\n',
  'odd dedent': 'a:\n    b: 1\n  c: 2\n',
  'a key that is a boolean in YAML 1.1': 'on: 1\n',
  'merge key': 'a: {b: 1}\n<<: {c: 2}\n',
  'a colon inside a flow scalar': 'a: {b: 2001:db8::1}\n',
  'escape in double quotes': 'a: "\\x41"\n',
  'top-level sequence': '- a\n- b\n',
  'infinity': 'a: .inf\n',
  'a number go-yaml reads its own way': 'a: .1_0\n',
  'document end marker': 'a: 1\n...\n',
  'carriage returns': 'a: 1\r\nb: 2\r\n',
  'key without space after colon': 'a:1\n',
  '__proto__ key': '__proto__: {a: 1}\n',
  'control character': 'a: b\u0007c\n',
};

describe('readSimpleYaml', () => {
  for (const [name, text] of Object.entries(SIMPLE)) {
    it(`reads ${name} as the general reader does`, () => {
      const fast = readSimpleYaml(text);
      expect(fast).toBeDefined();
      expect(fast).toStrictEqual(readYamlDocuments(text));
    });
  }

  for (const [name, text] of Object.entries(NOT_SIMPLE)) {
    it(`leaves ${name} to the general reader`, () => {
      expect(readSimpleYaml(text)).toBeUndefined();
    });
  }

  it('reads every example and the bench workload as the general reader does', () => {
    const texts = [...yamlFiles(EXAMPLES).map((file) => readFileSync(file, 'utf8')), manifestText(workload(50, true)), manifestText(workload(50, false), { changed: 7 })];
    let fast = 0;
    for (const text of texts) {
      const result = readSimpleYaml(text);
      if (result === undefined) continue;
      fast += 1;
      expect(result).toStrictEqual(readYamlDocuments(text));
    }
    // The workload is simple by construction; the examples carry comments (general reader).
    expect(fast).toBeGreaterThanOrEqual(2);
  });

  it('never differs from the general reader on hundreds of mangled manifests (errors come from the general reader)', () => {
    const base = `${manifestText(workload(3, true))}---\n${SIMPLE['a sequence at its key\'s column']}---\n${SIMPLE['go-yaml (YAML 1.1) plain scalars']}`;
    const pieces = [':', ' ', '-', '- ', '{', '}', '[', ']', ',', "'", '"', '\n', '\n  ', '&a ', '*a', '!', '|', '>', '0x', '010', 'yes', '~', '---\n', '...', '?', '%', '@', '__proto__: 1\n'];
    let seed = 12345;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let compared = 0;
    for (let round = 0; round < 800; round++) {
      let text = base;
      for (let edits = 1 + random(3); edits > 0; edits--) {
        const at = random(text.length);
        switch (random(4)) {
          case 0:
            text = text.slice(0, at) + text.slice(at + 1 + random(4));
            break;
          case 1:
            text = text.slice(0, at) + pieces[random(pieces.length)]! + text.slice(at);
            break;
          case 2: {
            const lines = text.split('\n');
            const line = random(lines.length);
            lines.splice(line, 0, lines[line]!);
            text = lines.join('\n');
            break;
          }
          default: {
            const lines = text.split('\n');
            const line = random(lines.length);
            lines[line] = random(2) === 0 ? ` ${lines[line]}` : lines[line]!.replace(/^ /, '');
            text = lines.join('\n');
          }
        }
      }
      const fast = readSimpleYaml(text);
      if (fast === undefined) continue;
      compared += 1;
      expect(fast, text).toStrictEqual(readYamlDocuments(text));
    }
    // Enough mangled streams stay simple for the comparison to mean something.
    expect(compared).toBeGreaterThan(80);
  }, 120_000);

  it('gives parseManifests the same errors, with the same positions, as the general reader alone', () => {
    const broken = `${manifestText(workload(2, false))}---\napiVersion: ipsec.xfrm.io/v1alpha1\nkind: IpsecPolicy\nmetadata:\n  name: bad\nspec:\n  direction: sideways\n  priority: x\n`;
    const withYamlError = `${broken}---\na: [1, 2\n`;
    for (const text of [broken, withYamlError]) {
      const errors = parseManifests([{ file: 'f.yaml', text }]).errors;
      expect(errors.length).toBeGreaterThan(0);
      // What the general reader alone gives, document by document.
      const general = readYamlDocuments(text);
      const fast = readSimpleYaml(text);
      if (fast !== undefined) expect(fast).toStrictEqual(general);
      for (const problem of general.flatMap((document) => document.problems.map((p) => ({ index: document.index, ...p })))) {
        expect(errors).toContainEqual(expect.objectContaining({ source: { file: 'f.yaml', index: problem.index }, path: problem.path, message: problem.message }));
      }
    }
  });
});
