/**
 * The agent's side of the rotation contract (../crd/mesh-contract.ts), pure: whether a rotation
 * request is one to act on, when an acted-on request is done, how many peers are ready, and the
 * NodeMeshReport a pass publishes. The time is an input; nothing here does I/O.
 */
import type { MeshRotationRequest, NodeMeshReport } from '../crd/mesh-contract.js';
import type { RotationRecord } from '../mesh/key-store.js';
import { FAMILIES } from '../mesh/rotation.js';
import type { MeshAdvertisement, MeshLocalState } from '../mesh/types.js';

/**
 * A request is acted on once: when its requestId is not the one the key store recorded. The
 * record is written together with the generation the request makes (one file replace), so an
 * agent killed at any point either has both or neither.
 */
export function shouldStart(request: MeshRotationRequest | undefined, record: RotationRecord | undefined): request is MeshRotationRequest {
  return request !== undefined && request.requestId !== record?.requestId;
}

/**
 * Done once the generation the request made is published and no older generation is live any
 * more (rule 4 of ../mesh/rotation.ts retired them: every peer switched both ways).
 */
export function progressed(record: RotationRecord | undefined, local: MeshLocalState, now: Date): RotationRecord | undefined {
  if (record === undefined || record.state === 'Done') return record;
  const made = local.generations.find((g) => g.generation === record.generation);
  if (made === undefined) {
    // The generation is gone (removed by a backstop, or the state was reset): nothing to wait for.
    return { ...record, state: 'Done', completedAt: apiTime(now) };
  }
  if (made.publishedAt === undefined) return record;
  const older = local.generations.some((g) => g.generation < record.generation && !g.retiring);
  return older ? record : { ...record, state: 'Done', completedAt: apiTime(now) };
}

/**
 * Peers this node has SAs with in both directions, in every family both have: it publishes
 * that it sends on an SA the peer acked, and the peer publishes that it sends on an SA this
 * node acked.
 */
export function readyPeers(advertisement: MeshAdvertisement, peers: ReadonlyMap<string, MeshAdvertisement>, members: ReadonlySet<string>): number {
  let ready = 0;
  for (const [peer, theirs] of peers) {
    if (!members.has(peer) || theirs.leaving) continue;
    const families = FAMILIES.filter((family) => advertisement.addresses[family] !== undefined && theirs.addresses[family] !== undefined);
    if (families.length === 0) continue;
    const ok = families.every((family) => {
      const sends = advertisement.outbound.find((u) => u.to === peer && u.family === family && u.toBootId === theirs.bootId);
      const sendsAcked =
        sends !== undefined && theirs.inbound.some((a) => a.from === advertisement.node && a.family === family && a.spi === sends.spi && a.fromBootId === advertisement.bootId);
      const receives = theirs.outbound.find((u) => u.to === advertisement.node && u.family === family && u.toBootId === advertisement.bootId);
      const receivesAcked = receives !== undefined && advertisement.inbound.some((a) => a.from === peer && a.family === family && a.spi === receives.spi && a.fromBootId === theirs.bootId);
      return sendsAcked && receivesAcked;
    });
    if (ok) ready += 1;
  }
  return ready;
}

export interface MeshReportInput {
  readonly mesh: { readonly name: string; readonly uid: string };
  readonly advertisement: MeshAdvertisement;
  readonly rotation: RotationRecord | undefined;
  readonly rotationWanted: boolean;
  readonly expectedPeers: number;
  readonly readyPeers: number;
  readonly sequenceUsage?: number;
  readonly reason?: string;
  readonly message?: string;
}

export function meshReport(input: MeshReportInput): NodeMeshReport {
  return {
    mesh: input.mesh.name,
    uid: input.mesh.uid,
    advertisement: input.advertisement,
    ...(input.rotation !== undefined ? { rotation: input.rotation } : {}),
    // Cleared while a rotation is under way: its new generation answers the soft limit.
    ...(input.rotationWanted && input.rotation?.state !== 'Rotating' ? { rotationWanted: 'SoftLimit' as const } : {}),
    expectedPeers: input.expectedPeers,
    readyPeers: input.readyPeers,
    ...(input.sequenceUsage !== undefined ? { sequenceUsage: input.sequenceUsage } : {}),
    ...(input.reason !== undefined ? { reason: input.reason } : {}),
    ...(input.message !== undefined ? { message: input.message } : {}),
  };
}

/** An advertisement with nothing in it: what a node that cannot take part publishes beside its reason. */
export function emptyAdvertisement(node: string, bootId: string): MeshAdvertisement {
  return { node, bootId, addresses: {}, podCIDRs: [], generations: [], inbound: [], outbound: [], peers: [], leaving: false };
}

/** metav1.Time: RFC 3339 with whole seconds. */
export function apiTime(time: Date): string {
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
