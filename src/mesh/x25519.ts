/**
 * X25519 (RFC 7748) key pairs and shared secrets with Node's own crypto (OpenSSL): no new
 * dependency. Private keys are raw 32-byte scalars wrapped in KeyMaterial (they never print);
 * public keys are raw 32-byte u-coordinates, the form an advertisement carries.
 *
 * Node's KeyObject speaks DER, not raw bytes; the fixed PKCS#8 and SPKI prefixes below are the
 * RFC 8410 encodings of an X25519 key (OID 1.3.101.110) around the raw 32 bytes.
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { KeyMaterial } from '../xfrm/key-material.js';

export const X25519_KEY_LENGTH = 32;

// RFC 8410 section 10.3 (private) and 10.1 (public), minus the 32 key bytes.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export interface X25519KeyPair {
  readonly privateKey: KeyMaterial;
  readonly publicKey: Buffer;
}

/** A fresh pair from the OS CSPRNG (OpenSSL's RAND, seeded by getrandom). */
export function generateX25519KeyPair(): X25519KeyPair {
  const { privateKey } = generateKeyPairSync('x25519');
  const raw = rawPrivate(privateKey);
  return { privateKey: KeyMaterial.fromBytes(raw), publicKey: x25519PublicKey(KeyMaterial.fromBytes(raw)) };
}

/** The public key of a raw private scalar (X25519(k, 9)). */
export function x25519PublicKey(privateKey: KeyMaterial): Buffer {
  const exported = createPublicKey(privateKeyObject(privateKey)).export({ format: 'der', type: 'spki' });
  return Buffer.from(exported.subarray(exported.length - X25519_KEY_LENGTH));
}

/**
 * X25519(private, public): the shared secret. Refuses a public key of the wrong length and an
 * all-zero result (a low-order peer point, RFC 7748 section 6.1: "check ... is not all zero"),
 * so a malformed advertisement cannot force a known key.
 */
export function x25519SharedSecret(privateKey: KeyMaterial, publicKey: Uint8Array): KeyMaterial {
  if (publicKey.length !== X25519_KEY_LENGTH) {
    throw new RangeError(`an X25519 public key has ${X25519_KEY_LENGTH} bytes, got ${publicKey.length}`);
  }
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: publicKeyObject(publicKey) });
  } catch (error) {
    // OpenSSL refuses low-order points itself; say so without echoing any key.
    throw new Error(`X25519 refused the peer's public key (low-order point or invalid encoding): ${(error as Error).message}`);
  }
  if (secret.every((byte) => byte === 0)) throw new Error('X25519 produced the all-zero secret: the peer public key is a low-order point');
  const material = KeyMaterial.fromBytes(secret);
  secret.fill(0);
  return material;
}

function privateKeyObject(privateKey: KeyMaterial): KeyObject {
  if (privateKey.byteLength !== X25519_KEY_LENGTH) {
    throw new RangeError(`an X25519 private key has ${X25519_KEY_LENGTH} bytes, got ${privateKey.byteLength}`);
  }
  const raw = privateKey.reveal();
  const der = Buffer.concat([PKCS8_PREFIX, raw]);
  raw.fill(0);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
}

function rawPrivate(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  const raw = Buffer.from(der.subarray(der.length - X25519_KEY_LENGTH));
  der.fill(0);
  return raw;
}
