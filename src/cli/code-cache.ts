/**
 * A V8 code cache for the bundle's long-running commands (see scripts/bundle.mjs). Node 20 has
 * no compile cache for modules (22 has), so `agent`, `controller` and `mesh` run from a CommonJS
 * script, dist/bundle/server.cjs, compiled with `vm.Script` and the bytecode V8 produced for it
 * after loading those commands' modules once (at build time, by ./produce-code-cache.ts): V8
 * then deserializes instead of parsing and compiling 2.3 MB, most of it the Kubernetes client.
 *
 * The cache is an optimisation only: absent, unreadable, for another script, another node or
 * V8 (the guest and the image run other node binaries than the build may), or corrupt, it is
 * ignored and V8 compiles the script from its source, as without a cache. It is never written
 * while a command runs (the chart's agent has a read-only root file system).
 *
 * File layout: MAGIC (8 bytes), the header's length (uint32 LE), the header (JSON: node, V8,
 * arch, SHA-256 of the script and of the payload), the payload (V8's cached data). V8 checks
 * its own version, flags and the source's length, but not the payload's integrity in release
 * builds, so a corrupted payload is caught here by its hash before V8 sees it.
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import vm from 'node:vm';

const MAGIC = Buffer.from('IPSOPCC1');

export interface CacheHeader {
  readonly node: string;
  readonly v8: string;
  readonly arch: string;
  readonly script: string;
  readonly payload: string;
}

/** What happened to the cache, for IPSEC_OPERATOR_CODE_CACHE_DEBUG and the tests. */
export type CacheOutcome = 'used' | 'absent' | 'corrupt' | 'other-node' | 'other-script' | 'rejected-by-v8';

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The header this node would write for `source`. */
function currentHeader(source: string, payload: Buffer): CacheHeader {
  return { node: process.version, v8: process.versions.v8, arch: process.arch, script: sha256(source), payload: sha256(payload) };
}

export function encodeCache(header: CacheHeader, payload: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  return Buffer.concat([MAGIC, length, json, payload]);
}

/** The header and payload of a cache file's bytes, or undefined when they are not one. */
export function decodeCache(bytes: Buffer): { header: CacheHeader; payload: Buffer } | undefined {
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const length = bytes.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4;
  if (start + length > bytes.length) return undefined;
  try {
    const header = JSON.parse(bytes.subarray(start, start + length).toString('utf8')) as CacheHeader;
    return { header, payload: bytes.subarray(start + length) };
  } catch {
    return undefined;
  }
}

/** CommonJS' module wrapper: the script is compiled as one function and called like a module. */
function wrap(source: string): string {
  return `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
}

function compile(file: string, source: string, cachedData: Buffer | undefined): vm.Script {
  return new vm.Script(wrap(source), {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
    // The script has no import() of its own (esbuild resolves them); should one appear, it
    // resolves as in the main context rather than failing.
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
}

function run(script: vm.Script, file: string): Record<string, unknown> {
  const module = { exports: {} as Record<string, unknown> };
  (script.runInThisContext() as (...args: unknown[]) => void)(module.exports, createRequire(file), module, file, dirname(file));
  return module.exports;
}

/** Which cached data to hand V8 for `source`, and why none if none. */
function usableCache(source: string, cacheFile: string): { payload?: Buffer; outcome: CacheOutcome } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(cacheFile);
  } catch {
    return { outcome: 'absent' };
  }
  const cache = decodeCache(bytes);
  if (!cache || cache.header.payload !== sha256(cache.payload)) return { outcome: 'corrupt' };
  const { header } = cache;
  if (header.node !== process.version || header.v8 !== process.versions.v8 || header.arch !== process.arch) return { outcome: 'other-node' };
  if (header.script !== sha256(source)) return { outcome: 'other-script' };
  return { payload: cache.payload, outcome: 'used' };
}

/**
 * Runs the CommonJS script `file` with the code cache `cacheFile` when it is valid for this
 * node and this script, from its source otherwise; returns its exports.
 */
export function runCachedScript(file: string, cacheFile: string): { exports: Record<string, unknown>; outcome: CacheOutcome } {
  const source = readFileSync(file, 'utf8');
  const { payload, outcome } = usableCache(source, cacheFile);
  const script = compile(file, source, payload);
  const final: CacheOutcome = payload && script.cachedDataRejected ? 'rejected-by-v8' : outcome;
  if (process.env['IPSEC_OPERATOR_CODE_CACHE_DEBUG']) process.stderr.write(`ipsec-operator: code cache ${cacheFile}: ${final}\n`);
  return { exports: run(script, file), outcome: final };
}

/**
 * Compiles and runs `file` in this process, awaits `warm(exports)` (which should load the
 * modules the cache is for, so that V8 compiles their code), and writes the code cache V8 then
 * holds to `cacheFile` (through a temporary file and a rename: a reader sees the old cache or
 * the new one). For a process of its own: the script's modules stay loaded.
 */
export async function produceCodeCache(file: string, cacheFile: string, warm: (exports: Record<string, unknown>) => Promise<void>): Promise<number> {
  const source = readFileSync(file, 'utf8');
  const script = compile(file, source, undefined);
  await warm(run(script, file));
  const payload = script.createCachedData();
  const temporary = `${cacheFile}.${process.pid}.tmp`;
  writeFileSync(temporary, encodeCache(currentHeader(source, payload), payload));
  renameSync(temporary, cacheFile);
  return payload.length;
}
