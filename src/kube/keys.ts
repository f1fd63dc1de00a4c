/**
 * Work-queue keys, as client-go's MetaNamespaceKeyFunc makes them: `namespace/name`, or just
 * `name` for cluster-scoped objects. Reconcilers get the key, never the event's object, and read
 * the current object from the cache.
 */
export interface ObjectKeyParts {
  name: string;
  namespace?: string;
}

export interface HasMetadata {
  metadata?: { name?: string; namespace?: string };
}

export function objectKey(object: HasMetadata): string {
  const name = object.metadata?.name;
  if (name === undefined || name === '') throw new Error('object has no metadata.name: it cannot be keyed');
  return keyOf({ name, namespace: object.metadata?.namespace });
}

export function keyOf(parts: ObjectKeyParts): string {
  return parts.namespace !== undefined && parts.namespace !== '' ? `${parts.namespace}/${parts.name}` : parts.name;
}

export function splitKey(key: string): ObjectKeyParts {
  const slash = key.indexOf('/');
  if (slash < 0) return { name: key };
  if (slash === 0 || slash === key.length - 1 || key.indexOf('/', slash + 1) >= 0) {
    throw new Error(`malformed object key ${JSON.stringify(key)}: expected "name" or "namespace/name"`);
  }
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}
