/**
 * Which cache events can change what the agent's reconcile does: pure predicates over the
 * old and new objects, so the agent reconciles on changes that concern its node and not on
 * every status write, finalizer patch or other node's resource in the cluster (with 2,000
 * policies over 50 nodes, most events are one of those).
 *
 * A resource concerns this node when its nodeSelector matches the node's labels, or when the
 * labels are not known yet (no guess: reconcile). Entries of a resource the node no longer
 * selects are pruned by the reconcile that sees the change of selection, which is a spec
 * change; a node whose labels change re-reads everything.
 */
import type { V1Node, V1Secret } from '@kubernetes/client-node';
import type { LabelSelector } from '../crd/types.js';
import { selectsNode } from '../model/node-selector.js';

export interface SelectableResource {
  readonly metadata: { readonly name?: string; readonly generation?: number; readonly deletionTimestamp?: string | Date };
  readonly spec: { readonly nodeSelector?: LabelSelector };
}

export function concernsNode(resource: SelectableResource, labels: Readonly<Record<string, string>> | undefined): boolean {
  return labels === undefined || selectsNode(resource.spec.nodeSelector, labels);
}

/**
 * An update that the reconcile can see: the spec (generation; metadata.generation moves with
 * every spec change of a custom resource) or the deletion, of a resource that concerns the
 * node before or after.
 */
export function resourceChanged(old: SelectableResource, object: SelectableResource, labels: Readonly<Record<string, string>> | undefined): boolean {
  if (old.metadata.generation === object.metadata.generation && String(old.metadata.deletionTimestamp ?? '') === String(object.metadata.deletionTimestamp ?? '')) return false;
  return concernsNode(old, labels) || concernsNode(object, labels);
}

export function secretChanged(old: V1Secret, secret: V1Secret): boolean {
  return !sameRecord(old.data, secret.data);
}

export function labelsChanged(old: V1Node, node: V1Node): boolean {
  return !sameRecord(old.metadata?.labels, node.metadata?.labels);
}

function sameRecord(a: Readonly<Record<string, string>> | undefined, b: Readonly<Record<string, string>> | undefined): boolean {
  const keysA = Object.keys(a ?? {});
  if (keysA.length !== Object.keys(b ?? {}).length) return false;
  return keysA.every((key) => Object.prototype.hasOwnProperty.call(b, key) && a![key] === b![key]);
}
