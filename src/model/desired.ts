/**
 * The desired XFRM tables of one node: the resources that select it, built into kernel
 * entries with their keys. Pure; the caller supplies the node's labels and interfaces.
 */
import type { SecurityAssociation, SecurityPolicy } from '../xfrm/types.js';
import type { DesiredTables, DesiredEntry } from '../plan/planner.js';
import { buildSecurityAssociation, buildSecurityPolicy, type BuildContext } from './build.js';
import type { ManifestError, ResourceSet } from './manifests.js';
import { selectsNode } from './node-selector.js';

export interface NodeView {
  /** The node's labels; undefined selects every resource (the CLI without --node-labels). */
  readonly labels: Readonly<Record<string, string>> | undefined;
  readonly resolveDevice: BuildContext['resolveDevice'];
}

export interface DesiredResult {
  readonly tables: DesiredTables;
  readonly errors: ManifestError[];
}

export function desiredTables(set: ResourceSet, node: NodeView): DesiredResult {
  const errors: ManifestError[] = [];
  const context: BuildContext = {
    resolveDevice: node.resolveDevice,
    keys: {
      lookup(name, key) {
        const secret = set.secrets.get(name);
        if (!secret) return 'missing-secret';
        return secret.get(key) ?? 'missing-key';
      },
    },
  };
  const states: DesiredEntry<SecurityAssociation>[] = [];
  for (const { resource, source } of set.securityAssociations) {
    if (node.labels && !selectsNode(resource.spec.nodeSelector, node.labels)) continue;
    const built = buildSecurityAssociation(resource.spec, context);
    const object = `SecurityAssociation/${resource.metadata.name}`;
    if (built.ok) states.push({ resource: object, entry: built.value });
    else errors.push(...built.errors.map((error) => ({ ...error, source, object })));
  }
  const policies: DesiredEntry<SecurityPolicy>[] = [];
  for (const { resource, source } of set.policies) {
    if (node.labels && !selectsNode(resource.spec.nodeSelector, node.labels)) continue;
    const built = buildSecurityPolicy(resource.spec, context);
    const object = `IpsecPolicy/${resource.metadata.name}`;
    if (built.ok) policies.push({ resource: object, entry: built.value });
    else errors.push(...built.errors.map((error) => ({ ...error, source, object })));
  }
  return { tables: { states, policies }, errors };
}
