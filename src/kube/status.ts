/**
 * Writes the `.status` of a custom resource through its status subresource, with server-side
 * apply (Content-Type application/apply-patch+yaml, a fieldManager, force): the manager owns
 * exactly the status fields it sends, a field it stops sending is removed, and other managers'
 * fields (e.g. conditions of another type, with listType=map) are left alone. client-node 2.x's
 * generated patch methods default to JSON Patch, so the content type is set explicitly.
 *
 * Nothing is written when the desired status equals the current one: a level-based reconciler
 * runs often (every resync), and a write per run would bump resourceVersion, wake every watcher
 * and loop through our own informer.
 */
import { PatchStrategy, setHeaderOptions, type CustomObjectsApi } from '@kubernetes/client-node';

export interface StatusTarget {
  group: string;
  version: string;
  plural: string;
  kind: string;
  name: string;
  /** Absent for cluster-scoped resources. */
  namespace?: string;
}

export type StatusApi = Pick<CustomObjectsApi, 'patchClusterCustomObjectStatus' | 'patchNamespacedCustomObjectStatus'>;

export interface StatusWriteOptions {
  /**
   * Only write if the object is still at this resourceVersion (409 Conflict otherwise): for a
   * status computed from a spec that must not have changed meanwhile.
   */
  resourceVersion?: string;
}

export type StatusWriteResult = { written: false } | { written: true; object: unknown };

export class StatusWriter {
  private readonly apply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

  constructor(
    private readonly api: StatusApi,
    /** Names this writer in managedFields, e.g. `ipsec-operator-controller`. */
    private readonly fieldManager: string,
  ) {
    if (fieldManager === '') throw new Error('a status writer needs a field manager name');
  }

  /**
   * Applies `desired` as the status of `target` unless it equals `current` (the status as last
   * read, e.g. from the informer cache). Throws the API error (the caller's reconcile retries).
   */
  async write(target: StatusTarget, current: unknown, desired: Record<string, unknown>, options: StatusWriteOptions = {}): Promise<StatusWriteResult> {
    if (statusEqual(current, desired)) return { written: false };
    const metadata: Record<string, string> = { name: target.name };
    if (target.namespace !== undefined) metadata.namespace = target.namespace;
    if (options.resourceVersion !== undefined) metadata.resourceVersion = options.resourceVersion;
    const body = { apiVersion: `${target.group}/${target.version}`, kind: target.kind, metadata, status: desired };
    const common = { group: target.group, version: target.version, plural: target.plural, name: target.name, body, fieldManager: this.fieldManager, force: true };
    const object: unknown =
      target.namespace === undefined
        ? await this.api.patchClusterCustomObjectStatus(common, this.apply)
        : await this.api.patchNamespacedCustomObjectStatus({ ...common, namespace: target.namespace }, this.apply);
    return { written: true, object };
  }
}

/**
 * Deep equality as the API server sees JSON: object key order does not matter, absent and
 * `undefined` properties are the same, array order matters. Dates compare by their JSON form.
 */
export function statusEqual(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

function canonicalJson(value: unknown): string {
  return JSON.stringify(value === undefined ? null : value, (_key, item: unknown) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return item;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(item).sort()) {
      const field = (item as Record<string, unknown>)[key];
      if (field !== undefined) sorted[key] = field;
    }
    return sorted;
  });
}
