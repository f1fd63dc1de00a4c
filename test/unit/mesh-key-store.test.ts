import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { MeshKeyStore, meshStatePath } from '../../src/mesh/key-store.js';
import { startRotation } from '../../src/mesh/rotation.js';
import { EMPTY_LOCAL_STATE } from '../../src/mesh/types.js';
import { generateX25519KeyPair } from '../../src/mesh/x25519.js';

const mesh = { name: 'cluster', uid: '0b5a7f4e-1111-4222-8333-444455556666' };
let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'mesh-store-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function storeWithGeneration(now = 1000): Promise<{ store: MeshKeyStore; privateHex: string; publicKey: Buffer }> {
  const store = await MeshKeyStore.open(directory, mesh);
  const started = startRotation(store.state, now);
  if (!started.ok) throw new Error(started.reason);
  const pair = generateX25519KeyPair();
  await store.addGeneration(started.generation, pair, started.local);
  return { store, privateHex: pair.privateKey.reveal().toString('hex'), publicKey: pair.publicKey };
}

describe('mesh key store', () => {
  it('starts empty, persists a generation with mode 0600 in a 0700 directory, and reads it back', async () => {
    const empty = await MeshKeyStore.open(directory, mesh);
    expect(empty.state).toEqual(EMPTY_LOCAL_STATE);
    const { privateHex, publicKey } = await storeWithGeneration();
    const path = meshStatePath(directory, mesh);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(directory, 'mesh'))).mode & 0o777).toBe(0o700);
    const reopened = await MeshKeyStore.open(directory, mesh);
    expect(reopened.state.generations.map((g) => g.generation)).toEqual([1]);
    expect(reopened.privateKey(1).reveal().toString('hex')).toBe(privateHex);
    expect(reopened.publicKey(1)).toBe(publicKey.toString('base64'));
    expect(await readdir(join(directory, 'mesh'))).toEqual([`${mesh.uid}.json`]); // no temporaries left
  });

  it('deletes the private key of a generation the state no longer names', async () => {
    const { store, privateHex } = await storeWithGeneration();
    await store.save(EMPTY_LOCAL_STATE);
    const text = await readFile(meshStatePath(directory, mesh), 'utf8');
    expect(text).not.toContain(Buffer.from(privateHex, 'hex').toString('base64'));
    const reopened = await MeshKeyStore.open(directory, mesh);
    expect(() => reopened.privateKey(1)).toThrow(/no private key for generation 1/);
  });

  it('refuses a key file readable by others, saying why and what to do', async () => {
    await storeWithGeneration();
    await chmod(meshStatePath(directory, mesh), 0o644);
    await expect(MeshKeyStore.open(directory, mesh)).rejects.toThrow(/mode 644: it holds private keys and must be 600.*remove it/);
  });

  it('refuses damaged files without quoting their contents', async () => {
    const { privateHex } = await storeWithGeneration();
    const path = meshStatePath(directory, mesh);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, text.length - 20), { mode: 0o600 });
    const error = await MeshKeyStore.open(directory, mesh).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(/not valid JSON/);
    expect(error?.message).not.toContain(Buffer.from(privateHex, 'hex').toString('base64').slice(0, 8));
  });

  it('refuses a state that names a generation without a key, and a second pair for one generation', async () => {
    const { store } = await storeWithGeneration();
    const started = startRotation({ ...store.state, generations: store.state.generations.map((g) => ({ ...g, publishedAt: 1 })) }, 2000);
    if (!started.ok) throw new Error(started.reason);
    await expect(store.save(started.local)).rejects.toThrow(/generation 2 has no private key/);
    await expect(store.addGeneration(1, generateX25519KeyPair(), store.state)).rejects.toThrow(/generation 1 exists already/);
  });

  it("refuses another node's file (two agents given one state directory), saying what to do, and leaves it as it was", async () => {
    const store = await MeshKeyStore.open(directory, mesh, 'node-a');
    const started = startRotation(store.state, 1000);
    if (!started.ok) throw new Error(started.reason);
    const pair = generateX25519KeyPair();
    await store.addGeneration(started.generation, pair, started.local);
    const before = await readFile(meshStatePath(directory, mesh), 'utf8');
    const error = await MeshKeyStore.open(directory, mesh, 'node-b').then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(/belongs to node node-a, not node-b: two agents share the state directory .*give each agent its own --state-dir/);
    expect(error?.message).not.toContain(pair.privateKey.reveal().toString('base64').slice(0, 8));
    expect(await readFile(meshStatePath(directory, mesh), 'utf8')).toBe(before);
    // Its own node reads it back; a file from before nodes were recorded is taken and then records the node.
    expect((await MeshKeyStore.open(directory, mesh, 'node-a')).state.generations).toHaveLength(1);
    const legacy = JSON.parse(before) as Record<string, unknown>;
    delete legacy.node;
    await writeFile(meshStatePath(directory, mesh), JSON.stringify(legacy), { mode: 0o600 });
    const adopted = await MeshKeyStore.open(directory, mesh, 'node-b');
    await adopted.save(adopted.state);
    await expect(MeshKeyStore.open(directory, mesh, 'node-a')).rejects.toThrow(/belongs to node node-b, not node-a/);
  });

  it('refuses a file of another mesh and a uid that is not one', async () => {
    await storeWithGeneration();
    await expect(MeshKeyStore.open(directory, { name: 'x', uid: '../../etc' })).rejects.toThrow(/not a Kubernetes uid/);
  });
});
