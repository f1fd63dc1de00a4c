/**
 * What the agent reads about its kernel besides the XFRM tables: the XFRM error counters of
 * its network namespace, and which IPsec algorithms the crypto API offers right now.
 */
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ALGORITHMS, type AlgorithmKind } from '../model/algorithms.js';
import { parseXfrmStat } from './agent-metrics.js';

const run = promisify(execFile);

/**
 * /proc/net/xfrm_stat of the namespace. /proc/net shows the reading process's namespace, so a
 * named namespace (tests) is read through `ip netns exec`.
 */
export async function readXfrmStat(netns: string | undefined): Promise<Map<string, number>> {
  const text =
    netns === undefined
      ? await readFile('/proc/net/xfrm_stat', 'utf8')
      : (await run('ip', ['netns', 'exec', netns, 'cat', '/proc/net/xfrm_stat'])).stdout;
  return parseXfrmStat(text);
}

/**
 * The algorithms of our table that /proc/crypto lists (loaded and self-tested). Templates such
 * as rfc4106(gcm(aes)) appear once first used, so this is what the kernel has shown it can do,
 * not everything its modules could load.
 */
export async function supportedAlgorithms(): Promise<Record<AlgorithmKind, string[]>> {
  const text = await readFile('/proc/crypto', 'utf8').catch(() => '');
  const names = new Set([...text.matchAll(/^(?:name|driver)\s*:\s*(\S+)/gm)].map((match) => match[1]!));
  const result: Record<AlgorithmKind, string[]> = { aead: [], cipher: [], auth: [], compression: [] };
  for (const spec of ALGORITHMS) if (names.has(spec.name)) result[spec.kind].push(spec.name);
  return result;
}
