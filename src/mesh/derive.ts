/**
 * The key of one mesh SA: HKDF-SHA256 (RFC 5869) over the X25519 (RFC 7748) shared secret of
 * the sender's and the receiver's key pairs of the generations the SA is named by.
 *
 * Both ends compute the same key from what they hold: the sender from its private key and the
 * receiver's public key, the receiver the other way round. The salt binds the mesh (name and
 * uid: a mesh deleted and re-created with the same name gets new keys); the info binds
 * everything else that names the SA: the AEAD, the direction (sender fields always first),
 * both node names and addresses (each address family is its own SA with its own counter, so
 * it must have its own key), both key generations, both boot ids (a reboot restarts the
 * kernel's sequence counters at 0, so the key must change with it) and both public keys.
 * Nothing here is random: the randomness is in the key pairs.
 */
import { KeyMaterial } from '../xfrm/key-material.js';
import { meshAeadSpec, type MeshAead } from './aead.js';
import { encodeFields } from './encoding.js';
import { hkdfSha256 } from './hkdf.js';
import { x25519SharedSecret } from './x25519.js';

const SALT_LABEL = 'ipsec-operator mesh v1 salt';
const INFO_LABEL = 'ipsec-operator mesh v1 esp sa';

export interface MeshIdentity {
  readonly name: string;
  readonly uid: string;
}

/** One end of an SA: a node at one key generation and boot. */
export interface SaEndpoint {
  readonly node: string;
  readonly address: string;
  readonly generation: number;
  readonly bootId: string;
  readonly publicKey: Uint8Array;
}

export interface SaKeyContext {
  readonly mesh: MeshIdentity;
  readonly aead: MeshAead;
  readonly sender: SaEndpoint;
  readonly receiver: SaEndpoint;
}

/**
 * Derives the SA key. `local` says which end this node is; `privateKey` is that end's private
 * key of its generation in `context`, the other end's public key comes from the context.
 */
export function deriveSaKey(context: SaKeyContext, local: 'sender' | 'receiver', privateKey: KeyMaterial): KeyMaterial {
  const peer = local === 'sender' ? context.receiver : context.sender;
  const shared = x25519SharedSecret(privateKey, peer.publicKey);
  const ikm = shared.reveal();
  try {
    const okm = hkdfSha256(ikm, saltOf(context.mesh), infoOf(context), meshAeadSpec(context.aead).keyBytes);
    const key = KeyMaterial.fromBytes(okm);
    okm.fill(0);
    return key;
  } finally {
    ikm.fill(0);
  }
}

export function saltOf(mesh: MeshIdentity): Buffer {
  return encodeFields([SALT_LABEL, mesh.name, mesh.uid]);
}

export function infoOf(context: SaKeyContext): Buffer {
  const { sender, receiver } = context;
  return encodeFields([
    INFO_LABEL,
    context.aead,
    'from',
    sender.node,
    sender.address,
    sender.generation,
    sender.bootId,
    sender.publicKey,
    'to',
    receiver.node,
    receiver.address,
    receiver.generation,
    receiver.bootId,
    receiver.publicKey,
  ]);
}
