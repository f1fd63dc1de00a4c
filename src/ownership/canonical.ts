/**
 * The canonical text that intent and incarnation fingerprints hash (./fingerprint.ts), written
 * by writers that know each shape instead of by generic JSON canonicalisation.
 *
 * Why: the generic form (sort every object's keys, drop absent fields, recurse) cost about
 * 80 µs an entry, and an apply of 10,000 policies hashes each entry twice (its intent, then the
 * entry the verifying dump shows): 45% of the engine's CPU. These writers emit the very same
 * bytes — JSON with keys in code-unit order, bigints as decimal strings, keys as hex, absent
 * fields dropped — so fingerprints already recorded in ledgers (an SA's `stable` part lives as
 * long as the SA) keep matching. test/unit/ownership-canonical.test.ts holds them to the
 * generic form byte for byte and to recorded values.
 *
 * Each nested shape lists every field of its type (`Shape<T>` makes a missing one a type
 * error), so a field added to the XFRM types cannot silently fall out of the fingerprint.
 */
import { KeyMaterial } from '../xfrm/key-material.js';
import type {
  LifetimeConfig,
  Mark,
  PolicyTemplate,
  Prefix,
  SecurityAssociation,
  SecurityPolicy,
  Selector,
  StateAlgorithms,
} from '../xfrm/types.js';

/** The text of one value, or undefined for a field that is absent (and so not written at all). */
type Write<T> = (value: T) => string | undefined;

/** A writer for every field of T. */
type Shape<T> = { readonly [K in keyof T]-?: Write<T[K]> };

/** An object whose fields are computed from `source`, written in sorted key order. */
function view<S>(fields: Readonly<Record<string, (source: S) => string | undefined>>): (source: S) => string {
  const order = Object.keys(fields)
    .sort()
    .map((name) => ({ prefix: `${JSON.stringify(name)}:`, write: fields[name]! }));
  return (source) => {
    let out = '';
    for (const { prefix, write } of order) {
      const text = write(source);
      if (text === undefined) continue;
      out += (out === '' ? '{' : ',') + prefix + text;
    }
    return out === '' ? '{}' : `${out}}`;
  };
}

/** An object of type T, every field written by its own writer. */
function shape<T>(fields: Shape<T>): (value: T) => string {
  const computed: Record<string, (source: T) => string | undefined> = {};
  for (const name of Object.keys(fields) as (keyof T & string)[]) {
    const write = fields[name] as Write<T[keyof T]>;
    computed[name] = (source) => write(source[name]);
  }
  return view(computed);
}

function optional<T>(write: (value: T) => string): Write<T | undefined> {
  return (value) => (value === undefined ? undefined : write(value));
}

/** JSON.stringify's form of a number (a non-finite one is null). */
const number = (value: number): string => (Number.isFinite(value) ? String(value) : 'null');
const text = (value: string): string => JSON.stringify(value);
const boolean = (value: boolean): string => (value ? 'true' : 'false');
const bigint = (value: bigint): string => `"${value.toString()}"`;
const key = (value: KeyMaterial): string => `"${value.reveal().toString('hex')}"`;
/** Flag lists are sets: the kernel reports them in bit order, manifests in any order. */
const flagSet = (flags: readonly string[]): string => `[${[...flags].sort().map(text).join(',')}]`;
const list =
  <T>(write: (value: T) => string) =>
  (values: readonly T[]): string =>
    `[${values.map(write).join(',')}]`;

const mark = shape<Mark>({ value: number, mask: number });
const markOrNull = (value: Mark | undefined): string => (value === undefined ? 'null' : mark(value));
const prefix = shape<Prefix>({ address: text, prefixLength: number });

const selector = shape<Selector>({
  family: optional(text),
  source: prefix,
  destination: prefix,
  protocol: number,
  sourcePort: number,
  sourcePortMask: number,
  destinationPort: number,
  destinationPortMask: number,
  ifindex: number,
  user: number,
});

const lifetime = shape<LifetimeConfig>({
  softByteLimit: bigint,
  hardByteLimit: bigint,
  softPacketLimit: bigint,
  hardPacketLimit: bigint,
  softAddExpiresSeconds: bigint,
  hardAddExpiresSeconds: bigint,
  softUseExpiresSeconds: bigint,
  hardUseExpiresSeconds: bigint,
});

const template = shape<PolicyTemplate>({
  family: text,
  source: text,
  destination: text,
  protocol: text,
  spi: number,
  reqid: number,
  mode: text,
  share: text,
  level: text,
  authAlgorithmMask: number,
  encryptionAlgorithmMask: number,
  compressionAlgorithmMask: number,
});

type Algorithm<K extends StateAlgorithms['kind']> = Extract<StateAlgorithms, { kind: K }>;
const aead = shape<Algorithm<'aead'>['aead']>({ name: text, key, icvBits: number });
const cipher = shape<Algorithm<'cipher'>['cipher']>({ name: text, key });
const auth = shape<NonNullable<Algorithm<'cipher'>['auth']>>({ name: text, key, truncationBits: number });
const compression = shape<Algorithm<'compression'>['compression']>({ name: text });
const ALGORITHMS: { readonly [K in StateAlgorithms['kind']]: (value: Algorithm<K>) => string } = {
  aead: shape<Algorithm<'aead'>>({ kind: text, aead }),
  cipher: shape<Algorithm<'cipher'>>({ kind: text, cipher, auth: optional(auth) }),
  auth: shape<Algorithm<'auth'>>({ kind: text, auth }),
  compression: shape<Algorithm<'compression'>>({ kind: text, compression }),
};
const algorithms = (value: StateAlgorithms): string => (ALGORITHMS[value.kind] as (value: StateAlgorithms) => string)(value);

const stateId = shape<SecurityAssociation['id']>({ family: text, destination: text, spi: number, protocol: text, mark: markOrNull });

/** What ./fingerprint.ts stableStateFingerprint describes (see there for why these fields). */
export const writeStableState = view<SecurityAssociation>({
  id: (sa) => stateId(sa.id),
  source: (sa) => text(sa.source),
  mode: (sa) => text(sa.mode),
  reqid: (sa) => number(sa.reqid),
  selector: (sa) => selector(sa.selector),
  algorithms: (sa) => algorithms(sa.algorithms),
  replay: (sa) => `{"useEsnAttribute":${boolean(sa.replay.useEsnAttribute)},"window":${number(sa.replay.window)}}`,
  flags: (sa) => flagSet(sa.flags),
  extraFlags: (sa) => flagSet(sa.extraFlags),
  tfcPad: (sa) => number(sa.tfcPad ?? 0),
  encapsulationType: (sa) => (sa.encapsulation === undefined ? 'null' : text(sa.encapsulation.type)),
});

const policyId = shape<SecurityPolicy['id']>({
  direction: text,
  type: text,
  selector,
  mark: markOrNull,
  ifId: (value) => number(value ?? 0),
});

/** What a policy intent records: the policy as the planner compares it. */
export const writePolicyIntent = view<SecurityPolicy>({
  id: (policy) => policyId(policy.id),
  action: (policy) => text(policy.action),
  priority: (policy) => number(policy.priority),
  flags: (policy) => flagSet(policy.flags),
  lifetime: (policy) => lifetime(policy.lifetime),
  templates: (policy) => list(template)(policy.templates),
});
