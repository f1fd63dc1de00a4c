/**
 * What a zero-loss proof reads (the mesh and rotation tests): the numbered traffic's summaries
 * (test/infra/vm/guest/traffic-node.mjs), the SAs' outbound counters from `ip -s xfrm state`
 * dumps taken through a run, the kernel's XFRM error counters, and a scan of text for key bytes.
 *
 * Keys are handled here only as hashes and only to compare: nothing in this module returns,
 * prints or throws a key (a proof that finds a leak must not be one).
 */
import { createHash } from 'node:crypto';

// ---- numbered traffic ----

export interface TrafficSummary {
  readonly self: string;
  readonly sent: Readonly<Record<string, number>>;
  readonly received: Readonly<Record<string, { unique: number; duplicates: number; highest: number; missing: readonly number[] }>>;
}

/** One direction of one pair, as both ends saw it. */
export interface DirectionCount {
  readonly from: string;
  readonly to: string;
  readonly sent: number;
  readonly received: number;
  readonly lost: number;
  readonly duplicates: number;
  /** The first numbers the receiver never got (up to 64). */
  readonly missing: readonly number[];
}

/** The last JSON line of a traffic node's output. */
export function parseTrafficSummary(stdout: string): TrafficSummary {
  const line = stdout.trim().split('\n').reverse().find((candidate) => candidate.startsWith('{'));
  if (!line) throw new Error(`no traffic summary in the traffic node's output:\n${stdout.slice(-2000)}`);
  return JSON.parse(line) as TrafficSummary;
}

/** Every direction between the summaries' nodes: what the sender sent against what the receiver counted. */
export function directionCounts(summaries: readonly TrafficSummary[]): DirectionCount[] {
  const bySelf = new Map(summaries.map((summary) => [summary.self, summary]));
  const out: DirectionCount[] = [];
  for (const sender of summaries) {
    for (const [to, sent] of Object.entries(sender.sent)) {
      const receiver = bySelf.get(to);
      if (!receiver) throw new Error(`no traffic summary from ${to}, which ${sender.self} sent to`);
      const seen = receiver.received[sender.self];
      if (!seen) throw new Error(`${to} did not count traffic from ${sender.self}`);
      out.push({ from: sender.self, to, sent, received: seen.unique, lost: sent - seen.unique, duplicates: seen.duplicates, missing: seen.missing });
    }
  }
  return out;
}

// ---- SA dumps ----

/** An SA as `ip -s xfrm state` shows it, its key reduced to a hash. */
export interface DumpedState {
  readonly source: string;
  readonly destination: string;
  readonly protocol: string;
  readonly spi: number;
  /** 'transport', 'tunnel', ... as iproute2 prints it ('' if the block names none). */
  readonly mode: string;
  /** sha256 of every key of the SA in dump order (aead, or enc + auth), hex; '' without keys. */
  readonly keyHash: string;
  /** The outbound counter (ESN: oseq-hi << 32 | oseq). */
  readonly outboundSequence: bigint;
  /** Packets the SA processed (`lifetime current: ... (packets)`): sent if outbound, decrypted if inbound; -1 without the line. */
  readonly packets: bigint;
}

const KEY_LINE = /^\s+(?:aead|enc|auth|auth-trunc|comp)\s+\S+\s+0x([0-9a-f]+)/;

/** The SAs of one `ip -s xfrm state` dump (iproute2's text format). */
export function parseStateDump(text: string): DumpedState[] {
  const blocks = text.split(/^(?=src )/m).filter((block) => block.startsWith('src '));
  return blocks.map((block) => {
    const head = /^src (\S+) dst (\S+)/.exec(block);
    const id = /proto (\S+) spi (0x[0-9a-f]+)/.exec(block);
    if (!head || !id) throw new Error(`an SA block without src/dst/proto/spi:\n${redactKeys(block)}`);
    const keys = block.split('\n').flatMap((line) => KEY_LINE.exec(line)?.[1] ?? []);
    const esn = /oseq-hi (0x[0-9a-f]+), oseq (0x[0-9a-f]+)/.exec(block);
    const legacy = /oseq (0x[0-9a-f]+)/.exec(block);
    const current = /(\d+)\(bytes\), (\d+)\(packets\)/.exec(block);
    const outboundSequence = esn ? (BigInt(esn[1]!) << 32n) | BigInt(esn[2]!) : legacy ? BigInt(legacy[1]!) : -1n;
    return {
      source: head[1]!,
      destination: head[2]!,
      protocol: id[1]!,
      spi: Number.parseInt(id[2]!, 16),
      mode: / mode (\S+)/.exec(block)?.[1] ?? '',
      keyHash: keys.length === 0 ? '' : createHash('sha256').update(keys.join('/')).digest('hex'),
      outboundSequence,
      packets: current ? BigInt(current[2]!) : -1n,
    };
  });
}

/** The key bytes of every SA of a dump, for scanKeys. Never print what this returns. */
export function dumpedKeys(text: string): Buffer[] {
  return text.split('\n').flatMap((line) => {
    const hex = KEY_LINE.exec(line)?.[1];
    return hex ? [Buffer.from(hex, 'hex')] : [];
  });
}

function redactKeys(text: string): string {
  return text.replace(/0x[0-9a-f]{16,}/g, '0x<key>');
}

/** A (key, SPI) whose outbound counter went back: the same key sending sequence numbers (nonces) again. */
export interface SequenceRestart {
  readonly node: string;
  readonly spi: number;
  readonly destination: string;
  readonly before: bigint;
  readonly after: bigint;
  readonly sample: number;
}

/**
 * Follows the outbound counters of every (key, SPI, destination) through dumps taken in order,
 * per node, across SA removals and re-additions: a counter lower than one seen before for the
 * same key and SPI is a restart, whether or not the SA was gone in between.
 */
export class SequenceTracker {
  readonly #highest = new Map<string, bigint>();
  readonly restarts: SequenceRestart[] = [];
  samples = 0;
  /** (key, SPI) pairs seen, across nodes. */
  readonly pairs = new Set<string>();
  /** Per node, mode, source and destination: the highest packet counter of each (key, SPI) seen. */
  readonly #packets = new Map<string, Map<string, bigint>>();

  observe(node: string, dump: string): void {
    this.samples += 1;
    for (const state of parseStateDump(dump)) {
      if (state.keyHash !== '' && state.packets >= 0n) {
        const route = `${node}|${state.mode}|${state.source}|${state.destination}`;
        const perSa = this.#packets.get(route) ?? new Map<string, bigint>();
        const sa = `${state.protocol}|${state.spi}|${state.keyHash}`;
        if (state.packets > (perSa.get(sa) ?? -1n)) perSa.set(sa, state.packets);
        this.#packets.set(route, perSa);
      }
      if (state.keyHash === '' || state.outboundSequence < 0n) continue;
      const key = `${node}|${state.destination}|${state.protocol}|${state.spi}|${state.keyHash}`;
      this.pairs.add(`${state.spi}|${state.keyHash}`);
      const before = this.#highest.get(key);
      if (before !== undefined && state.outboundSequence < before) {
        this.restarts.push({ node, spi: state.spi, destination: state.destination, before, after: state.outboundSequence, sample: this.samples });
      }
      if (before === undefined || state.outboundSequence > before) this.#highest.set(key, state.outboundSequence);
    }
  }

  /**
   * Packets the `mode` SAs from `source` to `destination` in `node`'s dumps processed: the highest
   * counter each (key, SPI) showed, summed over all of them (a rotation spreads a direction's
   * traffic over several). At the receiver, the packets it decrypted; at least the datagrams
   * it got says they all came through ESP (packets sent before the first dump of an SA count too).
   */
  carried(node: string, mode: string, source: string, destination: string): bigint {
    let total = 0n;
    for (const packets of this.#packets.get(`${node}|${mode}|${source}|${destination}`)?.values() ?? []) total += packets;
    return total;
  }
}

// ---- the kernel's XFRM counters ----

/** /proc/net/xfrm_stat of a namespace: counter name → value. */
export function parseXfrmStat(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(Xfrm\w+)\s+(\d+)$/.exec(line.trim());
    if (match) out.set(match[1]!, Number(match[2]));
  }
  return out;
}

/** Counters that changed between two readings: name → increase. */
export function xfrmStatIncrease(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, value] of after) {
    const increase = value - (before.get(name) ?? 0);
    if (increase !== 0) out.set(name, increase);
  }
  return out;
}

// ---- key bytes in text ----

/** Where a key was found: the source's name and the encoding. Never the key. */
export interface KeyFinding {
  readonly source: string;
  readonly encoding: 'hex' | 'HEX' | 'base64' | 'base64url' | 'raw';
  /** Index of the key in the list given to scanKeys. */
  readonly key: number;
}

/** Bytes of a key long enough to identify it (a fragment of this many bytes counts as a leak). */
export const KEY_FRAGMENT_BYTES = 12;

/**
 * Looks for every key, and every KEY_FRAGMENT_BYTES-byte window of it, in each source's text:
 * as lowercase and uppercase hex, base64 (standard and URL alphabets, at each byte alignment of
 * the window, so a key embedded in a longer base64 string is found) and as raw bytes.
 */
export function scanKeys(keys: readonly Buffer[], sources: ReadonlyMap<string, string | Buffer>): KeyFinding[] {
  const findings: KeyFinding[] = [];
  keys.forEach((key, index) => {
    const windows: Buffer[] = [];
    for (let start = 0; start + KEY_FRAGMENT_BYTES <= key.length; start += 1) windows.push(key.subarray(start, start + KEY_FRAGMENT_BYTES));
    if (windows.length === 0) windows.push(key);
    const needles: { encoding: KeyFinding['encoding']; text: string | Buffer }[] = [];
    for (const window of windows) {
      needles.push({ encoding: 'hex', text: window.toString('hex') }, { encoding: 'HEX', text: window.toString('hex').toUpperCase() }, { encoding: 'raw', text: window });
      // base64 of the window at the three alignments it can have inside a longer encoding; the
      // characters that depend on neighbouring bytes are dropped.
      for (let shift = 0; shift < 3; shift += 1) {
        const padded = Buffer.concat([Buffer.alloc(shift), window]);
        const encoded = padded.toString('base64');
        const firstFull = Math.ceil((shift * 4) / 3);
        const lastFull = Math.floor(((shift + window.length) * 4) / 3);
        const core = encoded.slice(firstFull + 1, lastFull - 1);
        if (core.length >= 12) {
          needles.push({ encoding: 'base64', text: core }, { encoding: 'base64url', text: core.replace(/\+/g, '-').replace(/\//g, '_') });
        }
      }
    }
    for (const [source, content] of sources) {
      const haystack = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
      const found = needles.find((needle) => haystack.includes(needle.text));
      if (found) findings.push({ source, encoding: found.encoding, key: index });
    }
  });
  return findings;
}
