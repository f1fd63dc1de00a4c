/**
 * From validated resources to the kernel's model: the pure step that turns a
 * SecurityAssociation or IpsecPolicy spec (plus keys from Secrets) into exactly the entry the
 * kernel will report back once it is installed.
 *
 * "Exactly" matters: the planner compares desired entries with dumps, so every default the
 * kernel fills in (selector family, infinite lifetimes, the auth truncation of plain `auth`,
 * template family and algorithm masks) is filled in here the same way. Every problem is
 * collected with the field path it concerns; no value of a key ever appears in a message.
 */
import type {
  AddressFamily,
  AuthAlgorithm,
  LifetimeConfig,
  Mark,
  PolicyTemplate,
  Prefix,
  SecurityAssociation,
  SecurityPolicy,
  Selector,
  StateAlgorithms,
  StateFlag,
} from '../xfrm/types.js';
import { XFRM_INFINITY } from '../xfrm/types.js';
import { KeyMaterial } from '../xfrm/key-material.js';
// The selector the kernel gives an SA added without one: its own family, any traffic.
import { anySelector } from '../xfrm/defaults.js';
import type {
  IpsecPolicySpec,
  LabelSelector,
  LifetimeSpec,
  MarkSpec,
  SecretKeyRef,
  SecurityAssociationSpec,
  SelectorSpec,
  TemplateSpec,
} from '../crd/types.js';
import type { FieldError } from '../crd/validate.js';
import { findAlgorithm, algorithmNames, type AlgorithmKind, type AlgorithmSpec } from './algorithms.js';
import { anyAddress, parseAddress, parsePrefix } from './ip.js';
import { ICMP_PROTOCOLS, PORT_PROTOCOLS, protocolNumber } from './protocols.js';
import { quoted, quotedName } from '../crd/echo.js';
import { dnsSubdomainProblems, labelValueProblems, qualifiedNameProblems, secretKeyProblems } from '../crd/names.js';

/** Where keys come from: Secrets of the operator's namespace (or of the CLI's input files). */
export interface KeySource {
  /** The bytes of `key` in Secret `name`; `missing-secret`/`missing-key` when absent. */
  lookup(name: string, key: string): Buffer | 'missing-secret' | 'missing-key';
}

/** Resolves an interface name on the target node to its index; undefined when it has none. */
export type DeviceResolver = (name: string) => number | undefined;

export interface BuildContext {
  readonly keys: KeySource;
  readonly resolveDevice: DeviceResolver;
}

export type BuildResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly errors: BuildError[] };

const ALL_ALGORITHMS = 0xffff_ffff;
const MASK_ALL = 0xffff_ffff;
/** Above this many packets the window no longer fits the legacy 32-bit bitmap. */
const LEGACY_REPLAY_WINDOW_MAX = 32;

/**
 * Why a resource cannot be built, as the CamelCase reason its status reports: a missing Secret
 * or key, a key that does not fit its algorithm, or anything else wrong with the spec.
 */
export type BuildReason = 'MissingSecret' | 'InvalidKey' | 'InvalidSpec';

export interface BuildError extends FieldError {
  readonly reason: BuildReason;
}

/** Collects errors with paths while a builder runs, so every problem is reported at once. */
class Problems {
  readonly errors: BuildError[] = [];
  add(path: string, message: string, reason: BuildReason = 'InvalidSpec'): void {
    this.errors.push({ path, message, reason });
  }
  result<T>(value: () => T): BuildResult<T> {
    return this.errors.length > 0 ? { ok: false, errors: this.errors } : { ok: true, value: value() };
  }
}

export function buildSecurityAssociation(spec: SecurityAssociationSpec, context: BuildContext): BuildResult<SecurityAssociation> {
  const problems = new Problems();
  nodeSelectorProblems(spec.nodeSelector, problems);
  const source = parseAddress(spec.source);
  const destination = parseAddress(spec.destination);
  if (!source) problems.add('spec.source', `${quoted(spec.source)} is not an IPv4 or IPv6 address`);
  if (!destination) problems.add('spec.destination', `${quoted(spec.destination)} is not an IPv4 or IPv6 address`);
  if (source && destination && source.family !== destination.family) {
    problems.add('spec.destination', `source is ${familyName(source.family)} but destination is ${familyName(destination.family)}`);
  }
  const family: AddressFamily = destination?.family ?? source?.family ?? 'inet';
  const mode = spec.mode ?? 'transport';

  const algorithms = buildAlgorithms(spec, context, problems);
  const selector = spec.selector
    ? buildSelector(spec.selector, 'spec.selector', context, problems)
    : anySelector(family);
  // The kernel: "Only tunnel modes can accommodate a change of family" (beet counts as one).
  if (spec.selector && mode === 'transport' && selector.family !== undefined && selector.family !== family && (source || destination)) {
    problems.add('spec.selector', `a transport-mode SA carries only its own family (${familyName(family)}); this selector is ${familyName(selector.family)}`);
  }

  if ((spec.tfcPad ?? 0) !== 0 && mode !== 'tunnel') problems.add('spec.tfcPad', 'tfcPad needs tunnel mode');
  const esn = spec.esn === true;
  const window = spec.replayWindow ?? 0;
  const flags: StateFlag[] = [...(spec.flags ?? []), ...(esn ? (['esn'] as const) : [])];
  if (esn && window === 0) problems.add('spec.replayWindow', 'esn needs a replayWindow above 0');
  // What the codec would refuse, said here with the field's path (see validateState).
  if (mode === 'beet' && spec.protocol !== 'esp') problems.add('spec.mode', `beet mode is only for esp, not ${spec.protocol}`);
  if (spec.protocol === 'ipcomp' && (esn || window > LEGACY_REPLAY_WINDOW_MAX)) {
    problems.add('spec.replayWindow', `ipcomp takes no ESN and no replay window above ${LEGACY_REPLAY_WINDOW_MAX}`);
  }
  // Linux 6.10+: "Replay window should not be set for OUT SA".
  if (spec.direction === 'out' && window !== 0) problems.add('spec.replayWindow', `an outbound SA (direction out) takes no replay window, got ${window}`);

  let encapsulation: SecurityAssociation['encapsulation'];
  if (spec.encapsulation) {
    const original = spec.encapsulation.originalAddress === undefined ? { family, address: anyAddress(family) } : parseAddress(spec.encapsulation.originalAddress);
    if (!original) problems.add('spec.encapsulation.originalAddress', `${quoted(spec.encapsulation.originalAddress)} is not an IPv4 or IPv6 address`);
    else if (original.family !== family) {
      problems.add('spec.encapsulation.originalAddress', `is ${familyName(original.family)} but the SA is ${familyName(family)}`);
    }
    encapsulation = {
      type: spec.encapsulation.type,
      sourcePort: spec.encapsulation.sourcePort,
      destinationPort: spec.encapsulation.destinationPort,
      originalAddress: original?.address ?? anyAddress(family),
    };
  }
  let careOfAddress: string | undefined;
  if (spec.careOfAddress !== undefined) {
    const parsed = parseAddress(spec.careOfAddress);
    if (!parsed) problems.add('spec.careOfAddress', `${quoted(spec.careOfAddress)} is not an IPv4 or IPv6 address`);
    else if (parsed.family !== family) problems.add('spec.careOfAddress', `is ${familyName(parsed.family)} but the SA is ${familyName(family)}`);
    careOfAddress = parsed?.address;
  }

  return problems.result(() => ({
    id: { family, destination: destination!.address, spi: spec.spi, protocol: spec.protocol, mark: buildMark(spec.mark) },
    source: source!.address,
    mode,
    reqid: spec.reqid ?? 0,
    selector,
    algorithms: algorithms!,
    replay: { window, useEsnAttribute: esn || window > LEGACY_REPLAY_WINDOW_MAX },
    flags: sortedUnique(flags),
    extraFlags: sortedUnique(spec.extraFlags ?? []),
    lifetime: buildLifetime(spec.lifetime),
    encapsulation,
    outputMark: buildMark(spec.outputMark),
    ifId: nonZero(spec.interfaceId),
    tfcPad: nonZero(spec.tfcPad),
    direction: spec.direction,
    careOfAddress,
    observed: undefined,
  }));
}

export function buildSecurityPolicy(spec: IpsecPolicySpec, context: BuildContext): BuildResult<SecurityPolicy> {
  const problems = new Problems();
  nodeSelectorProblems(spec.nodeSelector, problems);
  const selector = buildSelector(spec.selector, 'spec.selector', context, problems);
  const selectorFamily = selector.family ?? 'inet';
  // The kernel keeps a policy's direction in the low 3 bits of its index and refuses an index
  // that says otherwise (xfrm_policy_id2dir); caught here, it is an input error with a path
  // rather than a kernel refusal after other entries went in.
  const directionBits = DIRECTION_BITS[spec.direction];
  if (spec.index !== undefined && spec.index !== 0 && (spec.index & 7) !== directionBits) {
    problems.add('spec.index', `the low 3 bits of an index give its direction: ${spec.direction} needs index % 8 == ${directionBits}, and ${spec.index} % 8 is ${spec.index & 7}`);
  }
  // Each transport template stays in the family of what precedes it (the selector, then the
  // previous template); only tunnel and beet templates change family (the kernel's validate_tmpl).
  let previousFamily = selectorFamily;
  const templates = (spec.templates ?? []).map((template, index) => {
    const path = `spec.templates[${index}]`;
    const built = buildTemplate(template, path, previousFamily, problems);
    if (built.mode === 'transport' && built.family !== previousFamily) {
      problems.add(path, `a transport template cannot change the address family (${familyName(previousFamily)} to ${familyName(built.family)}); use tunnel mode`);
    }
    if (built.mode !== 'transport' && built.level === 'use' && spec.direction === 'out') {
      problems.add(`${path}.level`, 'an optional (use) tunnel or beet template is not allowed in an outbound policy');
    }
    previousFamily = built.family;
    return built;
  });
  if ((spec.action ?? 'allow') === 'block' && templates.length > 0) {
    problems.add('spec.templates', 'a block policy takes no templates');
  }
  return problems.result(() => ({
    id: { direction: spec.direction, type: spec.type ?? 'main', selector, mark: buildMark(spec.mark), ifId: nonZero(spec.interfaceId) },
    action: spec.action ?? 'allow',
    priority: spec.priority ?? 0,
    index: spec.index ?? 0,
    flags: sortedUnique(spec.flags ?? []),
    share: 'any',
    lifetime: buildLifetime(spec.lifetime),
    templates,
    observed: undefined,
  }));
}

function buildTemplate(spec: TemplateSpec, path: string, selectorFamily: AddressFamily, problems: Problems): PolicyTemplate {
  const source = spec.source === undefined ? undefined : parseAddress(spec.source);
  const destination = spec.destination === undefined ? undefined : parseAddress(spec.destination);
  if (spec.source !== undefined && !source) problems.add(`${path}.source`, `${quoted(spec.source)} is not an IPv4 or IPv6 address`);
  if (spec.destination !== undefined && !destination) problems.add(`${path}.destination`, `${quoted(spec.destination)} is not an IPv4 or IPv6 address`);
  if (source && destination && source.family !== destination.family) {
    problems.add(`${path}.destination`, `source is ${familyName(source.family)} but destination is ${familyName(destination.family)}`);
  }
  const mode = spec.mode ?? 'transport';
  if (mode === 'tunnel' && (spec.source === undefined || spec.destination === undefined)) {
    problems.add(path, 'a tunnel template needs source and destination');
  }
  // The kernel gives a template without addresses the family of the policy's selector.
  const family = destination?.family ?? source?.family ?? selectorFamily;
  return {
    family,
    source: source?.address ?? anyAddress(family),
    destination: destination?.address ?? anyAddress(family),
    protocol: spec.protocol,
    spi: spec.spi ?? 0,
    reqid: spec.reqid ?? 0,
    mode,
    share: spec.share ?? 'any',
    level: spec.level ?? 'required',
    authAlgorithmMask: spec.authAlgorithmMask ?? ALL_ALGORITHMS,
    encryptionAlgorithmMask: spec.encryptionAlgorithmMask ?? ALL_ALGORITHMS,
    compressionAlgorithmMask: spec.compressionAlgorithmMask ?? ALL_ALGORITHMS,
  };
}

function buildAlgorithms(spec: SecurityAssociationSpec, context: BuildContext, problems: Problems): StateAlgorithms | undefined {
  switch (spec.protocol) {
    case 'esp': {
      if (spec.aead && (spec.encryption || spec.authentication)) {
        problems.add('spec.aead', 'aead already encrypts and authenticates: remove encryption and authentication');
        return undefined;
      }
      if (spec.aead) {
        const algorithm = lookupAlgorithm('aead', spec.aead.algorithm, 'spec.aead.algorithm', problems);
        const key = algorithm && readKey(spec.aead.keyRef, algorithm, 'spec.aead.keyRef', context, problems);
        if (algorithm && !algorithm.icvBits.includes(spec.aead.icvLength)) {
          problems.add('spec.aead.icvLength', `${algorithm.name} takes an ICV of ${formatBits(algorithm.icvBits)}, not ${spec.aead.icvLength}`);
        }
        return algorithm && key ? { kind: 'aead', aead: { name: algorithm.name, key, icvBits: spec.aead.icvLength } } : undefined;
      }
      if (!spec.encryption) {
        problems.add('spec', 'esp needs exactly one of aead or encryption');
        return undefined;
      }
      const cipherSpec = lookupAlgorithm('cipher', spec.encryption.algorithm, 'spec.encryption.algorithm', problems);
      const cipherKey = cipherSpec && readKey(spec.encryption.keyRef, cipherSpec, 'spec.encryption.keyRef', context, problems);
      const auth = spec.authentication ? buildAuth(spec, context, problems) : undefined;
      if (!cipherSpec || !cipherKey || (spec.authentication && !auth)) return undefined;
      return { kind: 'cipher', cipher: { name: cipherSpec.name, key: cipherKey }, auth };
    }
    case 'ah': {
      if (spec.aead || spec.encryption || spec.compression || !spec.authentication) {
        problems.add('spec', 'ah needs authentication and nothing else');
        return undefined;
      }
      const auth = buildAuth(spec, context, problems);
      return auth ? { kind: 'auth', auth } : undefined;
    }
    case 'ipcomp': {
      if (spec.aead || spec.encryption || spec.authentication || !spec.compression) {
        problems.add('spec', 'ipcomp needs compression and nothing else');
        return undefined;
      }
      if (spec.spi >= 0x10000) problems.add('spec.spi', 'an ipcomp CPI must be below 0x10000');
      const compression = lookupAlgorithm('compression', spec.compression.algorithm, 'spec.compression.algorithm', problems);
      return compression ? { kind: 'compression', compression: { name: compression.name } } : undefined;
    }
  }
}

function buildAuth(spec: SecurityAssociationSpec, context: BuildContext, problems: Problems): AuthAlgorithm | undefined {
  const authSpec = spec.authentication!;
  const algorithm = lookupAlgorithm('auth', authSpec.algorithm, 'spec.authentication.algorithm', problems);
  if (!algorithm) return undefined;
  const key = readKey(authSpec.keyRef, algorithm, 'spec.authentication.keyRef', context, problems);
  const truncationBits = authSpec.truncationLength ?? algorithm.defaultTruncationBits ?? 0;
  if (!algorithm.icvBits.includes(truncationBits)) {
    problems.add(
      'spec.authentication.truncationLength',
      `${algorithm.name} can be truncated to ${formatBits(algorithm.icvBits)}, not ${truncationBits}`,
    );
    return undefined;
  }
  return key ? { name: algorithm.name, key, truncationBits } : undefined;
}

function lookupAlgorithm(kind: AlgorithmKind, name: string, path: string, problems: Problems): AlgorithmSpec | undefined {
  const algorithm = findAlgorithm(kind, name);
  if (!algorithm) problems.add(path, `unknown ${kindName(kind)} algorithm ${quoted(name)}; known: ${algorithmNames(kind).join(', ')}`);
  return algorithm;
}

/**
 * The key a keyRef names. Names are echoed only through quotedName: a keyRef is where a key
 * pasted in the wrong place would land, and its names are never compared with (or shown
 * beside) the Secret's values.
 */
function readKey(ref: SecretKeyRef, algorithm: AlgorithmSpec, path: string, context: BuildContext, problems: Problems): KeyMaterial | undefined {
  const secret = quotedName(ref.name);
  const key = quotedName(ref.key);
  // Names no Secret can have: say so, rather than "not found", and look nothing up.
  if (dnsSubdomainProblems(ref.name).length > 0) {
    problems.add(`${path}.name`, `${secret} is not a valid Secret name (a DNS subdomain)`);
    return undefined;
  }
  if (secretKeyProblems(ref.key).length > 0) {
    problems.add(`${path}.key`, `${key} is not a valid Secret key name (letters, digits, '-', '_' and '.')`);
    return undefined;
  }
  const found = context.keys.lookup(ref.name, ref.key);
  if (found === 'missing-secret') {
    problems.add(`${path}.name`, `Secret ${secret} not found`, 'MissingSecret');
    return undefined;
  }
  if (found === 'missing-key') {
    problems.add(`${path}.key`, `Secret ${secret} has no key ${key}`, 'MissingSecret');
    return undefined;
  }
  let bytes = found;
  if (ref.encoding === 'hex') {
    const text = found.toString('latin1').trim().replace(/^0x/i, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(text)) {
      // Say what is wrong without quoting any of the value.
      problems.add(`${path}.key`, `Secret ${secret} key ${key} is not hex text of whole bytes (encoding: hex)`, 'InvalidKey');
      return undefined;
    }
    bytes = Buffer.from(text, 'hex');
  }
  const bits = bytes.length * 8;
  if (!algorithm.keyBits.includes(bits)) {
    problems.add(
      `${path}.key`,
      `${algorithm.name} needs a key of ${formatBits(algorithm.keyBits)}; Secret ${secret} key ${key} holds ${bits} bits`,
      'InvalidKey',
    );
    return undefined;
  }
  return KeyMaterial.fromBytes(bytes);
}

export function buildSelector(spec: SelectorSpec, path: string, context: BuildContext, problems: Problems): Selector {
  const source = parsePrefix(spec.source);
  const destination = parsePrefix(spec.destination);
  if (typeof source === 'string') problems.add(`${path}.source`, source);
  if (typeof destination === 'string') problems.add(`${path}.destination`, destination);
  const family = typeof destination !== 'string' ? destination.family : typeof source !== 'string' ? source.family : 'inet';
  if (typeof source !== 'string' && typeof destination !== 'string' && source.family !== destination.family) {
    problems.add(`${path}.destination`, `source is ${familyName(source.family)} but destination is ${familyName(destination.family)}`);
  }
  let protocol = 0;
  if (spec.protocol !== undefined) {
    const number = protocolNumber(spec.protocol);
    if (number === undefined) problems.add(`${path}.protocol`, `unknown IP protocol ${quoted(spec.protocol)}`);
    protocol = number ?? 0;
  }
  const hasPorts = spec.sourcePort !== undefined || spec.destinationPort !== undefined;
  const hasIcmp = spec.icmpType !== undefined || spec.icmpCode !== undefined;
  if (hasPorts && !PORT_PROTOCOLS.has(protocol)) problems.add(path, 'ports need a protocol with ports (tcp, udp, sctp, udplite, dccp)');
  if (hasIcmp && !ICMP_PROTOCOLS.has(protocol)) problems.add(path, 'icmpType and icmpCode need protocol icmp or ipv6-icmp');
  // ICMP type and code travel in the port fields (type as source, code as destination).
  const sourcePort = spec.sourcePort ?? spec.icmpType;
  const destinationPort = spec.destinationPort ?? spec.icmpCode;
  let ifindex = 0;
  if (spec.device !== undefined) {
    const resolved = context.resolveDevice(spec.device);
    if (resolved === undefined) problems.add(`${path}.device`, `no interface ${quoted(spec.device)} on this node`);
    ifindex = resolved ?? 0;
  }
  const asPrefix = (parsed: ReturnType<typeof parsePrefix>): Prefix =>
    typeof parsed === 'string' ? { address: anyAddress(family), prefixLength: 0 } : { address: parsed.address, prefixLength: parsed.prefixLength };
  return {
    family,
    source: asPrefix(source),
    destination: asPrefix(destination),
    protocol,
    sourcePort: sourcePort ?? 0,
    sourcePortMask: sourcePort === undefined ? 0 : 0xffff,
    destinationPort: destinationPort ?? 0,
    destinationPortMask: destinationPort === undefined ? 0 : 0xffff,
    ifindex,
    user: 0,
  };
}

/**
 * Byte and packet limits are unlimited at XFRM_INFINITY, time limits at 0: the kernel's (and
 * iproute2's) conventions, which dumps report back.
 */
export function buildLifetime(spec: LifetimeSpec | undefined): LifetimeConfig {
  // The usual values are shared constants, not a new BigInt per field (four per entry at
  // 10,000 entries were 0.6 MB of the CLI's peak heap).
  const count = (value: number | undefined) => (value === undefined ? XFRM_INFINITY : BigInt(value));
  const seconds = (value: number | undefined) => (value === undefined || value === 0 ? 0n : BigInt(value));
  return {
    softByteLimit: count(spec?.soft?.bytes),
    hardByteLimit: count(spec?.hard?.bytes),
    softPacketLimit: count(spec?.soft?.packets),
    hardPacketLimit: count(spec?.hard?.packets),
    softAddExpiresSeconds: seconds(spec?.soft?.addExpiresSeconds),
    hardAddExpiresSeconds: seconds(spec?.hard?.addExpiresSeconds),
    softUseExpiresSeconds: seconds(spec?.soft?.useExpiresSeconds),
    hardUseExpiresSeconds: seconds(spec?.hard?.useExpiresSeconds),
  };
}

/** XFRM_POLICY_IN, _OUT, _FWD: what the low 3 bits of a policy index must hold. */
const DIRECTION_BITS: Record<IpsecPolicySpec['direction'], number> = { in: 0, out: 1, fwd: 2 };

/**
 * A nodeSelector as the API server validates a LabelSelector (ValidateLabelSelector): the CRD
 * schema only says "strings", but a key that is not a label key can never match a node, and
 * In/NotIn without values or Exists with values is a mistake, not a selection.
 */
function nodeSelectorProblems(selector: LabelSelector | undefined, problems: Problems): void {
  if (!selector) return;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    const path = `spec.nodeSelector.matchLabels[${quoted(key)}]`;
    for (const problem of qualifiedNameProblems(key)) problems.add(path, `key ${problem}`);
    for (const problem of labelValueProblems(value)) problems.add(path, problem);
  }
  (selector.matchExpressions ?? []).forEach((requirement, index) => {
    const path = `spec.nodeSelector.matchExpressions[${index}]`;
    for (const problem of qualifiedNameProblems(requirement.key)) problems.add(`${path}.key`, problem);
    const values = requirement.values ?? [];
    if ((requirement.operator === 'In' || requirement.operator === 'NotIn') && values.length === 0) {
      problems.add(`${path}.values`, `must be specified when operator is ${requirement.operator}`);
    }
    if ((requirement.operator === 'Exists' || requirement.operator === 'DoesNotExist') && values.length > 0) {
      problems.add(`${path}.values`, `may not be specified when operator is ${requirement.operator}`);
    }
    values.forEach((value, valueIndex) => {
      for (const problem of labelValueProblems(value)) problems.add(`${path}.values[${valueIndex}]`, problem);
    });
  });
}

function buildMark(spec: MarkSpec | undefined): Mark | undefined {
  if (!spec) return undefined;
  const mark = { value: spec.value, mask: spec.mask ?? MASK_ALL };
  // The kernel reports no mark attribute for a zero mark under a zero mask.
  return mark.value === 0 && mark.mask === 0 ? undefined : mark;
}

function nonZero(value: number | undefined): number | undefined {
  return value === undefined || value === 0 ? undefined : value;
}

function sortedUnique<T extends string>(values: readonly T[]): T[] {
  return [...new Set(values)].sort();
}

function familyName(family: AddressFamily): string {
  return family === 'inet' ? 'IPv4' : 'IPv6';
}

function kindName(kind: AlgorithmKind): string {
  return { aead: 'AEAD', cipher: 'encryption', auth: 'authentication', compression: 'compression' }[kind];
}

function formatBits(values: readonly number[]): string {
  return values.length === 1 ? `${values[0]} bits` : `${values.slice(0, -1).join(', ')} or ${values.at(-1)} bits`;
}
