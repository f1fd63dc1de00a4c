/**
 * Which cache events can change what the agent's mesh work does (pure predicates, like
 * ./cache-changes.ts for the hand-written resources): a mesh's spec, deletion or rotation
 * requests (not the rest of the controller's status); a Node's labels, addresses or pod CIDRs
 * (not its heartbeats, which change its status every few seconds); an IpsecNodeState's
 * `status.meshes` (not the other fields every agent rewrites).
 */
import type { V1Node } from '@kubernetes/client-node';
import type { IpsecMeshObject } from '../crd/mesh-contract.js';
import type { IpsecNodeState } from '../crd/node-state.js';
import { statusEqual } from '../kube/status.js';

export function meshInputsChanged(old: IpsecMeshObject, mesh: IpsecMeshObject): boolean {
  return (
    old.metadata.uid !== mesh.metadata.uid ||
    old.metadata.generation !== mesh.metadata.generation ||
    (old.metadata.deletionTimestamp === undefined) !== (mesh.metadata.deletionTimestamp === undefined) ||
    !statusEqual(old.status?.rotationRequests, mesh.status?.rotationRequests)
  );
}

export function meshNodeChanged(old: V1Node, node: V1Node): boolean {
  return (
    !statusEqual(old.metadata?.labels, node.metadata?.labels) ||
    !statusEqual(old.status?.addresses, node.status?.addresses) ||
    !statusEqual(old.spec?.podCIDRs ?? old.spec?.podCIDR, node.spec?.podCIDRs ?? node.spec?.podCIDR)
  );
}

export function nodeStateMeshesChanged(old: IpsecNodeState, state: IpsecNodeState): boolean {
  return !statusEqual(old.status?.meshes, state.status?.meshes);
}
