/**
 * The mesh's private state on one node: its X25519 private keys per generation and its local
 * rotation state (SPI allocations, generation stamps), in one JSON file per mesh under the
 * agent's state directory: `<state-dir>/mesh/<mesh uid>.json`, mode 0600, in a 0700 directory.
 *
 * Private keys never leave this file and the process: they are not logged, not sent, not in any
 * status. Writes go through `replaceFile` (temporary, fsync, rename, directory fsync), so a
 * crash leaves the old or the new state; the rotation state machine's next state is written
 * before anything it implies is applied, so a restarted agent resumes a rotation where it was.
 * A file readable by anyone but its owner is refused: its keys may have leaked, and the fix
 * (remove the file; the node rekeys with every peer) is the operator's call.
 */
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { ensureDirectory, replaceFile } from '../ownership/durable-file.js';
import { KeyMaterial } from '../xfrm/key-material.js';
import type { MeshIdentity } from './derive.js';
import type { MeshLocalState } from './types.js';
import { EMPTY_LOCAL_STATE } from './types.js';
import { x25519PublicKey, X25519_KEY_LENGTH, type X25519KeyPair } from './x25519.js';

const FORMAT_VERSION = 1;

interface StoredFile {
  readonly version: number;
  readonly mesh: MeshIdentity;
  /** The node whose keys these are (absent in files written before it was recorded). */
  readonly node?: string;
  readonly state: MeshLocalState;
  /** The last rotation request acted on (absent before the first). */
  readonly rotation?: RotationRecord;
  readonly keys: readonly { readonly generation: number; readonly privateKey: string }[];
}

/**
 * The last rotation request this node acted on, kept with the generation it made so that a
 * restarted agent never acts on one request twice (src/crd/mesh-contract.ts MeshRotationProgress).
 */
export interface RotationRecord {
  readonly requestId: string;
  readonly state: 'Rotating' | 'Done';
  readonly generation: number;
  /** RFC 3339. */
  readonly startedAt: string;
  readonly completedAt?: string;
}

export class MeshKeyStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshKeyStoreError';
  }
}

export function meshStatePath(stateDirectory: string, mesh: MeshIdentity): string {
  if (!/^[A-Za-z0-9-]+$/.test(mesh.uid)) throw new MeshKeyStoreError(`mesh uid "${mesh.uid}" is not a Kubernetes uid`);
  return join(stateDirectory, 'mesh', `${mesh.uid}.json`);
}

export class MeshKeyStore {
  readonly path: string;
  readonly mesh: MeshIdentity;
  readonly node: string | undefined;
  #state: MeshLocalState;
  #rotation: RotationRecord | undefined;
  readonly #keys = new Map<number, KeyMaterial>();
  readonly #publicKeys = new Map<number, string>();

  private constructor(path: string, mesh: MeshIdentity, node: string | undefined, state: MeshLocalState, keys: ReadonlyMap<number, KeyMaterial>, rotation?: RotationRecord) {
    this.path = path;
    this.mesh = mesh;
    this.node = node;
    this.#state = state;
    this.#rotation = rotation;
    for (const [generation, key] of keys) this.#keys.set(generation, key);
  }

  /**
   * Opens (or starts empty) the state of `mesh` under `stateDirectory`, for `node`: the file
   * records its node, and a file of another node is refused. Two agents given one state
   * directory would otherwise take each other's key pairs at a restart (the file is named by the
   * mesh alone) and publish a public key whose private key another node also holds.
   */
  static async open(stateDirectory: string, mesh: MeshIdentity, node?: string): Promise<MeshKeyStore> {
    const path = meshStatePath(stateDirectory, mesh);
    await ensureDirectory(join(stateDirectory, 'mesh'));
    const text = await readPrivate(path);
    if (text === undefined) return new MeshKeyStore(path, mesh, node, EMPTY_LOCAL_STATE, new Map());
    const stored = parse(text, path);
    if (stored.mesh.uid !== mesh.uid) throw new MeshKeyStoreError(`${path} belongs to mesh uid ${stored.mesh.uid}, not ${mesh.uid}`);
    if (node !== undefined && stored.node !== undefined && stored.node !== node) {
      throw new MeshKeyStoreError(
        `the mesh key store ${path} belongs to node ${stored.node}, not ${node}: two agents share the state directory ${stateDirectory}; give each agent its own --state-dir (nothing was changed)`,
      );
    }
    const keys = new Map<number, KeyMaterial>();
    for (const entry of stored.keys) {
      const bytes = Buffer.from(entry.privateKey, 'base64');
      if (bytes.length !== X25519_KEY_LENGTH) throw new MeshKeyStoreError(`${path}: the private key of generation ${entry.generation} is not ${X25519_KEY_LENGTH} bytes`);
      keys.set(entry.generation, KeyMaterial.fromBytes(bytes));
      bytes.fill(0);
    }
    for (const generation of stored.state.generations) {
      if (!keys.has(generation.generation)) throw new MeshKeyStoreError(`${path}: generation ${generation.generation} has no private key`);
    }
    return new MeshKeyStore(path, mesh, node ?? stored.node, stored.state, keys, stored.rotation);
  }

  get state(): MeshLocalState {
    return this.#state;
  }

  get rotation(): RotationRecord | undefined {
    return this.#rotation;
  }

  privateKey(generation: number): KeyMaterial {
    const key = this.#keys.get(generation);
    if (!key) throw new MeshKeyStoreError(`mesh ${this.mesh.name}: no private key for generation ${generation}`);
    return key;
  }

  /** Base64 raw public key of an own generation. */
  publicKey(generation: number): string {
    let cached = this.#publicKeys.get(generation);
    if (cached === undefined) {
      cached = x25519PublicKey(this.privateKey(generation)).toString('base64');
      this.#publicKeys.set(generation, cached);
    }
    return cached;
  }

  /** Stores the key pair of a new generation together with the state that names it. */
  async addGeneration(generation: number, pair: X25519KeyPair, state: MeshLocalState, rotation: RotationRecord | undefined = this.#rotation): Promise<void> {
    if (this.#keys.has(generation)) throw new MeshKeyStoreError(`mesh ${this.mesh.name}: generation ${generation} exists already`);
    if (!state.generations.some((g) => g.generation === generation)) throw new MeshKeyStoreError(`mesh ${this.mesh.name}: the new state does not name generation ${generation}`);
    const keys = new Map(this.#keys).set(generation, pair.privateKey);
    await this.#write(state, keys, rotation);
  }

  /** Persists `state` (and `rotation`); private keys of generations it no longer names are deleted. */
  async save(state: MeshLocalState, rotation: RotationRecord | undefined = this.#rotation): Promise<void> {
    await this.#write(state, this.#keys, rotation);
  }

  /** Deletes the file (the node left the mesh and nothing of it is left): its private keys are gone. */
  async remove(): Promise<void> {
    await rm(this.path, { force: true });
    this.#keys.clear();
    this.#publicKeys.clear();
    this.#state = EMPTY_LOCAL_STATE;
    this.#rotation = undefined;
  }

  async #write(state: MeshLocalState, keys: ReadonlyMap<number, KeyMaterial>, rotation: RotationRecord | undefined): Promise<void> {
    const named = new Set(state.generations.map((g) => g.generation));
    for (const generation of named) {
      if (!keys.has(generation)) throw new MeshKeyStoreError(`mesh ${this.mesh.name}: generation ${generation} has no private key`);
    }
    const kept = [...keys].filter(([generation]) => named.has(generation)).sort(([a], [b]) => a - b);
    const file: StoredFile = {
      version: FORMAT_VERSION,
      mesh: this.mesh,
      ...(this.node !== undefined ? { node: this.node } : {}),
      state,
      ...(rotation !== undefined ? { rotation } : {}),
      keys: kept.map(([generation, key]) => ({ generation, privateKey: key.reveal().toString('base64') })),
    };
    await replaceFile(this.path, `${JSON.stringify(file, null, 1)}\n`, { mode: 0o600, what: `writing the mesh key store ${this.path}` });
    this.#state = state;
    this.#rotation = rotation;
    this.#keys.clear();
    for (const [generation, key] of kept) this.#keys.set(generation, key);
    for (const generation of [...this.#publicKeys.keys()]) if (!named.has(generation)) this.#publicKeys.delete(generation);
  }
}

async function readPrivate(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MeshKeyStoreError(`cannot open the mesh key store ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const { mode } = await handle.stat();
    if ((mode & 0o077) !== 0) {
      throw new MeshKeyStoreError(
        `the mesh key store ${path} has mode ${(mode & 0o777).toString(8)}: it holds private keys and must be 600; its keys may have been read, so remove it (the node then rekeys with every peer) rather than chmod it`,
      );
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

function parse(text: string, path: string): StoredFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse quotes the input around the error: it must not reach a log with key bytes.
    throw new MeshKeyStoreError(`the mesh key store ${path} is not valid JSON (damaged; remove it and the node rekeys with every peer)`);
  }
  const file = value as Partial<StoredFile>;
  if (file?.version !== FORMAT_VERSION) throw new MeshKeyStoreError(`the mesh key store ${path} has format version ${String(file?.version)}, this agent reads ${FORMAT_VERSION}`);
  if (!file.mesh || !file.state || !Array.isArray(file.keys) || !Array.isArray(file.state.generations) || !Array.isArray(file.state.allocations)) {
    throw new MeshKeyStoreError(`the mesh key store ${path} is incomplete (damaged; remove it and the node rekeys with every peer)`);
  }
  return file as StoredFile;
}
