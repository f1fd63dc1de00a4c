/**
 * Every layout table against the C headers of this machine: a probe program compiled with gcc
 * prints sizeof/offsetof of each struct and field and the value of each constant, and byte order
 * is read from the declared types (__be16/__be32) in the header text. This reads headers only
 * (no kernel, no privileges), so it belongs to the unit layer.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as netlinkConstants from '../../src/netlink/constants.js';
import { nlattr, nlmsgerr, nlmsghdr } from '../../src/netlink/headers.js';
import type { StructLayout } from '../../src/netlink/layout.js';
import * as xfrmConstants from '../../src/xfrm/abi/constants.js';
import { XFRM_LAYOUTS, xfrm_address_t } from '../../src/xfrm/abi/structs.js';

const LAYOUTS: readonly StructLayout<object>[] = [...XFRM_LAYOUTS, nlmsghdr, nlmsgerr, nlattr];

/** Our own constants that are not in this machine's headers, with why. */
const NOT_IN_HEADERS = new Set([
  'XFRMA_SA_DIR', // Linux 6.10, newer than these headers: checked as XFRMA_MTIMER_THRESH + 1 below
  'XFRM_SA_DIR_IN', // same
  'XFRM_SA_DIR_OUT',
  'XFRM_MAX_DEPTH', // include/net/xfrm.h, kernel-internal
  'XFRM_LEGACY_REPLAY_WINDOW_MAX', // ours: 8 * sizeof(struct xfrm_replay_state.bitmap), checked below
  'NLMSGERR_SIZE', // ours: sizeof(struct nlmsgerr), checked below
]);

function numericExports(module: Record<string, unknown>): Array<[string, number]> {
  return Object.entries(module).filter((entry): entry is [string, number] => typeof entry[1] === 'number');
}

const CONSTANTS = [...numericExports(xfrmConstants), ...numericExports(netlinkConstants)].filter(
  ([name]) => !NOT_IN_HEADERS.has(name),
);

function probeSource(): string {
  const lines: string[] = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <sys/socket.h>',
    '#include <netinet/in.h>',
    '#include <linux/netlink.h>',
    '#include <linux/xfrm.h>',
    '#include <linux/ipsec.h>',
    '#include <linux/udp.h>',
    'int main(void) {',
    '  printf("sizeof xfrm_address_t %zu\\n", sizeof(xfrm_address_t));',
    '  printf("sizeof xfrm_replay_state.bitmap %zu\\n", sizeof(((struct xfrm_replay_state *)0)->bitmap));',
  ];
  for (const layout of LAYOUTS) {
    const c = `struct ${layout.cName}`;
    lines.push(`  printf("sizeof ${layout.cName} %zu\\n", sizeof(${c}));`);
    for (const row of layout.rows) {
      lines.push(`  printf("offsetof ${layout.cName}.${row.name} %zu\\n", offsetof(${c}, ${row.name}));`);
      lines.push(`  printf("sizeof ${layout.cName}.${row.name} %zu\\n", sizeof(((${c} *)0)->${row.name}));`);
    }
    if (layout.flexibleArray) {
      const name = layout.flexibleArray.name;
      lines.push(`  printf("offsetof ${layout.cName}.${name} %zu\\n", offsetof(${c}, ${name}));`);
    }
  }
  for (const [name] of CONSTANTS) {
    // NLA_TYPE_MASK is an int expression (~(...)); it masks the 16-bit nla_type.
    const expression = name === 'NLA_TYPE_MASK' ? `(unsigned short)(${name})` : name;
    lines.push(`  printf("const ${name} %ld\\n", (long)(${expression}));`);
  }
  lines.push('  return 0;', '}');
  return lines.join('\n');
}

let probe: Map<string, number>;
let workDir: string;

beforeAll(() => {
  workDir = mkdtempSync(join(tmpdir(), 'ipsecop-layout-'));
  const source = join(workDir, 'probe.c');
  const binary = join(workDir, 'probe');
  writeFileSync(source, probeSource());
  execFileSync('gcc', ['-Wall', '-Werror', '-o', binary, source], { stdio: 'pipe' });
  const output = execFileSync(binary, { encoding: 'utf8' });
  probe = new Map(
    output
      .trim()
      .split('\n')
      .map((line) => {
        const parts = line.split(' ');
        return [`${parts[0]} ${parts[1]}`, Number(parts[2])] as const;
      }),
  );
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

function measured(key: string): number {
  const value = probe.get(key);
  if (value === undefined) throw new Error(`probe printed nothing for ${key}`);
  return value;
}

describe('layout tables match the C headers', () => {
  it('xfrm_address_t is 16 bytes', () => {
    expect(xfrm_address_t.size).toBe(measured('sizeof xfrm_address_t'));
  });

  for (const layout of LAYOUTS) {
    it(`struct ${layout.cName}: sizeof and every field's offset and size`, () => {
      const expected = [`sizeof ${layout.size}`];
      const actual = [`sizeof ${measured(`sizeof ${layout.cName}`)}`];
      for (const row of layout.rows) {
        expected.push(`${row.name} @${row.offset} +${row.size}`);
        actual.push(
          `${row.name} @${measured(`offsetof ${layout.cName}.${row.name}`)} +${measured(`sizeof ${layout.cName}.${row.name}`)}`,
        );
      }
      if (layout.flexibleArray) {
        expected.push(`${layout.flexibleArray.name}[] @${layout.flexibleArray.offset}`);
        actual.push(`${layout.flexibleArray.name}[] @${measured(`offsetof ${layout.cName}.${layout.flexibleArray.name}`)}`);
      }
      expect(expected).toEqual(actual);
    });
  }

  it('covers every field the header declares in each struct (no field forgotten)', () => {
    const headers = [readFileSync('/usr/include/linux/xfrm.h', 'utf8'), readFileSync('/usr/include/linux/netlink.h', 'utf8')];
    for (const layout of LAYOUTS) {
      const declared = declaredFields(headers, layout.cName);
      const ours = [...layout.rows.map((row) => row.name), ...(layout.flexibleArray ? [layout.flexibleArray.name] : [])];
      expect({ struct: layout.cName, fields: ours.sort() }).toEqual({ struct: layout.cName, fields: declared.map((d) => d.name).sort() });
    }
  });

  it('byte order: exactly the fields declared __be16/__be32 are big-endian', () => {
    const headers = [readFileSync('/usr/include/linux/xfrm.h', 'utf8'), readFileSync('/usr/include/linux/netlink.h', 'utf8')];
    for (const layout of LAYOUTS) {
      const declared = new Map(declaredFields(headers, layout.cName).map((d) => [d.name, d.type]));
      for (const row of layout.rows) {
        const type = declared.get(row.name) ?? '';
        const bigEndian = /^__be(16|32|64)$/.test(type);
        expect({ field: `${layout.cName}.${row.name}`, type, bigEndian }).toEqual({
          field: `${layout.cName}.${row.name}`,
          type,
          bigEndian: row.byteOrder === 'big',
        });
      }
    }
  });
});

describe('constants match the headers', () => {
  for (const [name, value] of CONSTANTS) {
    it(`${name} = ${value}`, () => {
      expect(measured(`const ${name}`)).toBe(value);
    });
  }

  it('XFRMA_SA_DIR is the attribute after XFRMA_MTIMER_THRESH (enum xfrm_attr_type_t, Linux 6.10)', () => {
    expect(xfrmConstants.XFRMA_SA_DIR).toBe(measured('const XFRMA_MTIMER_THRESH') + 1);
  });

  it('the legacy replay window is the bit width of xfrm_replay_state.bitmap', () => {
    expect(xfrmConstants.XFRM_LEGACY_REPLAY_WINDOW_MAX).toBe(8 * measured('sizeof xfrm_replay_state.bitmap'));
  });

  it('NLMSGERR_SIZE is sizeof(struct nlmsgerr)', () => {
    expect(netlinkConstants.NLMSGERR_SIZE).toBe(measured('sizeof nlmsgerr'));
  });
});

/** The fields of `struct name { ... };` in the header text, with their declared types. */
function declaredFields(headers: readonly string[], name: string): Array<{ name: string; type: string }> {
  for (const header of headers) {
    const start = header.search(new RegExp(`struct ${name}\\s*\\{`));
    if (start === -1) continue;
    const open = header.indexOf('{', start);
    let depth = 0;
    let end = open;
    for (let i = open; i < header.length; i += 1) {
      if (header[i] === '{') depth += 1;
      if (header[i] === '}') depth -= 1;
      if (depth === 0) {
        end = i;
        break;
      }
    }
    const body = header
      .slice(open + 1, end)
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .split('\n')
      .filter((line) => !line.trim().startsWith('#'))
      .join('\n');
    const fields: Array<{ name: string; type: string }> = [];
    for (const statement of body.split(';')) {
      const text = statement.trim().replace(/\s+/g, ' ');
      if (text === '') continue;
      const match = /^(.*?)\s*\b(\w+)\s*(\[[^\]]*\])?$/.exec(text);
      if (!match?.[1] || !match[2]) throw new Error(`cannot read declaration "${text}" in struct ${name}`);
      fields.push({ type: match[1].trim(), name: match[2] });
    }
    return fields;
  }
  throw new Error(`struct ${name} not found in the headers`);
}
