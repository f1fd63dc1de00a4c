/**
 * V8 flags for the one-shot commands that hold a whole node's tables at once (`apply`, `diff`,
 * `import`) and the agent, set at run time once the command's modules have loaded (./process.ts:
 * V8 accepts a code cache only under the flags it was made with). Issue 10 asks for a peak RSS of at
 * most 120 MB at 10,000 policies, and most of that peak was not live data: the heap live after
 * a full collection stays under 50 MB, but by V8's defaults the young generation grows to
 * 16 MB semi-spaces and the old generation grows by a large factor before it is collected.
 *
 * - `--optimize-for-size`: V8's own "favour memory over speed" mode; it grows the old
 *   generation by the smallest factor (so garbage is collected before the heap grows), and it is
 *   read while the process runs, unlike the heap sizes fixed when the isolate starts.
 * - `--semi-space-growth-factor=1`: the young generation stays at the size it starts with (it
 *   is read each time V8 would grow it); `--max-semi-space-size` itself cannot be changed once
 *   the process runs.
 *
 * V8 leaves flags changed after start without a promise: these two ran through every CLI phase
 * of bench:xfrm and the unit suite; GC threading flags set the same way (`--single-threaded-gc`)
 * abort the process at the next collection (tried), so add nothing here unmeasured.
 *
 * Measured with `npm run bench:xfrm -- --no-vm` (README "## Performance") and, for the agent,
 * `npm run bench:agent`. The other long-running commands keep V8's defaults: their working set
 * and pauses were not measured with these.
 */
import { setFlagsFromString } from 'node:v8';

/**
 * The agent too (issue 10: ≤ 100 MB at 10,000 SAs + 10,000 policies): its heap live after a
 * full collection was 66 MB halfway through a 10,000-policy apply while its RSS was 345 MB — the
 * rest garbage the default growth let accumulate between collections (bench:agent, README
 * "The agent: `npm run bench:agent`", with its CPU cost).
 */
const COMPACT_HEAP_COMMANDS: ReadonlySet<string> = new Set(['apply', 'diff', 'import', 'agent']);
export const ONE_SHOT_HEAP_FLAGS = ['--optimize-for-size', '--semi-space-growth-factor=1'] as const;

/** Sets the flags when `command` is one of the one-shot commands; returns whether it did. */
export function compactHeapFor(command: string | undefined, set: (flag: string) => void = setFlagsFromString): boolean {
  if (command === undefined || !COMPACT_HEAP_COMMANDS.has(command)) return false;
  for (const flag of ONE_SHOT_HEAP_FLAGS) set(flag);
  return true;
}
