/**
 * The IPsec algorithms the kernel's XFRM layer knows (net/xfrm/xfrm_algo.c), by canonical name,
 * with the key and ICV lengths we accept.
 *
 * Why a table of our own: the kernel reports algorithms by canonical name (`aes` comes back as
 * `cbc(aes)`), so desired SAs must be written in that form or every diff would see a change;
 * and a key of the wrong length must be refused before any kernel write, with a message that
 * says which lengths fit, rather than as an opaque EINVAL half-way through a plan.
 * The kernel remains the judge of what it *supports*: a name in this table can still be
 * missing from a given kernel, which the applier reports with the kernel's own reason.
 */
export type AlgorithmKind = 'aead' | 'cipher' | 'auth' | 'compression';

export interface AlgorithmSpec {
  readonly kind: AlgorithmKind;
  /** The name the kernel reports back. */
  readonly name: string;
  /** Older names the kernel also accepts (`ip xfrm` users write these), mapped to `name`. */
  readonly aliases: readonly string[];
  /** Accepted key lengths in bits (for AEAD and counter modes this includes the salt/nonce). */
  readonly keyBits: readonly number[];
  /** AEAD: accepted ICV lengths in bits. Auth: accepted truncation lengths in bits. */
  readonly icvBits: readonly number[];
  /** Auth: the truncation the kernel applies for plain `auth NAME` (XFRMA_ALG_AUTH). */
  readonly defaultTruncationBits?: number;
}

const aead = (name: string, keyBits: number[], icvBits: number[]): AlgorithmSpec => ({
  kind: 'aead',
  name,
  aliases: [],
  keyBits,
  icvBits,
});

const cipher = (name: string, aliases: string[], keyBits: number[]): AlgorithmSpec => ({
  kind: 'cipher',
  name,
  aliases,
  keyBits,
  icvBits: [],
});

/** HMACs take any truncation from 64 bits up to the digest size, in whole bytes. */
const auth = (name: string, aliases: string[], keyBits: number[], digestBits: number, defaultTruncationBits: number): AlgorithmSpec => {
  const truncations: number[] = [];
  for (let bits = 64; bits <= digestBits; bits += 8) truncations.push(bits);
  return { kind: 'auth', name, aliases, keyBits, icvBits: truncations, defaultTruncationBits };
};

const compression = (name: string): AlgorithmSpec => ({ kind: 'compression', name, aliases: [], keyBits: [0], icvBits: [] });

/** AES key sizes plus the 32-bit salt that RFC 4106/4543 and RFC 3686 append to the key. */
const AES_WITH_SALT32 = [160, 224, 288];

export const ALGORITHMS: readonly AlgorithmSpec[] = [
  aead('rfc4106(gcm(aes))', AES_WITH_SALT32, [64, 96, 128]),
  // RFC 4309: the salt is 24 bits.
  aead('rfc4309(ccm(aes))', [152, 216, 280], [64, 96, 128]),
  aead('rfc4543(gcm(aes))', AES_WITH_SALT32, [128]),
  aead('rfc7539esp(chacha20,poly1305)', [288], [128]),

  cipher('ecb(cipher_null)', ['cipher_null'], [0]),
  cipher('cbc(aes)', ['aes'], [128, 192, 256]),
  cipher('rfc3686(ctr(aes))', [], AES_WITH_SALT32),
  cipher('cbc(des3_ede)', ['des3_ede'], [192]),
  cipher('cbc(camellia)', ['camellia'], [128, 192, 256]),
  cipher('cbc(serpent)', ['serpent'], [128, 192, 256]),
  cipher('cbc(twofish)', ['twofish'], [128, 192, 256]),

  { kind: 'auth', name: 'digest_null', aliases: ['null'], keyBits: [0], icvBits: [0], defaultTruncationBits: 0 },
  auth('hmac(md5)', ['md5'], [128], 128, 96),
  auth('hmac(sha1)', ['sha1'], [160], 160, 96),
  // The kernel's default for plain `auth sha256` is the pre-RFC 4868 96-bit truncation.
  auth('hmac(sha256)', ['sha256'], [256], 256, 96),
  auth('hmac(sha384)', ['sha384'], [384], 384, 192),
  auth('hmac(sha512)', ['sha512'], [512], 512, 256),
  auth('hmac(rmd160)', ['rmd160'], [160], 160, 96),
  auth('xcbc(aes)', [], [128], 128, 96),
  auth('cmac(aes)', [], [128], 128, 96),

  compression('deflate'),
  compression('lzs'),
  compression('lzjh'),
];

const byName = new Map<string, AlgorithmSpec>();
for (const spec of ALGORITHMS) {
  byName.set(`${spec.kind}:${spec.name}`, spec);
  for (const alias of spec.aliases) byName.set(`${spec.kind}:${alias}`, spec);
}

/** Looks an algorithm up by canonical name or alias; undefined when we do not know it. */
export function findAlgorithm(kind: AlgorithmKind, name: string): AlgorithmSpec | undefined {
  return byName.get(`${kind}:${name}`);
}

export function algorithmNames(kind: AlgorithmKind): string[] {
  return ALGORITHMS.filter((spec) => spec.kind === kind).map((spec) => spec.name);
}
