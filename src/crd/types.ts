/**
 * The resources' specs as TypeScript sees them after schema validation
 * (`validateDocument` in ./validate.ts proves an object has this shape before it is cast).
 * The OpenAPI schema in ./schema.ts is the source of truth; keep these in step with it
 * (test/unit/crd-schema.test.ts checks the examples and every field name against it).
 */
export const API_GROUP = 'ipsec.xfrm.io';
export const API_VERSION = 'v1alpha1';
export const GROUP_VERSION = `${API_GROUP}/${API_VERSION}`;

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** A key held in a Secret of the operator's namespace. */
export interface SecretKeyRef {
  name: string;
  key: string;
  /** `raw` (default): the Secret value is the key bytes. `hex`: it is hex text, `0x` optional. */
  encoding?: 'raw' | 'hex';
}

export interface MarkSpec {
  value: number;
  /** Defaults to 0xffffffff. */
  mask?: number;
}

export interface LifetimeLimits {
  bytes?: number;
  packets?: number;
  addExpiresSeconds?: number;
  useExpiresSeconds?: number;
}

export interface LifetimeSpec {
  soft?: LifetimeLimits;
  hard?: LifetimeLimits;
}

export interface SelectorSpec {
  /** CIDR; a bare address means a host prefix. */
  source: string;
  destination: string;
  /** IP protocol by name (`tcp`, `udp`, `icmp`, `ipv6-icmp`, `sctp`, ...) or decimal number; absent = any. */
  protocol?: string;
  sourcePort?: number;
  destinationPort?: number;
  icmpType?: number;
  icmpCode?: number;
  /** Interface name, resolved on each node. */
  device?: string;
}

export interface AeadSpec {
  algorithm: string;
  icvLength: number;
  keyRef: SecretKeyRef;
}

export interface EncryptionSpec {
  algorithm: string;
  keyRef: SecretKeyRef;
}

export interface AuthenticationSpec {
  algorithm: string;
  /** Bits of the ICV kept (`auth-trunc`); absent means the kernel's default for the algorithm. */
  truncationLength?: number;
  keyRef: SecretKeyRef;
}

export interface CompressionSpec {
  algorithm: string;
}

export interface EncapsulationSpec {
  type: 'espinudp' | 'espinudp-nonike' | 'espintcp';
  sourcePort: number;
  destinationPort: number;
  originalAddress?: string;
}

export type StateFlagName = 'noecn' | 'decap-dscp' | 'nopmtudisc' | 'wildrecv' | 'icmp' | 'af-unspec' | 'align4';
export type StateExtraFlagName = 'dont-encap-dscp' | 'oseq-may-wrap';

export interface SecurityAssociationSpec {
  nodeSelector?: LabelSelector;
  source: string;
  destination: string;
  protocol: 'esp' | 'ah' | 'ipcomp';
  spi: number;
  mode?: 'transport' | 'tunnel' | 'beet';
  reqid?: number;
  aead?: AeadSpec;
  encryption?: EncryptionSpec;
  authentication?: AuthenticationSpec;
  compression?: CompressionSpec;
  replayWindow?: number;
  esn?: boolean;
  flags?: StateFlagName[];
  extraFlags?: StateExtraFlagName[];
  selector?: SelectorSpec;
  lifetime?: LifetimeSpec;
  encapsulation?: EncapsulationSpec;
  mark?: MarkSpec;
  outputMark?: MarkSpec;
  interfaceId?: number;
  tfcPad?: number;
  direction?: 'in' | 'out';
  careOfAddress?: string;
}

export interface TemplateSpec {
  source?: string;
  destination?: string;
  protocol: 'esp' | 'ah' | 'ipcomp';
  spi?: number;
  reqid?: number;
  mode?: 'transport' | 'tunnel' | 'beet';
  level?: 'required' | 'use';
  share?: 'any' | 'session' | 'user' | 'unique';
  authAlgorithmMask?: number;
  encryptionAlgorithmMask?: number;
  compressionAlgorithmMask?: number;
}

export interface IpsecPolicySpec {
  nodeSelector?: LabelSelector;
  selector: SelectorSpec;
  direction: 'in' | 'out' | 'fwd';
  action?: 'allow' | 'block';
  priority?: number;
  index?: number;
  type?: 'main' | 'sub';
  flags?: ('localok' | 'icmp')[];
  mark?: MarkSpec;
  interfaceId?: number;
  lifetime?: LifetimeSpec;
  templates?: TemplateSpec[];
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
}

export interface SecurityAssociationResource {
  apiVersion: typeof GROUP_VERSION;
  kind: 'SecurityAssociation';
  metadata: ObjectMeta;
  spec: SecurityAssociationSpec;
}

export interface IpsecPolicyResource {
  apiVersion: typeof GROUP_VERSION;
  kind: 'IpsecPolicy';
  metadata: ObjectMeta;
  spec: IpsecPolicySpec;
}

export type IpsecResource = SecurityAssociationResource | IpsecPolicyResource;
