/**
 * The reverse of ./build.ts: kernel entries back into resources plus one Secret holding their
 * keys. `ipsec-operator import` prints these; applying them into an empty namespace reproduces
 * the original `ip xfrm state` and `ip xfrm policy` output. Defaults are left out so the
 * manifests read as a person would write them.
 */
import {
  GROUP_VERSION,
  type IpsecPolicyResource,
  type IpsecPolicySpec,
  type LifetimeSpec,
  type MarkSpec,
  type SecurityAssociationResource,
  type SecurityAssociationSpec,
  type SelectorSpec,
  type StateFlagName,
  type TemplateSpec,
} from '../crd/types.js';
import type { LifetimeConfig, Mark, SecurityAssociation, SecurityPolicy, Selector } from '../xfrm/types.js';
import { XFRM_INFINITY } from '../xfrm/types.js';
import type { KeyMaterial } from '../xfrm/key-material.js';
import { anyAddress } from './ip.js';
import { ICMP_PROTOCOLS, protocolName } from './protocols.js';

export const IMPORTED_KEYS_SECRET = 'ipsec-imported-keys';

/** The opt-out of the carrier exemption (the agent's EXEMPTION_ANNOTATION; kept here so that model/ needs no agent import). */
const ENCAP_EXEMPTION_ANNOTATION = 'ipsec.xfrm.io/udp-encap-exemption';

export interface SecretDocument {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace?: string };
  type: 'Opaque';
  data: Record<string, string>;
}

export interface ExportedManifests {
  readonly resources: (SecurityAssociationResource | IpsecPolicyResource)[];
  readonly secret: SecretDocument;
}

/** Interface names of the namespace the entries came from, for `selector.device`. */
export type DeviceNamer = (ifindex: number) => string | undefined;

export function exportEntries(
  states: readonly SecurityAssociation[],
  policies: readonly SecurityPolicy[],
  deviceName: DeviceNamer,
  secretNamespace?: string,
): ExportedManifests {
  const secret: SecretDocument = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: IMPORTED_KEYS_SECRET, ...(secretNamespace ? { namespace: secretNamespace } : {}) },
    type: 'Opaque',
    data: {},
  };
  const names = new Set<string>();
  const unique = (base: string) => {
    let name = base;
    for (let n = 2; names.has(name); n++) name = `${base}-${n}`;
    names.add(name);
    return name;
  };
  const resources: (SecurityAssociationResource | IpsecPolicyResource)[] = [];
  for (const sa of states) {
    const name = unique(dnsName(`sa-${sa.id.protocol}-${sa.id.spi.toString(16)}-${sa.id.destination}`));
    const keyRef = (purpose: string, key: KeyMaterial) => {
      const secretKey = `${name}.${purpose}`;
      secret.data[secretKey] = key.reveal().toString('base64');
      return { name: IMPORTED_KEYS_SECRET, key: secretKey };
    };
    // An import reproduces exactly what the kernel holds: the exemption policies an encapsulated
    // SA's carrier datagrams need are already there (imported as policies), or deliberately not,
    // so the SA opts out of the one the engine would otherwise add.
    const metadata = sa.encapsulation ? { name, annotations: { [ENCAP_EXEMPTION_ANNOTATION]: 'false' } } : { name };
    resources.push({ apiVersion: GROUP_VERSION, kind: 'SecurityAssociation', metadata, spec: exportState(sa, keyRef, deviceName) });
  }
  for (const policy of policies) {
    const name = unique(dnsName(`policy-${policy.id.direction}-${policy.index}`));
    resources.push({ apiVersion: GROUP_VERSION, kind: 'IpsecPolicy', metadata: { name }, spec: exportPolicy(policy, deviceName) });
  }
  return { resources, secret };
}

function exportState(
  sa: SecurityAssociation,
  keyRef: (purpose: string, key: KeyMaterial) => { name: string; key: string },
  deviceName: DeviceNamer,
): SecurityAssociationSpec {
  const spec: SecurityAssociationSpec = {
    source: sa.source,
    destination: sa.id.destination,
    protocol: sa.id.protocol,
    spi: sa.id.spi,
    mode: sa.mode === 'ro' || sa.mode === 'in_trigger' ? 'transport' : sa.mode,
  };
  if (sa.reqid !== 0) spec.reqid = sa.reqid;
  const algorithms = sa.algorithms;
  switch (algorithms.kind) {
    case 'aead':
      spec.aead = { algorithm: algorithms.aead.name, icvLength: algorithms.aead.icvBits, keyRef: keyRef('aead', algorithms.aead.key) };
      break;
    case 'cipher':
      spec.encryption = { algorithm: algorithms.cipher.name, keyRef: keyRef('encryption', algorithms.cipher.key) };
      if (algorithms.auth) {
        spec.authentication = { algorithm: algorithms.auth.name, truncationLength: algorithms.auth.truncationBits, keyRef: keyRef('authentication', algorithms.auth.key) };
      }
      break;
    case 'auth':
      spec.authentication = { algorithm: algorithms.auth.name, truncationLength: algorithms.auth.truncationBits, keyRef: keyRef('authentication', algorithms.auth.key) };
      break;
    case 'compression':
      spec.compression = { algorithm: algorithms.compression.name };
      break;
  }
  if (sa.replay.window !== 0) spec.replayWindow = sa.replay.window;
  if (sa.flags.includes('esn')) spec.esn = true;
  const flags = sa.flags.filter((flag): flag is StateFlagName => flag !== 'esn');
  if (flags.length > 0) spec.flags = flags;
  if (sa.extraFlags.length > 0) spec.extraFlags = [...sa.extraFlags];
  if (!isAnySelector(sa.selector, sa.id.family)) spec.selector = exportSelector(sa.selector, deviceName);
  const lifetime = exportLifetime(sa.lifetime);
  if (lifetime) spec.lifetime = lifetime;
  if (sa.encapsulation) {
    spec.encapsulation = { type: sa.encapsulation.type, sourcePort: sa.encapsulation.sourcePort, destinationPort: sa.encapsulation.destinationPort };
    if (sa.encapsulation.originalAddress !== anyAddress(sa.id.family)) spec.encapsulation.originalAddress = sa.encapsulation.originalAddress;
  }
  if (sa.id.mark) spec.mark = exportMark(sa.id.mark);
  if (sa.outputMark) spec.outputMark = exportMark(sa.outputMark);
  if (sa.ifId !== undefined) spec.interfaceId = sa.ifId;
  if (sa.tfcPad !== undefined) spec.tfcPad = sa.tfcPad;
  if (sa.direction !== undefined) spec.direction = sa.direction;
  if (sa.careOfAddress !== undefined) spec.careOfAddress = sa.careOfAddress;
  return spec;
}

function exportPolicy(policy: SecurityPolicy, deviceName: DeviceNamer): IpsecPolicySpec {
  const spec: IpsecPolicySpec = {
    selector: exportSelector(policy.id.selector, deviceName),
    direction: policy.id.direction,
    action: policy.action,
    priority: policy.priority,
    index: policy.index,
  };
  if (policy.id.type !== 'main') spec.type = policy.id.type;
  if (policy.flags.length > 0) spec.flags = [...policy.flags];
  if (policy.id.mark) spec.mark = exportMark(policy.id.mark);
  if (policy.id.ifId !== undefined) spec.interfaceId = policy.id.ifId;
  const lifetime = exportLifetime(policy.lifetime);
  if (lifetime) spec.lifetime = lifetime;
  if (policy.templates.length > 0) {
    spec.templates = policy.templates.map((template) => {
      const exported: TemplateSpec = { protocol: template.protocol };
      if (template.source !== anyAddress(template.family)) exported.source = template.source;
      if (template.destination !== anyAddress(template.family)) exported.destination = template.destination;
      if (template.spi !== 0) exported.spi = template.spi;
      if (template.reqid !== 0) exported.reqid = template.reqid;
      exported.mode = template.mode === 'ro' || template.mode === 'in_trigger' ? 'transport' : template.mode;
      if (template.level !== 'required') exported.level = template.level;
      if (template.share !== 'any') exported.share = template.share;
      if (template.authAlgorithmMask !== 0xffff_ffff) exported.authAlgorithmMask = template.authAlgorithmMask;
      if (template.encryptionAlgorithmMask !== 0xffff_ffff) exported.encryptionAlgorithmMask = template.encryptionAlgorithmMask;
      if (template.compressionAlgorithmMask !== 0xffff_ffff) exported.compressionAlgorithmMask = template.compressionAlgorithmMask;
      return exported;
    });
  }
  return spec;
}

function exportSelector(selector: Selector, deviceName: DeviceNamer): SelectorSpec {
  const spec: SelectorSpec = {
    source: `${selector.source.address}/${selector.source.prefixLength}`,
    destination: `${selector.destination.address}/${selector.destination.prefixLength}`,
  };
  if (selector.protocol !== 0) spec.protocol = protocolName(selector.protocol);
  const icmp = ICMP_PROTOCOLS.has(selector.protocol);
  if (selector.sourcePortMask !== 0) {
    if (icmp) spec.icmpType = selector.sourcePort;
    else spec.sourcePort = selector.sourcePort;
  }
  if (selector.destinationPortMask !== 0) {
    if (icmp) spec.icmpCode = selector.destinationPort;
    else spec.destinationPort = selector.destinationPort;
  }
  if (selector.ifindex !== 0) spec.device = deviceName(selector.ifindex) ?? `ifindex-${selector.ifindex}`;
  return spec;
}

function isAnySelector(selector: Selector, family: SecurityAssociation['id']['family']): boolean {
  const any = anyAddress(family);
  return (
    selector.family === family &&
    selector.source.address === any &&
    selector.source.prefixLength === 0 &&
    selector.destination.address === any &&
    selector.destination.prefixLength === 0 &&
    selector.protocol === 0 &&
    selector.sourcePortMask === 0 &&
    selector.destinationPortMask === 0 &&
    selector.ifindex === 0
  );
}

function exportLifetime(lifetime: LifetimeConfig): LifetimeSpec | undefined {
  const count = (value: bigint) => (value === XFRM_INFINITY ? undefined : Number(value));
  const seconds = (value: bigint) => (value === 0n ? undefined : Number(value));
  const prune = <T extends object>(object: T): T | undefined => {
    const entries = Object.entries(object).filter(([, value]) => value !== undefined);
    return entries.length === 0 ? undefined : (Object.fromEntries(entries) as T);
  };
  return prune({
    soft: prune({
      bytes: count(lifetime.softByteLimit),
      packets: count(lifetime.softPacketLimit),
      addExpiresSeconds: seconds(lifetime.softAddExpiresSeconds),
      useExpiresSeconds: seconds(lifetime.softUseExpiresSeconds),
    }),
    hard: prune({
      bytes: count(lifetime.hardByteLimit),
      packets: count(lifetime.hardPacketLimit),
      addExpiresSeconds: seconds(lifetime.hardAddExpiresSeconds),
      useExpiresSeconds: seconds(lifetime.hardUseExpiresSeconds),
    }),
  });
}

function exportMark(mark: Mark): MarkSpec {
  return mark.mask === 0xffff_ffff ? { value: mark.value } : { value: mark.value, mask: mark.mask };
}

function dnsName(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 200);
}
