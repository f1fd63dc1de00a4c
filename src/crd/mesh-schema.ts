/**
 * The IpsecMesh CustomResourceDefinition: encrypted node-to-node traffic from one resource.
 *
 * Its own module (beside ./schema.ts, which renders it with the others) because the mesh is a
 * different kind of resource: it names no keys, no SPIs and no addresses. Agents derive every
 * SA from key pairs they make themselves (src/mesh), so the cluster API never holds key
 * material. Descriptions are written for `kubectl explain ipsecmesh.spec...`.
 */
import { MESH_AEADS } from '../mesh/aead.js';
import { API_GROUP, API_VERSION } from './types.js';
import { bool, conditionSchema, int, list, oneOf, rule, str, type Schema } from './schema-builders.js';

const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

const obj = (description: string, properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', description, properties, ...extra });
const duration = (description: string, defaultValue: string): Schema => str(description, { pattern: DURATION_PATTERN, maxLength: 32, default: defaultValue });

export const MESH_NAMES = { kind: 'IpsecMesh', plural: 'ipsecmeshes', singular: 'ipsecmesh', shortNames: ['xmesh'] } as const;

/** `kubectl annotate ipsecmesh NAME ipsec.xfrm.io/rotate=now`: rotate every node's keys once. */
export const MESH_ROTATE_ANNOTATION = `${API_GROUP}/rotate`;

export const MESH_EXEMPT_PROTOCOLS = ['tcp', 'udp', 'sctp', 'icmp', 'ipv6-icmp'] as const;

const nodeSelector: Schema = obj(
  'Which nodes are members (a label selector over Node labels). Absent: every node. A node that stops matching leaves the mesh: its SAs are removed on every peer once unused.',
  {
    matchLabels: { type: 'object', additionalProperties: { type: 'string' }, description: 'Labels a node must have.' },
    matchExpressions: list(
      'Label requirements, all of which must hold.',
      obj(
        'A label requirement.',
        {
          key: str('Label key.', { maxLength: 317 }),
          operator: oneOf('How the key relates to the values.', ['In', 'NotIn', 'Exists', 'DoesNotExist']),
          values: list('Values for In and NotIn.', str('A label value.', { maxLength: 63 }), { maxItems: 64 }),
        },
        { required: ['key', 'operator'] },
      ),
      { maxItems: 16 },
    ),
  },
  { 'x-kubernetes-map-type': 'atomic' },
);

const exemption: Schema = obj(
  'Traffic left in clear text between members (for example a routing protocol that has its own protection). It is matched before the encrypting policies, in both directions.',
  {
    protocol: oneOf('IP protocol.', MESH_EXEMPT_PROTOCOLS),
    port: int('For tcp, udp and sctp: the port, exempt as destination and as source (requests and replies). Absent: the whole protocol.', 1, 65535),
  },
  {
    required: ['protocol'],
    'x-kubernetes-validations': [rule("!has(self.port) || self.protocol in ['tcp', 'udp', 'sctp']", 'port applies to tcp, udp and sctp only', { fieldPath: '.port' })],
  },
);

const rotation: Schema = obj(
  'When keys change. Every node makes a new X25519 key pair; every SA it is part of is replaced by one derived from the new pair, switched only after the receiver has published that it installed it, and removed only after both ends published the switch and it carried no packet for gracePeriod.',
  {
    interval: duration('Rotate every node this often (Go duration, e.g. 24h). Each node is jittered by up to 10% of the interval.', '24h'),
    softPacketLimit: int('Rotate an SA pair early when its outbound SA has sent this many packets (the kernel soft limit).', 1000, Number.MAX_SAFE_INTEGER),
    softByteLimit: int('Rotate early when an outbound SA has sent this many bytes (the kernel soft limit).', 1_048_576, Number.MAX_SAFE_INTEGER),
    gracePeriod: duration('How long an SA that was switched away from must have carried no packet before it is removed (packets still in flight or queued).', '30s'),
    backstop: duration('A rotation step waits for acknowledgements; after this long an old generation is removed even without them (a peer that never answers). A backstop only: it should never fire.', '1h'),
    maxConcurrent: int('At most this many nodes rotate at once (the controller schedules them).', 1, 1000, { default: 1 }),
  },
  {
    // The whole default, not {}: the API server checks the rules against the default itself,
    // before the members' own defaults apply.
    default: { interval: '24h', gracePeriod: '30s', backstop: '1h', maxConcurrent: 1 },
    'x-kubernetes-validations': [
      rule("duration(self.interval) >= duration('10m')", 'interval must be at least 10m', { fieldPath: '.interval' }),
      rule("duration(self.gracePeriod) >= duration('1s')", 'gracePeriod must be at least 1s', { fieldPath: '.gracePeriod' }),
      rule('duration(self.backstop) > duration(self.gracePeriod)', 'backstop must be longer than gracePeriod', { fieldPath: '.backstop' }),
      rule('duration(self.backstop) < duration(self.interval)', 'backstop must be shorter than interval', { fieldPath: '.backstop' }),
    ],
  },
);

export const ipsecMeshSpec: Schema = obj(
  'Encrypt all traffic between the selected nodes with ESP. No keys are configured or stored in the cluster: each agent makes its own key pairs, keeps the private keys in its state directory and publishes only public keys in its IpsecNodeState; the key of the SA from node i to node j is HKDF-SHA256 over their X25519 shared secret, bound to the mesh, both key generations, both addresses and both boot ids.',
  {
    nodeSelector,
    addressFamilies: list(
      'Which node addresses to protect, one set of SAs per family. Each node address is its first Node status address of addressType in that family; a node without one is not a peer in that family.',
      oneOf('An address family.', ['IPv4', 'IPv6']),
      { minItems: 1, maxItems: 2, 'x-kubernetes-list-type': 'set', default: ['IPv4'] },
    ),
    addressType: oneOf('Which Node status address is the node address.', ['InternalIP', 'ExternalIP'], { default: 'InternalIP' }),
    mode: oneOf(
      'transport: ESP between the node addresses (host-to-host traffic). tunnel: ESP tunnels between the node addresses carrying traffic between the nodes\' pod CIDRs (Node spec.podCIDRs).',
      ['transport', 'tunnel'],
      { default: 'transport' },
    ),
    aead: oneOf(
      'The AEAD: rfc4106-gcm-aes128 / rfc4106-gcm-aes256 are rfc4106(gcm(aes)) with a 128/256-bit key and a 32-bit salt; rfc7539esp-chacha20-poly1305 is rfc7539esp(chacha20,poly1305) (faster without AES instructions). ICV 128 bits.',
      MESH_AEADS,
      { default: 'rfc4106-gcm-aes256' },
    ),
    esn: bool('64-bit extended sequence numbers (RFC 4304): an SA never runs out of sequence numbers between rotations. Needs replayWindow above 0.', { default: true }),
    replayWindow: int('Anti-replay window in packets (0 disables replay protection; above 32 uses the kernel ESN replay state).', 0, 4096, { default: 128 }),
    natTraversal: obj(
      'Carry ESP in UDP (RFC 3948), for networks that pass only TCP and UDP (they drop IP protocol 50). Each agent holds the UDP encapsulation socket on destinationPort and exempts the carrier datagrams from its inbound policies. The node addresses must reach each other as they are: a NAT that rewrites a node address is not supported (each SA and its key name both addresses); use SecurityAssociations for that. Absent: plain ESP.',
      {
        sourcePort: int('UDP source port of the encapsulated packets.', 1, 65535, { default: 4500 }),
        destinationPort: int('UDP destination port (each agent listens on it).', 1, 65535, { default: 4500 }),
      },
    ),
    failClosed: bool(
      'Require ESP inbound from every member from the start, and block traffic to a member (a block out policy in the place of the encrypting one) until its outbound SA exists: nothing is sent or accepted in clear text while a pair is keyed, at the price of no connectivity to a member until its SAs exist. A member is known from its first report (its key); exemptions still pass.',
      { default: false },
    ),
    exemptions: list('Traffic between members that stays in clear text.', exemption, { maxItems: 32, 'x-kubernetes-list-type': 'atomic' }),
    rotation,
  },
  {
    'x-kubernetes-validations': [
      rule('!self.esn || self.replayWindow > 0', 'esn needs a replayWindow above 0', { fieldPath: '.replayWindow' }),
      rule("!has(self.exemptions) || self.exemptions.all(e, e.protocol != 'ipv6-icmp' || 'IPv6' in self.addressFamilies)", 'an ipv6-icmp exemption needs the IPv6 family', { fieldPath: '.exemptions' }),
    ],
  },
);

const condition = conditionSchema(
  'Ready: every member pair has its SAs in both directions. Rotating: a key rotation is under way.',
  'Human-readable detail. Never key material.',
);

const nodeSummary: Schema = obj('How one member stands.', {
  name: str('Node name.'),
  generation: int('The key generation the node currently publishes.', 0, Number.MAX_SAFE_INTEGER),
  peers: int('Peers this node sends to and receives from over the current generations.', 0, 1_000_000),
  expectedPeers: int('Members it should have SAs with.', 0, 1_000_000),
  rotating: bool('Whether the node has a rotation under way.'),
  lastRotationTime: str('When its last requested rotation completed.', { format: 'date-time' }),
  reason: str('CamelCase, when the node does not take part: AgentMissing (no report from its agent yet), or the reason its agent gives (e.g. NoAddress).', { maxLength: 1024 }),
}, { required: ['name'] });

const round: Schema = obj(
  'A mesh-wide rotation under way (status.keyGeneration counts them): every member gets one request in it, at most rotation.maxConcurrent at once.',
  {
    keyGeneration: int('The keyGeneration this rotation makes.', 1, Number.MAX_SAFE_INTEGER),
    reason: oneOf('Interval or Manual.', ['Interval', 'Manual']),
    startedAt: str('When it started.', { format: 'date-time' }),
    pending: list('Members not yet asked.', str('Node name.', { maxLength: 253 }), { maxItems: 5000, 'x-kubernetes-list-type': 'atomic' }),
  },
  { required: ['keyGeneration', 'reason', 'startedAt'] },
);

export const ipsecMeshStatus: Schema = obj('What the controller reports for the mesh, from the members\' IpsecNodeStates.', {
  observedGeneration: int('Generation last processed.', 0, Number.MAX_SAFE_INTEGER),
  conditions: list('Ready and Rotating.', condition, { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] }),
  keyGeneration: int('How many mesh-wide rotations the controller has scheduled (each node counts its own key generations).', 0, Number.MAX_SAFE_INTEGER),
  lastRotationTime: str('When the last mesh-wide rotation completed.', { format: 'date-time' }),
  members: obj('Counts.', {
    selected: int('Nodes selected.', 0, 1_000_000),
    ready: int('Nodes with SAs to and from every other member.', 0, 1_000_000),
    rotating: int('Nodes rotating now.', 0, 1_000_000),
  }),
  nodes: list('Per member.', nodeSummary, { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], maxItems: 5000 }),
  rotationRequests: list(
    'Rotations the controller asks nodes to make now (src/crd/mesh-contract.ts): the node\'s agent makes a new key generation for a requestId it has not acted on and reports progress in its IpsecNodeState status.meshes[].rotation; the controller drops the request once the node reports Done.',
    obj(
      'One rotation of one node.',
      {
        node: str('Node name.', { maxLength: 253 }),
        requestId: str('Unique per request; an agent acts on each requestId once, across restarts.', { minLength: 1, maxLength: 128 }),
        reason: oneOf('Why: the interval elapsed, a person asked (the rotate annotation or the CLI), or an SA of the node reached a soft limit.', ['Interval', 'Manual', 'SoftLimit']),
        requestedAt: str('When the controller asked.', { format: 'date-time' }),
      },
      { required: ['node', 'requestId', 'reason', 'requestedAt'] },
    ),
    { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['node'], maxItems: 1000 },
  ),
  round,
  requestSerial: int('Rotation requests issued so far (the serial in each requestId, so that none is reused).', 0, Number.MAX_SAFE_INTEGER),
  rotateAnnotationHandled: bool('The controller acted on the ipsec.xfrm.io/rotate annotation and is removing it: a controller restarted in between does not act on it twice.'),
});

// What an agent publishes about its part of a mesh (IpsecNodeState status.meshes[], the types
// are NodeMeshReport and MeshAdvertisement in ./mesh-contract.ts and ../mesh/types.ts). Public
// keys, SPIs, generations and boot ids only: nothing here is secret.
const NODE_NAME = { maxLength: 253, minLength: 1 };
const BOOT_ID = { maxLength: 64, minLength: 1 };
/** 32 bytes of X25519 public key in base64: 43 characters and one `=`. */
const PUBLIC_KEY_PATTERN = '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$';
const family = oneOf('Address family (the kernel name).', ['inet', 'inet6']);
const meshSpi = int('SPI the receiver allocated (256 and above; 1-255 are reserved).', 256, 0xffff_ffff);
const keyGeneration = (description: string) => int(description, 1, Number.MAX_SAFE_INTEGER);
const meshAddress = (description: string) => str(description, { pattern: '^([0-9]{1,3}(\\.[0-9]{1,3}){3}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$', maxLength: 45 });

const advertisement: Schema = obj(
  'The protocol data peers act on. Published only once the kernel holds what it claims.',
  {
    node: str('The node.', NODE_NAME),
    bootId: str("The node's boot id (/proc/sys/kernel/random/boot_id): every SA key is bound to it, so a reboot means new keys.", BOOT_ID),
    addresses: obj('One node address per family.', { inet: meshAddress('IPv4 node address.'), inet6: meshAddress('IPv6 node address.') }),
    podCIDRs: list("The node's pod CIDRs (tunnel mode).", str('A CIDR.', { maxLength: 49 }), { maxItems: 16, 'x-kubernetes-list-type': 'atomic' }),
    generations: list(
      'Published key generations, ascending; the last is current.',
      obj('One public key.', { generation: keyGeneration('Key generation.'), publicKey: str('Raw X25519 public key, base64 (32 bytes).', { pattern: PUBLIC_KEY_PATTERN }) }, { required: ['generation', 'publicKey'] }),
      { maxItems: 8, 'x-kubernetes-list-type': 'atomic' },
    ),
    inbound: list(
      'Inbound SAs the kernel holds: the sender switches to one only once it is here.',
      obj(
        'I hold the inbound SA from `from` at `fromGeneration` to me at `generation`, with this SPI.',
        {
          from: str('Sending node.', NODE_NAME),
          family,
          fromGeneration: keyGeneration("The sender's key generation."),
          fromBootId: str("The sender's boot id.", BOOT_ID),
          generation: keyGeneration("This node's key generation."),
          spi: meshSpi,
        },
        { required: ['from', 'family', 'fromGeneration', 'fromBootId', 'generation', 'spi'] },
      ),
      { maxItems: 20000, 'x-kubernetes-list-type': 'atomic' },
    ),
    outbound: list(
      'The SA each outbound policy pins: what this node sends on.',
      obj(
        'My outbound policy to `to` pins this SA.',
        {
          to: str('Receiving node.', NODE_NAME),
          family,
          generation: keyGeneration("This node's key generation."),
          toGeneration: keyGeneration("The receiver's key generation."),
          toBootId: str("The receiver's boot id.", BOOT_ID),
          spi: meshSpi,
          fromBootId: str("This node's boot id the SA's key was derived with, when it is not the advertisement's: an SA the kernel kept across a boot id change, sent on until the receiver acknowledges one for the new boot id.", BOOT_ID),
        },
        { required: ['to', 'family', 'generation', 'toGeneration', 'toBootId', 'spi'] },
      ),
      { maxItems: 10000, 'x-kubernetes-list-type': 'atomic' },
    ),
    peers: list(
      'The peers (and their boot ids) this node keeps SAs with: a leaving peer learns here that it was let go.',
      obj('A peer.', { node: str('Peer node.', NODE_NAME), bootId: str("The peer's boot id.", BOOT_ID) }, { required: ['node', 'bootId'] }),
      { maxItems: 5000, 'x-kubernetes-list-type': 'atomic' },
    ),
    leaving: bool('The node is leaving the mesh: it installs nothing new, keeps what peers still use, then withdraws.'),
  },
  { required: ['node', 'bootId', 'addresses', 'generations', 'inbound', 'outbound', 'peers', 'leaving'] },
);

export const nodeMeshReport: Schema = obj(
  "One mesh as this node's agent reports it (src/crd/mesh-contract.ts NodeMeshReport).",
  {
    mesh: str('IpsecMesh name.', NODE_NAME),
    uid: str('IpsecMesh uid (a mesh made again under the same name is another mesh).', { minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' }),
    advertisement,
    rotation: obj(
      'The last rotation request this node acted on. Rotating acknowledges the request (the agent made its new generation); Done: the older generations retired.',
      {
        requestId: str('The requestId of IpsecMesh status.rotationRequests[].', { minLength: 1, maxLength: 128 }),
        state: oneOf('Rotating or Done.', ['Rotating', 'Done']),
        generation: keyGeneration('The generation the request made.'),
        startedAt: str('When the agent started it.', { format: 'date-time' }),
        completedAt: str('When it was done.', { format: 'date-time' }),
      },
      { required: ['requestId', 'state', 'generation', 'startedAt'] },
    ),
    rotationWanted: oneOf('The agent asks for a rotation: an outbound SA of this mesh reached a soft limit, or a key cannot be installed again. Cleared once a rotation starts.', ['SoftLimit']),
    expectedPeers: int('Members this node should have SAs with.', 0, 1_000_000),
    readyPeers: int('Members it has SAs with in both directions.', 0, 1_000_000),
    sequenceUsage: { type: 'number', description: 'Highest fraction of sequence space used by an outbound SA of this mesh.', minimum: 0, maximum: 1 },
    reason: str('CamelCase, when the node cannot take part (NoAddress, KeyStoreError, ...).', { maxLength: 1024 }),
    message: str('Detail for reason. Never key material.', { maxLength: 4096 }),
  },
  { required: ['mesh', 'uid', 'advertisement', 'expectedPeers', 'readyPeers'] },
);

/** The CRD object, as renderCrds() lists it. */
export function renderMeshCrd(): Schema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${MESH_NAMES.plural}.${API_GROUP}` },
    spec: {
      group: API_GROUP,
      scope: 'Cluster',
      names: {
        kind: MESH_NAMES.kind,
        listKind: `${MESH_NAMES.kind}List`,
        plural: MESH_NAMES.plural,
        singular: MESH_NAMES.singular,
        shortNames: [...MESH_NAMES.shortNames],
        categories: ['ipsec'],
      },
      versions: [
        {
          name: API_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Mode', type: 'string', jsonPath: '.spec.mode' },
            { name: 'AEAD', type: 'string', jsonPath: '.spec.aead', priority: 1 },
            { name: 'Members', type: 'integer', jsonPath: '.status.members.selected' },
            { name: 'Ready-Members', type: 'integer', jsonPath: '.status.members.ready' },
            { name: 'Key-Generation', type: 'integer', jsonPath: '.status.keyGeneration', priority: 1 },
            { name: 'Ready', type: 'string', jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
            { name: 'Rotating', type: 'string', jsonPath: ".status.conditions[?(@.type=='Rotating')].status" },
            { name: 'Last-Rotation', type: 'date', jsonPath: '.status.lastRotationTime', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'IpsecMesh: ESP between every pair of selected nodes, with keys the agents derive and rotate themselves.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: 'APIVersion of this object.' },
                kind: { type: 'string', description: 'Kind of this object.' },
                metadata: { type: 'object' },
                spec: ipsecMeshSpec,
                status: ipsecMeshStatus,
              },
            },
          },
        },
      ],
    },
  };
}
