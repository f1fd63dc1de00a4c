/**
 * What one IpsecMesh means for this node, from the agent's caches: whether the mesh selects it,
 * its node addresses (the Node's status address of the mesh's addressType, first per family),
 * the peers' advertisements (from their IpsecNodeStates), its own last published report (what a
 * restarted agent resumes from), the rotation request addressed to it, and the mesh's spec with
 * the schema's defaults as the entries and the rotation rules need it. Pure: no I/O, no clock.
 */
import type { V1Node } from '@kubernetes/client-node';
import { meshReportOf, type IpsecMeshObject, type MeshRotationRequest, type NodeMeshReport } from '../crd/mesh-contract.js';
import { parseDuration } from '../crd/mesh-object.js';
import { reportedNode, type IpsecNodeState } from '../crd/node-state.js';
import { selectsNode } from '../model/node-selector.js';
import type { MeshIdentity } from '../mesh/derive.js';
import type { MeshEntriesSpec, MeshExemption } from '../mesh/entries.js';
import type { MeshSelf } from '../mesh/rotation.js';
import type { MeshAdvertisement } from '../mesh/types.js';
import { formatAddress, parseAddress, type ParsedAddress } from '../xfrm/address.js';
import type { AddressFamily } from '../xfrm/types.js';

const FAMILY: Readonly<Record<'IPv4' | 'IPv6', AddressFamily>> = { IPv4: 'inet', IPv6: 'inet6' };
const PROTOCOL_NUMBER: Readonly<Record<string, number>> = { tcp: 6, udp: 17, sctp: 132, icmp: 1, 'ipv6-icmp': 58 };

export interface MeshView {
  readonly mesh: IpsecMeshObject;
  readonly identity: MeshIdentity;
  /** Whether the mesh selects this node (a node no longer selected leaves in two phases). */
  readonly selected: boolean;
  /** Selected nodes, ascending (this one included when selected). */
  readonly members: readonly string[];
  /** This node as the mesh sees it; undefined without its Node object. */
  readonly self: MeshSelf | undefined;
  /** Every other node's advertisement that this node must act on: members, and nodes let go that are still leaving. */
  readonly peers: ReadonlyMap<string, MeshAdvertisement>;
  /** This node's report as the API server holds it (what it published before a restart). */
  readonly published: NodeMeshReport | undefined;
  /** The controller's rotation request for this node, if any. */
  readonly request: MeshRotationRequest | undefined;
}

export interface MeshViewInput {
  readonly mesh: IpsecMeshObject;
  readonly nodes: readonly V1Node[];
  readonly nodeStates: readonly IpsecNodeState[];
  readonly nodeName: string;
  readonly bootId: string;
}

export function meshView(input: MeshViewInput): MeshView {
  const { mesh, nodeName } = input;
  const identity = { name: mesh.metadata.name ?? '', uid: mesh.metadata.uid ?? '' };
  const members = input.nodes
    .filter((node) => selectsNode(mesh.spec.nodeSelector, node.metadata?.labels ?? {}))
    .map((node) => node.metadata?.name ?? '')
    .filter((name) => name !== '')
    .sort();
  const memberSet = new Set(members);
  const nodeNames = new Set(input.nodes.map((node) => node.metadata?.name ?? ''));
  const own = input.nodes.find((node) => node.metadata?.name === nodeName);
  const self: MeshSelf | undefined = own
    ? { node: nodeName, bootId: input.bootId, addresses: nodeAddresses(own, mesh.spec.addressType ?? 'InternalIP', meshFamilies(mesh)), podCIDRs: podCIDRs(own) }
    : undefined;

  const peers = new Map<string, MeshAdvertisement>();
  let published: NodeMeshReport | undefined;
  for (const state of input.nodeStates) {
    const node = reportedNode(state);
    const report = meshReportOf(state.status, identity.name, identity.uid);
    if (report === undefined) continue;
    if (node === nodeName) {
      published = report;
      continue;
    }
    // An advertisement is its node's own word: one that names another node is ignored.
    if (report.advertisement.node !== node) continue;
    // A node the selector let go stays a peer until it publishes that it is leaving (rule 7 of
    // ../mesh/rotation.ts: it accepts clear text first, then its peers stop encrypting to it);
    // one whose Node is gone is not waited for.
    if (memberSet.has(node) || report.advertisement.leaving || nodeNames.has(node)) peers.set(node, report.advertisement);
  }
  return {
    mesh,
    identity,
    selected: memberSet.has(nodeName),
    members,
    self,
    peers,
    published,
    request: mesh.status?.rotationRequests?.find((request) => request.node === nodeName),
  };
}

export function meshFamilies(mesh: IpsecMeshObject): AddressFamily[] {
  return (mesh.spec.addressFamilies ?? ['IPv4']).map((family) => FAMILY[family]);
}

/**
 * The first status address of `type` per family (InternalIP by default, as the schema says), in
 * canonical text. The API server keeps a Node's addresses as written (`2001:DB8:0::1` is
 * accepted as is), while the kernel dumps SAs with canonical addresses and the planner and the
 * mesh compare addresses as strings: an address kept as written would name SAs the kernel never
 * shows, so the mesh would never converge. One that is no address at all is skipped.
 */
export function nodeAddresses(node: V1Node, type: 'InternalIP' | 'ExternalIP', families: readonly AddressFamily[]): Partial<Record<AddressFamily, string>> {
  const addresses: Partial<Record<AddressFamily, string>> = {};
  for (const entry of node.status?.addresses ?? []) {
    if (entry.type !== type) continue;
    let parsed: ParsedAddress;
    try {
      parsed = parseAddress(entry.address);
    } catch {
      continue;
    }
    if (families.includes(parsed.family) && addresses[parsed.family] === undefined) addresses[parsed.family] = formatAddress(parsed.family, parsed.bytes);
  }
  return addresses;
}

function podCIDRs(node: V1Node): string[] {
  const cidrs = node.spec?.podCIDRs ?? (node.spec?.podCIDR !== undefined ? [node.spec.podCIDR] : []);
  return [...cidrs];
}

/** The entries' parameters, with the schema's defaults (the API server fills them in; a fake may not). */
export function meshEntriesSpec(mesh: IpsecMeshObject, identity: MeshIdentity): MeshEntriesSpec {
  const spec = mesh.spec;
  const nat = spec.natTraversal;
  const exemptions: MeshExemption[] = (spec.exemptions ?? []).map((e) => ({ protocol: PROTOCOL_NUMBER[e.protocol]!, ...(e.port !== undefined ? { port: e.port } : {}) }));
  return {
    mesh: identity,
    aead: spec.aead ?? 'rfc4106-gcm-aes256',
    mode: spec.mode ?? 'transport',
    esn: spec.esn ?? true,
    replayWindow: spec.replayWindow ?? 128,
    ...(nat !== undefined ? { natTraversal: { sourcePort: nat.sourcePort ?? 4500, destinationPort: nat.destinationPort ?? 4500 } } : {}),
    failClosed: spec.failClosed ?? false,
    exemptions,
    ...(spec.rotation?.softByteLimit !== undefined ? { softByteLimit: BigInt(spec.rotation.softByteLimit) } : {}),
    ...(spec.rotation?.softPacketLimit !== undefined ? { softPacketLimit: BigInt(spec.rotation.softPacketLimit) } : {}),
  };
}

/** The agent's timers (schema defaults: grace 30s, backstop 1h). */
export function meshTimers(mesh: IpsecMeshObject): { readonly gracePeriodMs: number; readonly backstopMs: number } {
  return { gracePeriodMs: parseDuration(mesh.spec.rotation?.gracePeriod ?? '30s'), backstopMs: parseDuration(mesh.spec.rotation?.backstop ?? '1h') };
}
