/**
 * Whole-object checks around the spec: the fields a document may have beside `spec`, and the
 * object metadata rules the API server applies (names, labels, annotations, finalizers).
 * Together with ./validate.ts (spec schema and CEL) this is what the server would refuse of a
 * SecurityAssociation or IpsecPolicy, or of a Secret's metadata; the CLI runs it on every
 * document, so nothing the cluster would refuse reaches a kernel through the CLI.
 */
import { quoted } from './echo.js';
import { dnsLabelProblems, dnsSubdomainProblems, labelValueProblems, qualifiedNameProblems } from './names.js';
import { validateSpec, type FieldError, type SpecKind } from './validate.js';

/** ObjectMeta fields and the JSON type each must have (absent or null is always allowed). */
const METADATA_FIELDS: Record<string, 'string' | 'integer' | 'map' | 'list' | 'string-or-null'> = {
  name: 'string',
  generateName: 'string',
  namespace: 'string',
  selfLink: 'string',
  uid: 'string',
  resourceVersion: 'string',
  generation: 'integer',
  creationTimestamp: 'string-or-null',
  deletionTimestamp: 'string-or-null',
  deletionGracePeriodSeconds: 'integer',
  labels: 'map',
  annotations: 'map',
  ownerReferences: 'list',
  finalizers: 'list',
  managedFields: 'list',
};

/** The API server's bound on all annotations of an object together (TotalAnnotationSizeLimitB). */
const ANNOTATIONS_LIMIT = 256 * 1024;

export const isMapping = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

export interface MetadataOptions {
  /** Secrets live in a namespace; the resources are cluster-scoped (a namespace is dropped). */
  readonly namespaced: boolean;
}

/** Problems of `metadata` as the API server would find them. */
export function metadataProblems(metadata: unknown, options: MetadataOptions): FieldError[] {
  const errors: FieldError[] = [];
  const fail = (path: string, message: string) => errors.push({ path, message });
  if (metadata === undefined || metadata === null) return [{ path: 'metadata.name', message: 'required field "name" is missing' }];
  if (!isMapping(metadata)) return [{ path: 'metadata', message: 'must be a mapping' }];
  for (const [field, value] of Object.entries(metadata)) {
    const type = METADATA_FIELDS[field];
    if (!type) {
      fail('metadata', `unknown field ${quoted(field)}`);
      continue;
    }
    if (value === null || value === undefined) continue;
    const ok =
      type === 'map' ? isMapping(value) : type === 'list' ? Array.isArray(value) : type === 'integer' ? Number.isInteger(value) : typeof value === 'string';
    if (!ok) fail(`metadata.${field}`, `must be ${type === 'map' ? 'a mapping' : type === 'list' ? 'a list' : type === 'integer' ? 'an integer' : 'a string'}`);
  }
  const name = metadata['name'];
  if (metadata['generateName'] !== undefined) fail('metadata.generateName', 'is not supported: apply needs metadata.name');
  if (name === undefined || name === null || name === '') fail('metadata.name', 'required field "name" is missing');
  else if (typeof name === 'string') for (const problem of dnsSubdomainProblems(name)) fail('metadata.name', problem);
  const namespace = metadata['namespace'];
  if (options.namespaced && typeof namespace === 'string' && namespace !== '') {
    for (const problem of dnsLabelProblems(namespace)) fail('metadata.namespace', problem);
  }
  const labels = metadata['labels'];
  if (isMapping(labels)) {
    for (const [key, value] of Object.entries(labels)) {
      const path = `metadata.labels[${quoted(key)}]`;
      for (const problem of qualifiedNameProblems(key)) fail(path, `key ${problem}`);
      if (typeof value !== 'string') fail(path, 'must be a string');
      else for (const problem of labelValueProblems(value)) fail(path, problem);
    }
  }
  const annotations = metadata['annotations'];
  if (isMapping(annotations)) {
    let size = 0;
    for (const [key, value] of Object.entries(annotations)) {
      const path = `metadata.annotations[${quoted(key)}]`;
      for (const problem of qualifiedNameProblems(key.toLowerCase())) fail(path, `key ${problem}`);
      if (typeof value !== 'string') fail(path, 'must be a string');
      size += key.length + (typeof value === 'string' ? value.length : 0);
    }
    if (size > ANNOTATIONS_LIMIT) fail('metadata.annotations', `may not hold more than ${ANNOTATIONS_LIMIT} bytes together`);
  }
  const finalizers = metadata['finalizers'];
  if (Array.isArray(finalizers)) {
    finalizers.forEach((finalizer, index) => {
      const path = `metadata.finalizers[${index}]`;
      if (typeof finalizer !== 'string') fail(path, 'must be a string');
      else for (const problem of qualifiedNameProblems(finalizer)) fail(path, problem);
    });
  }
  return errors;
}

/** The fields a custom resource document may hold; `status` is the server's to write and is ignored. */
const RESOURCE_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);

/**
 * Every problem of a SecurityAssociation or IpsecPolicy document (its `kind` already known):
 * top-level fields, apiVersion, metadata, then spec schema and CEL rules.
 */
export function resourceProblems(kind: SpecKind, object: Record<string, unknown>, groupVersion: string): FieldError[] {
  const errors: FieldError[] = [];
  for (const field of Object.keys(object)) {
    if (!RESOURCE_FIELDS.has(field)) errors.push({ path: '(document)', message: `unknown field ${quoted(field)}` });
  }
  if (object['apiVersion'] !== groupVersion) errors.push({ path: 'apiVersion', message: `must be ${groupVersion}` });
  errors.push(...metadataProblems(object['metadata'], { namespaced: false }));
  const status = object['status'];
  if (status !== undefined && status !== null && !isMapping(status)) errors.push({ path: 'status', message: 'must be a mapping' });
  if (object['spec'] === undefined || object['spec'] === null) errors.push({ path: 'spec', message: 'required field "spec" is missing' });
  else errors.push(...validateSpec(kind, object['spec']));
  return errors;
}
