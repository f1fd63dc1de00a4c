/**
 * The single source of truth for the resources' OpenAPI schemas and CEL rules.
 *
 * `renderCrds()` turns them into the CustomResourceDefinitions in deploy/crds/ (kept current by
 * `ipsec-operator crds` and a unit test), and the local validator (./validate.ts) checks
 * manifests against the very same schema objects, so the CLI refuses exactly what the API
 * server would refuse (test/controlplane proves the agreement against a real apiserver).
 */
import { API_GROUP, API_VERSION } from './types.js';
import { nodeMeshReport, renderMeshCrd } from './mesh-schema.js';
import { bool, conditionSchema, int, list, oneOf, rule, str, type Schema } from './schema-builders.js';
import { MAX_LISTED_REPORTS } from './node-state.js';

export type { Schema };

const U32_MAX = 0xffff_ffff;

const u32 = (description: string): Schema => int(description, 0, U32_MAX);
const obj = (description: string, properties: Record<string, Schema>, required: string[] = [], extra: Schema = {}): Schema => ({
  type: 'object',
  description,
  properties,
  ...(required.length > 0 ? { required } : {}),
  additionalProperties: false,
  ...extra,
});

// Addresses are checked for syntax here (so the apiserver refuses obvious garbage) and for
// meaning (family, host bits) by the model, which parses them properly.
const ADDRESS_PATTERN = '^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$';
const PREFIX_PATTERN = '^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)(/[0-9]{1,3})?$';
const address = (description: string) => str(description, { pattern: ADDRESS_PATTERN, maxLength: 45 });
const prefix = (description: string) => str(description, { pattern: PREFIX_PATTERN, maxLength: 49 });

const nodeSelector: Schema = obj(
  'Which nodes hold this entry (a label selector over Node labels). Absent selects every node.',
  {
    matchLabels: { type: 'object', additionalProperties: { type: 'string' }, description: 'Labels a node must have.' },
    matchExpressions: list(
      'Label requirements, all of which must hold.',
      obj(
        'A label requirement.',
        {
          key: str('Label key.'),
          operator: oneOf('How the key relates to the values.', ['In', 'NotIn', 'Exists', 'DoesNotExist']),
          values: list('Values for In and NotIn.', { type: 'string' }),
        },
        ['key', 'operator'],
      ),
    ),
  },
  [],
  { 'x-kubernetes-map-type': 'atomic' },
);

const keyRef: Schema = obj(
  "A key held in a Secret in the operator's namespace. Keys are never written inline.",
  {
    name: str('Secret name.', { minLength: 1, maxLength: 253 }),
    key: str('Key within the Secret.', { minLength: 1, maxLength: 253 }),
    encoding: oneOf('raw (default): the value is the key bytes. hex: the value is hex text, 0x optional.', ['raw', 'hex']),
  },
  ['name', 'key'],
);

const mark: Schema = obj(
  'A firewall mark matched (or set) under a mask.',
  { value: u32('Mark value.'), mask: u32('Mask; defaults to 0xffffffff.') },
  ['value'],
);

const limits = (which: string): Schema =>
  obj(`${which} limits; an absent limit is unlimited.`, {
    bytes: int('Bytes.', 0, Number.MAX_SAFE_INTEGER),
    packets: int('Packets.', 0, Number.MAX_SAFE_INTEGER),
    addExpiresSeconds: int('Seconds after creation.', 0, Number.MAX_SAFE_INTEGER),
    useExpiresSeconds: int('Seconds after first use.', 0, Number.MAX_SAFE_INTEGER),
  });

const lifetime: Schema = obj('Soft limits warn (an EXPIRE event); hard limits end the entry.', {
  soft: limits('Soft'),
  hard: limits('Hard'),
});

// Protocol is a string (a name or a decimal number) so that CEL sees one type.
const PORT_PROTOCOLS = "['tcp', 'udp', 'sctp', 'udplite', 'dccp', '6', '17', '132', '136', '33']";
const ICMP_PROTOCOLS = "['icmp', 'ipv6-icmp', '1', '58']";

const selector = (what: string): Schema =>
  obj(
    what,
    {
      source: prefix('Source prefix (CIDR); a bare address is a host prefix.'),
      destination: prefix('Destination prefix (CIDR); a bare address is a host prefix.'),
      protocol: str('IP protocol by name (tcp, udp, icmp, ipv6-icmp, sctp, gre, ...) or decimal number, as a string. Absent matches any.', {
        pattern: '^[a-z0-9][a-z0-9-]*$',
        maxLength: 16,
      }),
      sourcePort: int('Source port (tcp, udp, sctp, udplite, dccp).', 0, 65535),
      destinationPort: int('Destination port (tcp, udp, sctp, udplite, dccp).', 0, 65535),
      icmpType: int('ICMP or ICMPv6 type.', 0, 255),
      icmpCode: int('ICMP or ICMPv6 code.', 0, 255),
      device: str('Interface name on the node.', { minLength: 1, maxLength: 15 }),
    },
    ['source', 'destination'],
    {
      'x-kubernetes-validations': [
        rule(
          `(!has(self.sourcePort) && !has(self.destinationPort)) || (has(self.protocol) && self.protocol in ${PORT_PROTOCOLS})`,
          'ports need a protocol with ports (tcp, udp, sctp, udplite, dccp)',
        ),
        rule(
          `(!has(self.icmpType) && !has(self.icmpCode)) || (has(self.protocol) && self.protocol in ${ICMP_PROTOCOLS})`,
          'icmpType and icmpCode need protocol icmp or ipv6-icmp',
        ),
      ],
    },
  );

const algorithmName = (description: string) => str(description, { minLength: 1, maxLength: 63 });

export const securityAssociationSpec: Schema = obj(
  'One Security Association (an entry of the kernel SAD), as `ip xfrm state add` takes it.',
  {
    nodeSelector,
    source: address('Outer source address.'),
    destination: address('Outer destination address.'),
    protocol: oneOf('IPsec protocol.', ['esp', 'ah', 'ipcomp']),
    spi: int('Security Parameter Index (for ipcomp, the 16-bit CPI). Write hex as 0x....', 1, U32_MAX),
    mode: oneOf('Mode; defaults to transport.', ['transport', 'tunnel', 'beet']),
    reqid: u32('Request id that policy templates use to find this SA; 0 matches templates without reqid.'),
    aead: obj(
      'ESP with an AEAD algorithm.',
      {
        algorithm: algorithmName('e.g. rfc4106(gcm(aes)), rfc4309(ccm(aes)), rfc4543(gcm(aes)), rfc7539esp(chacha20,poly1305).'),
        icvLength: int('ICV length in bits.', 0, 1024),
        keyRef,
      },
      ['algorithm', 'icvLength', 'keyRef'],
    ),
    encryption: obj('ESP encryption (without AEAD).', { algorithm: algorithmName('e.g. cbc(aes).'), keyRef }, ['algorithm', 'keyRef']),
    authentication: obj(
      'Authentication (ESP integrity, or AH).',
      {
        algorithm: algorithmName('e.g. hmac(sha256).'),
        truncationLength: int('ICV bits kept (auth-trunc); absent means the kernel default.', 0, 1024),
        keyRef,
      },
      ['algorithm', 'keyRef'],
    ),
    compression: obj('IPComp algorithm.', { algorithm: algorithmName('e.g. deflate.') }, ['algorithm']),
    replayWindow: int('Anti-replay window in packets (above 32 uses the ESN replay attribute).', 0, 4096),
    esn: bool('Extended (64-bit) sequence numbers; needs a replay window.'),
    flags: list(
      'XFRM_STATE_* flags.',
      oneOf('Flag.', ['noecn', 'decap-dscp', 'nopmtudisc', 'wildrecv', 'icmp', 'af-unspec', 'align4']),
      { 'x-kubernetes-list-type': 'set' },
    ),
    extraFlags: list('XFRM_SA_XFLAG_* flags.', oneOf('Flag.', ['dont-encap-dscp', 'oseq-may-wrap']), {
      'x-kubernetes-list-type': 'set',
    }),
    selector: selector('Inner traffic this SA may carry; absent allows any.'),
    lifetime,
    encapsulation: obj(
      'UDP (NAT-T) or TCP encapsulation of ESP.',
      {
        type: oneOf('Encapsulation type.', ['espinudp', 'espinudp-nonike', 'espintcp']),
        sourcePort: int('Source port.', 1, 65535),
        destinationPort: int('Destination port.', 1, 65535),
        originalAddress: address('Original address before NAT.'),
      },
      ['type', 'sourcePort', 'destinationPort'],
    ),
    mark,
    outputMark: mark,
    interfaceId: u32('XFRM interface id (if_id).'),
    tfcPad: u32('Traffic flow confidentiality padding, in bytes.'),
    direction: oneOf('SA direction (Linux 6.10+).', ['in', 'out']),
    careOfAddress: address('Care-of address (Mobile IPv6).'),
  },
  ['source', 'destination', 'protocol', 'spi'],
  {
    'x-kubernetes-validations': [
      rule("self.protocol != 'esp' || has(self.aead) != has(self.encryption)", 'esp needs exactly one of aead or encryption'),
      rule("!has(self.aead) || !has(self.authentication)", 'aead already authenticates: remove authentication'),
      rule("!has(self.aead) || self.protocol == 'esp'", 'aead is only for esp'),
      rule("!has(self.encryption) || self.protocol == 'esp'", 'encryption is only for esp'),
      rule(
        "self.protocol != 'ah' || (has(self.authentication) && !has(self.compression))",
        'ah needs authentication and nothing else',
      ),
      rule(
        "self.protocol != 'ipcomp' || (has(self.compression) && !has(self.authentication))",
        'ipcomp needs compression and nothing else',
      ),
      rule("!has(self.compression) || self.protocol == 'ipcomp'", 'compression is only for ipcomp'),
      rule("self.protocol != 'ipcomp' || self.spi < 65536", 'an ipcomp CPI must be below 0x10000'),
      rule('!has(self.esn) || !self.esn || (has(self.replayWindow) && self.replayWindow > 0)', 'esn needs a replayWindow above 0'),
      rule("!has(self.encapsulation) || self.protocol == 'esp'", 'encapsulation is only for esp'),
      rule("!has(self.tfcPad) || self.tfcPad == 0 || (has(self.mode) && self.mode == 'tunnel')", 'tfcPad needs tunnel mode'),
    ],
  },
);

export const ipsecPolicySpec: Schema = obj(
  'One Security Policy (an entry of the kernel SPD), as `ip xfrm policy add` takes it.',
  {
    nodeSelector,
    selector: selector('Traffic this policy applies to.'),
    direction: oneOf('Direction.', ['in', 'out', 'fwd']),
    action: oneOf('allow (default) or block.', ['allow', 'block']),
    priority: u32('Lower values take precedence.'),
    index: u32('Policy index; absent lets the kernel choose.'),
    type: oneOf('main (default) or sub.', ['main', 'sub']),
    flags: list('XFRM_POLICY_* flags.', oneOf('Flag.', ['localok', 'icmp']), { 'x-kubernetes-list-type': 'set' }),
    mark,
    interfaceId: u32('XFRM interface id (if_id).'),
    lifetime,
    templates: list(
      'SAs this traffic must pass through, outermost last (at most 6).',
      obj(
        'A template: which SA to use, found by protocol, reqid, mode and addresses.',
        {
          source: address('Tunnel source address (required in tunnel mode).'),
          destination: address('Tunnel destination address (required in tunnel mode).'),
          protocol: oneOf('IPsec protocol.', ['esp', 'ah', 'ipcomp']),
          spi: u32('SPI to require; absent matches any.'),
          reqid: u32('reqid to match; absent matches any.'),
          mode: oneOf('Mode; defaults to transport.', ['transport', 'tunnel', 'beet']),
          level: oneOf('required (default) or use (the SA may be missing).', ['required', 'use']),
          share: oneOf('Sharing; defaults to any.', ['any', 'session', 'user', 'unique']),
          authAlgorithmMask: u32('Allowed authentication algorithms (bitmask); defaults to all.'),
          encryptionAlgorithmMask: u32('Allowed encryption algorithms (bitmask); defaults to all.'),
          compressionAlgorithmMask: u32('Allowed compression algorithms (bitmask); defaults to all.'),
        },
        ['protocol'],
        {
          'x-kubernetes-validations': [
            rule("!has(self.mode) || self.mode != 'tunnel' || (has(self.source) && has(self.destination))", 'a tunnel template needs source and destination'),
          ],
        },
      ),
      { maxItems: 6 },
    ),
  },
  ['selector', 'direction'],
  {
    'x-kubernetes-validations': [
      rule("!has(self.action) || self.action == 'allow' || !has(self.templates) || size(self.templates) == 0", 'a block policy takes no templates'),
    ],
  },
);

const condition = conditionSchema('Condition type.', 'Human-readable detail.');

export const entryStatus: Schema = {
  type: 'object',
  description: 'What the cluster reports for this entry.',
  properties: {
    observedGeneration: int('Generation last processed.', 0, Number.MAX_SAFE_INTEGER),
    conditions: list('Conditions (Ready, ...).', condition, {
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    }),
    nodes: obj('How many selected nodes hold the entry.', {
      selected: int('Nodes selected.', 0, 1_000_000),
      applied: int('Nodes where it is applied.', 0, 1_000_000),
      failed: int('Nodes where applying failed.', 0, 1_000_000),
    }),
  },
};

/**
 * The API server forbids `additionalProperties: false` beside `properties` in structural
 * schemas (it prunes unknown fields instead, and `kubectl apply`'s strict field validation
 * reports them). The local validator keeps it, to refuse typos the same way kubectl does.
 */
function forApiServer(schema: Schema): Schema {
  const copy: Schema = {};
  for (const [keyword, value] of Object.entries(schema)) {
    if (keyword === 'additionalProperties' && value === false) continue;
    if (keyword === 'properties') {
      copy[keyword] = Object.fromEntries(Object.entries(value as Record<string, Schema>).map(([name, child]) => [name, forApiServer(child)]));
    } else if ((keyword === 'items' || keyword === 'additionalProperties') && typeof value === 'object' && value !== null) {
      copy[keyword] = forApiServer(value as Schema);
    } else {
      copy[keyword] = value;
    }
  }
  return copy;
}

const resourceReport: Schema = obj(
  'A resource this node has not applied (applied ones are proven as a set: see applied).',
  {
    kind: oneOf('Resource kind.', ['SecurityAssociation', 'IpsecPolicy']),
    name: str('Resource name.'),
    generation: int('Generation the agent applied or tried.', 0, Number.MAX_SAFE_INTEGER),
    // Applied only from agents of the first format (a report per resource, no `applied`); the
    // rule on the status refuses it beside `applied`. Kept so that an agent not yet upgraded can
    // still write during an upgrade.
    state: oneOf('Failed: see message. Removed: its entries are gone (deletion). Applied: only from agents of the first format, which listed every resource.', ['Applied', 'Failed', 'Removed']),
    entries: int('Kernel entries of this resource that ipsec-operator holds on this node.', 0, 1_000_000),
    reason: str('CamelCase reason, e.g. Applied, KernelRejected, InvalidKey, MissingSecret, Conflict.'),
    message: str('Detail, with the kernel reason where there is one. Never key material.', { maxLength: 4096 }),
  },
  ['kind', 'name', 'state'],
);

const encapSocketReport: Schema = obj(
  'A UDP encapsulation socket (NAT-T) that SAs of this node receive on, or an SA encapsulation the agent cannot serve.',
  {
    address: str('Local address: the destination of the SAs.'),
    port: int('UDP port: their encapsulation destinationPort.', 1, 65535),
    encapsulation: oneOf('UDP_ENCAP type of the socket.', ['espinudp', 'espinudp-nonike', 'espintcp']),
    state: oneOf(
      'Held: the agent holds it. HeldElsewhere: another process holds the port (it receives if it set UDP_ENCAP, as IKE daemons do). NotLocal: not an address of this node, which only sends with these SAs. Failed: see message. Unsupported: espintcp. Conflict: two encapsulation types on one port.',
      ['Held', 'HeldElsewhere', 'NotLocal', 'Failed', 'Unsupported', 'Conflict'],
    ),
    message: str('Detail.', { maxLength: 4096 }),
    resources: list('SecurityAssociations that use it.', str('Name.'), { 'x-kubernetes-list-type': 'atomic' }),
  },
  ['address', 'port', 'encapsulation', 'state'],
);

export const ipsecNodeStateStatus: Schema = obj(
  "What a node's agent last found and did. Written by that node's agent only.",
  {
    lastSyncTime: str('When the kernel last matched the desired state. Like lastAttemptTime, refreshed only with another change or at the 5-minute heartbeat.', { format: 'date-time' }),
    lastAttemptTime: str('When the agent last reconciled and wrote this status: on any other change of it, and at least every 5 minutes while the agent runs (a resync that changes nothing else writes nothing).', { format: 'date-time' }),
    agentVersion: str('Agent version.'),
    kernelRelease: str('uname -r of the node.'),
    algorithms: {
      type: 'object',
      description: 'Algorithms the kernel crypto API currently offers, by kind (from /proc/crypto).',
      additionalProperties: { type: 'array', items: { type: 'string' } },
    },
    entries: obj('Counts of kernel entries.', {
      ownedStates: int('SAs created by ipsec-operator.', 0, Number.MAX_SAFE_INTEGER),
      ownedPolicies: int('Policies created by ipsec-operator.', 0, Number.MAX_SAFE_INTEGER),
      foreignStates: int('SAs of other software (left untouched).', 0, Number.MAX_SAFE_INTEGER),
      foreignPolicies: int('Policies of other software (left untouched).', 0, Number.MAX_SAFE_INTEGER),
    }),
    driftRepairs: int('Owned entries restored after someone else changed or removed them.', 0, Number.MAX_SAFE_INTEGER),
    applied: obj(
      'The resources this node applied, as a set: a count and a digest of their (kind, name, uid, generation) (src/crd/applied-set.ts). The controller compares it with the set it expects.',
      {
        resources: int('How many.', 0, Number.MAX_SAFE_INTEGER),
        digest: str('Sum modulo 2^128 of the first 128 bits of each SHA-256, 32 hex digits.', { pattern: '^[0-9a-f]{32}$', minLength: 32, maxLength: 32 }),
      },
      ['resources', 'digest'],
    ),
    resources: list('Resources not applied (failed, or being removed), at most 256 beside applied.', resourceReport, { 'x-kubernetes-list-type': 'atomic' }),
    unlistedReports: int('Resources not applied beyond the 256 listed.', 0, Number.MAX_SAFE_INTEGER),
    encapsulationSockets: list('UDP encapsulation sockets (NAT-T) the SAs of this node need, and where each stands.', encapSocketReport, {
      'x-kubernetes-list-type': 'atomic',
    }),
    meshes: list('The IpsecMeshes this node takes part in (or is leaving): public keys, SPIs and acknowledgements that peers and the controller act on (src/crd/mesh-contract.ts).', nodeMeshReport, {
      maxItems: 64,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['uid'],
    }),
    conditions: list('Conditions (Ready).', condition, { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] }),
  },
  [],
  {
    // The bounded format (src/crd/node-state.ts): with `applied`, only resources not applied
    // are listed, and at most MAX_LISTED_REPORTS of them. Without it (an agent of the first
    // format) the list is what it was.
    'x-kubernetes-validations': [
      rule(`!has(self.applied) || !has(self.resources) || size(self.resources) <= ${MAX_LISTED_REPORTS}`, `at most ${MAX_LISTED_REPORTS} resources are listed beside applied; count the rest in unlistedReports`),
      rule("!has(self.applied) || !has(self.resources) || self.resources.all(r, r.state != 'Applied')", 'applied resources are counted in applied, not listed'),
      rule('!has(self.unlistedReports) || has(self.applied)', 'unlistedReports goes with applied'),
    ],
  },
);

interface KindNames {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
}

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  priority?: number;
}

function crd(names: KindNames, spec: Schema, columns: PrinterColumn[], status: Schema = entryStatus, readyColumns = true): Schema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${names.plural}.${API_GROUP}` },
    spec: {
      group: API_GROUP,
      scope: 'Cluster',
      names: { kind: names.kind, listKind: `${names.kind}List`, plural: names.plural, singular: names.singular, shortNames: names.shortNames, categories: ['ipsec'] },
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            ...columns,
            ...(readyColumns
              ? [
                  { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
                  { name: 'Reason', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].reason", priority: 1 },
                ]
              : []),
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: forApiServer(spec),
                status: forApiServer(status),
              },
            },
          },
        },
      ],
    },
  };
}

export const SECURITY_ASSOCIATION_NAMES: KindNames = {
  kind: 'SecurityAssociation',
  plural: 'securityassociations',
  singular: 'securityassociation',
  shortNames: ['xsa'],
};

export const IPSEC_NODE_STATE_NAMES: KindNames = {
  kind: 'IpsecNodeState',
  plural: 'ipsecnodestates',
  singular: 'ipsecnodestate',
  shortNames: ['xnode'],
};

export const ipsecNodeStateSpec: Schema = obj('Which node this reports on.', { nodeName: str('Node name.', { minLength: 1, maxLength: 253 }) }, ['nodeName']);

export const IPSEC_POLICY_NAMES: KindNames = {
  kind: 'IpsecPolicy',
  plural: 'ipsecpolicies',
  singular: 'ipsecpolicy',
  shortNames: ['xpol'],
};

/** The CRDs, in the order `kubectl apply` should see them. */
export function renderCrds(): Schema[] {
  return [
    crd(SECURITY_ASSOCIATION_NAMES, securityAssociationSpec, [
      { name: 'Protocol', type: 'string', jsonPath: '.spec.protocol' },
      { name: 'SPI', type: 'integer', jsonPath: '.spec.spi' },
      { name: 'Source', type: 'string', jsonPath: '.spec.source' },
      { name: 'Destination', type: 'string', jsonPath: '.spec.destination' },
      { name: 'Mode', type: 'string', jsonPath: '.spec.mode', priority: 1 },
      { name: 'Applied', type: 'integer', jsonPath: '.status.nodes.applied', priority: 1 },
    ]),
    crd(IPSEC_POLICY_NAMES, ipsecPolicySpec, [
      { name: 'Direction', type: 'string', jsonPath: '.spec.direction' },
      { name: 'Source', type: 'string', jsonPath: '.spec.selector.source' },
      { name: 'Destination', type: 'string', jsonPath: '.spec.selector.destination' },
      { name: 'Action', type: 'string', jsonPath: '.spec.action' },
      { name: 'Priority', type: 'integer', jsonPath: '.spec.priority', priority: 1 },
      { name: 'Applied', type: 'integer', jsonPath: '.status.nodes.applied', priority: 1 },
    ]),
    crd(
      IPSEC_NODE_STATE_NAMES,
      ipsecNodeStateSpec,
      [
        { name: 'Synced', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
        { name: 'Owned-SAs', type: 'integer', jsonPath: '.status.entries.ownedStates' },
        { name: 'Owned-Policies', type: 'integer', jsonPath: '.status.entries.ownedPolicies' },
        { name: 'Drift', type: 'integer', jsonPath: '.status.driftRepairs' },
        { name: 'Last-Sync', type: 'date', jsonPath: '.status.lastSyncTime' },
      ],
      ipsecNodeStateStatus,
      false,
    ),
    renderMeshCrd(),
  ];
}
