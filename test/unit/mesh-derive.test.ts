import { describe, expect, it } from 'vitest';

import { MESH_AEADS, meshAeadSpec, type MeshAead } from '../../src/mesh/aead.js';
import { deriveSaKey, type SaEndpoint, type SaKeyContext } from '../../src/mesh/derive.js';
import { generateX25519KeyPair, type X25519KeyPair } from '../../src/mesh/x25519.js';

interface Node {
  readonly name: string;
  readonly address: string;
  readonly bootId: string;
  readonly pairs: X25519KeyPair[]; // index = generation - 1
}

const mesh = { name: 'cluster', uid: '6f1d2c3b-0000-4000-8000-000000000001' };

function node(name: string, address: string, generations = 2): Node {
  return { name, address, bootId: `boot-${name}`, pairs: Array.from({ length: generations }, () => generateX25519KeyPair()) };
}

function endpoint(n: Node, generation: number, overrides: Partial<SaEndpoint> = {}): SaEndpoint {
  return { node: n.name, address: n.address, generation, bootId: n.bootId, publicKey: n.pairs[generation - 1]!.publicKey, ...overrides };
}

function context(sender: Node, senderGeneration: number, receiver: Node, receiverGeneration: number, aead: MeshAead = 'rfc4106-gcm-aes128'): SaKeyContext {
  return { mesh, aead, sender: endpoint(sender, senderGeneration), receiver: endpoint(receiver, receiverGeneration) };
}

const senderKey = (c: SaKeyContext, sender: Node): string => deriveSaKey(c, 'sender', sender.pairs[c.sender.generation - 1]!.privateKey).reveal().toString('hex');
const receiverKey = (c: SaKeyContext, receiver: Node): string => deriveSaKey(c, 'receiver', receiver.pairs[c.receiver.generation - 1]!.privateKey).reveal().toString('hex');

describe('mesh SA key derivation', () => {
  const nodes = [node('a', '10.0.0.1'), node('b', '10.0.0.2'), node('c', '10.0.0.3')];

  it('both ends of every SA derive the same key, and every other SA (pair, direction, generations) a different one', () => {
    const seen = new Map<string, string>();
    for (const sender of nodes) {
      for (const receiver of nodes) {
        if (sender === receiver) continue;
        for (const gs of [1, 2]) {
          for (const gr of [1, 2]) {
            const c = context(sender, gs, receiver, gr);
            const key = senderKey(c, sender);
            expect(receiverKey(c, receiver)).toBe(key);
            const name = `${sender.name}@${gs}->${receiver.name}@${gr}`;
            expect([...seen].filter(([, k]) => k === key).map(([n]) => n), `${name} shares its key`).toEqual([]);
            seen.set(name, key);
          }
        }
      }
    }
    expect(seen.size).toBe(3 * 2 * 4);
  });

  it('produces the key length of each AEAD (cipher key + 4-byte salt)', () => {
    const [a, b] = nodes as [Node, Node];
    const lengths = Object.fromEntries(MESH_AEADS.map((aead) => [aead, deriveSaKey(context(a, 1, b, 1, aead), 'sender', a.pairs[0]!.privateKey).byteLength]));
    expect(lengths).toEqual({ 'rfc4106-gcm-aes128': 20, 'rfc4106-gcm-aes256': 36, 'rfc7539esp-chacha20-poly1305': 36 });
    for (const aead of MESH_AEADS) expect(meshAeadSpec(aead).icvBits).toBe(128);
  });

  it('binds the mesh, the AEAD, the addresses, the boot ids and the public keys', () => {
    const [a, b] = nodes as [Node, Node];
    const base = context(a, 1, b, 1);
    const baseKey = senderKey(base, a);
    const variants: Record<string, SaKeyContext> = {
      'mesh name': { ...base, mesh: { ...mesh, name: 'other' } },
      'mesh uid (same name re-created)': { ...base, mesh: { ...mesh, uid: '6f1d2c3b-0000-4000-8000-000000000002' } },
      aead: { ...base, aead: 'rfc4106-gcm-aes256' },
      'sender address (another family)': { ...base, sender: { ...base.sender, address: 'fd00::1' }, receiver: { ...base.receiver, address: 'fd00::2' } },
      'receiver boot id (reboot)': { ...base, receiver: { ...base.receiver, bootId: 'boot-b-2' } },
      'sender boot id (reboot)': { ...base, sender: { ...base.sender, bootId: 'boot-a-2' } },
      'sender node name': { ...base, sender: { ...base.sender, node: 'a2' } },
      'sender generation number': { ...base, sender: { ...base.sender, generation: 7 } },
    };
    for (const [what, variant] of Object.entries(variants)) {
      const key = deriveSaKey(variant, 'sender', a.pairs[0]!.privateKey).reveal().toString('hex');
      expect(key, what).not.toBe(baseKey);
      if (variant.aead === base.aead) expect(key.length, what).toBe(baseKey.length);
    }
  });

  it('a third node cannot derive the key of a pair it is not in', () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    const ab = context(a, 1, b, 1);
    // c substituting its own private key for either end gets a different secret.
    const asIfSender = deriveSaKey(ab, 'sender', c.pairs[0]!.privateKey).reveal().toString('hex');
    const asIfReceiver = deriveSaKey(ab, 'receiver', c.pairs[0]!.privateKey).reveal().toString('hex');
    expect(asIfSender).not.toBe(senderKey(ab, a));
    expect(asIfReceiver).not.toBe(senderKey(ab, a));
  });

  it('returns keys that never print', () => {
    const [a, b] = nodes as [Node, Node];
    const key = deriveSaKey(context(a, 1, b, 1), 'sender', a.pairs[0]!.privateKey);
    expect(`${key}`).not.toContain(key.reveal().toString('hex'));
    expect(JSON.stringify({ key })).not.toContain(key.reveal().toString('hex'));
  });
});
