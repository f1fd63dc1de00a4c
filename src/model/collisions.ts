/**
 * Two resources of one input that ask for the same kernel identity (the same SA destination,
 * SPI, protocol and mark; the same policy direction, selector, type, mark and if_id). The
 * kernel holds one entry per identity, so one of them could never be applied; the CLI refuses
 * the input and names both resources and where each was written. Pure.
 *
 * (The agent and the controller resolve the same collision by age instead, the older resource
 * keeping the identity: ../model/ordering.ts.)
 */
import type { DesiredTables } from '../plan/planner.js';
import { policyKey, stateKey } from '../plan/identity.js';
import type { DocumentSource, ManifestError } from './manifests.js';

/** Where each resource (`Kind/name`) of the input was written. */
export type SourceOf = (resource: string) => DocumentSource | undefined;

export function identityCollisions(tables: DesiredTables, sourceOf: SourceOf): ManifestError[] {
  const errors: ManifestError[] = [];
  const check = (resource: string, key: string, holders: Map<string, string>, what: string) => {
    const first = holders.get(key);
    if (first === undefined) {
      holders.set(key, resource);
      return;
    }
    if (first === resource) return;
    const firstSource = sourceOf(first);
    errors.push({
      source: sourceOf(resource),
      object: resource,
      path: 'spec',
      reason: 'InvalidSpec',
      message: `asks for the same ${what} as ${first}${firstSource ? ` (${firstSource.file}: document ${firstSource.index})` : ''}; the kernel holds one entry per identity`,
    });
  };
  const states = new Map<string, string>();
  for (const { resource, entry } of tables.states) check(resource, stateKey(entry.id), states, 'SA (destination, SPI, protocol and mark)');
  const policies = new Map<string, string>();
  for (const { resource, entry } of tables.policies) check(resource, policyKey(entry.id), policies, 'policy (direction, selector, type, mark and if_id)');
  return errors;
}
