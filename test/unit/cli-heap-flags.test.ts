import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ONE_SHOT_HEAP_FLAGS, compactHeapFor } from '../../src/cli/heap-flags.js';

function flagsSetFor(command: string | undefined): string[] {
  const set: string[] = [];
  compactHeapFor(command, (flag) => set.push(flag));
  return set;
}

describe('V8 flags of the one-shot commands and the agent', () => {
  it('apply, diff, import and the agent run with the compact heap', () => {
    for (const command of ['apply', 'diff', 'import', 'agent']) expect(flagsSetFor(command), command).toEqual([...ONE_SHOT_HEAP_FLAGS]);
  });

  it('the other long-running commands, --help and no command keep V8 defaults', () => {
    for (const command of ['controller', 'mesh', 'monitor', 'hold-encap', 'crds', '--help', undefined]) expect(flagsSetFor(command), String(command)).toEqual([]);
  });

  it('every flag is one this node knows (setFlagsFromString ignores a misspelt one without a word)', () => {
    const run = spawnSync(process.execPath, [...ONE_SHOT_HEAP_FLAGS, '-e', '0'], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});
