/**
 * The AEADs a mesh may use, with the kernel algorithm each names and the key the kernel wants:
 * for ESP's AEADs the key carries the cipher key followed by a 4-byte salt (RFC 4106 section
 * 8.1, RFC 7634 section 2 via rfc7539esp), so the derivation must produce both.
 */
export const MESH_AEADS = ['rfc4106-gcm-aes128', 'rfc4106-gcm-aes256', 'rfc7539esp-chacha20-poly1305'] as const;
export type MeshAead = (typeof MESH_AEADS)[number];

export interface MeshAeadSpec {
  /** The name XFRMA_ALG_AEAD carries (`ip xfrm state ... aead NAME`). */
  readonly kernelName: string;
  /** Cipher key plus salt, in bytes. */
  readonly keyBytes: number;
  readonly icvBits: number;
}

const SPECS: Readonly<Record<MeshAead, MeshAeadSpec>> = {
  'rfc4106-gcm-aes128': { kernelName: 'rfc4106(gcm(aes))', keyBytes: 16 + 4, icvBits: 128 },
  'rfc4106-gcm-aes256': { kernelName: 'rfc4106(gcm(aes))', keyBytes: 32 + 4, icvBits: 128 },
  'rfc7539esp-chacha20-poly1305': { kernelName: 'rfc7539esp(chacha20,poly1305)', keyBytes: 32 + 4, icvBits: 128 },
};

export function meshAeadSpec(aead: MeshAead): MeshAeadSpec {
  const spec = SPECS[aead];
  if (!spec) throw new RangeError(`unknown mesh AEAD "${String(aead)}" (one of ${MESH_AEADS.join(', ')})`);
  return spec;
}
