/**
 * Reading manifests: YAML files holding SecurityAssociation, IpsecPolicy and Secret documents,
 * as `kubectl apply -f` would take them. Every document is validated against the CRD schema
 * and CEL rules; each problem names the file, the document and the field path.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { GROUP_VERSION, type IpsecPolicyResource, type IpsecResource, type SecurityAssociationResource } from '../crd/types.js';
import { validateSpec, type FieldError } from '../crd/validate.js';

/** Where a document came from: `file` and its 1-based position in that file. */
export interface DocumentSource {
  readonly file: string;
  readonly index: number;
}

export interface ManifestError extends FieldError {
  /** Absent for resources read from the API server rather than files. */
  readonly source: DocumentSource | undefined;
  /** `Kind/name` when the document got far enough to have them. */
  readonly object: string | undefined;
  /** Status reason (MissingSecret, InvalidKey, InvalidSpec) for errors found while building. */
  readonly reason?: string;
}

export interface Sourced<T> {
  readonly resource: T;
  readonly source: DocumentSource | undefined;
}

/** Resources and their keys, from files (the CLI) or from the API server's caches (the agent). */
export interface ResourceSet {
  readonly securityAssociations: readonly Sourced<SecurityAssociationResource>[];
  readonly policies: readonly Sourced<IpsecPolicyResource>[];
  /** Secret name → key → bytes. */
  readonly secrets: ReadonlyMap<string, ReadonlyMap<string, Buffer>>;
}

export interface ManifestSet {
  readonly securityAssociations: Sourced<SecurityAssociationResource>[];
  readonly policies: Sourced<IpsecPolicyResource>[];
  /** Secret name → key → bytes. */
  readonly secrets: Map<string, Map<string, Buffer>>;
  readonly errors: ManifestError[];
}

export function formatManifestError(error: ManifestError): string {
  const document = error.source ? `${error.source.file}: document ${error.source.index}` : undefined;
  const where = [document, error.object && (document ? `(${error.object})` : error.object)].filter(Boolean).join(' ');
  return `${where}: ${error.path}: ${error.message}`;
}

/**
 * Expands directories (their *.yaml / *.yml / *.json files, sorted) and reads every file;
 * `-` reads standard input, as with `kubectl apply -f -`.
 */
export async function loadManifests(paths: readonly string[]): Promise<ManifestSet> {
  const files: string[] = [];
  for (const path of paths) files.push(...(path === '-' ? [path] : await expand(path)));
  const texts = await Promise.all(
    files.map(async (file) => ({ file: file === '-' ? '<stdin>' : file, text: file === '-' ? await readStdin() : await readFile(file, 'utf8') })),
  );
  return parseManifests(texts);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function expand(path: string): Promise<string[]> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot read ${path}: ${error.code === 'ENOENT' ? 'no such file or directory' : error.message}`);
  });
  if (!info.isDirectory()) return [path];
  const names = (await readdir(path)).filter((name) => /\.(ya?ml|json)$/.test(name)).sort();
  return names.map((name) => join(path, name));
}

/** Pure core of loadManifests: parses and validates already-read files. */
export function parseManifests(files: readonly { file: string; text: string }[]): ManifestSet {
  const set: ManifestSet = { securityAssociations: [], policies: [], secrets: new Map(), errors: [] };
  const seen = new Map<string, DocumentSource>();
  for (const { file, text } of files) {
    const documents = parseAllDocuments(text);
    if (!Array.isArray(documents)) continue; // an empty stream
    documents.forEach((document, position) => {
      const source = { file, index: position + 1 };
      const fail = (path: string, message: string, object?: string) => set.errors.push({ source, object, path, message });
      if (document.errors.length > 0) {
        for (const error of document.errors) fail('(yaml)', error.message.split('\n')[0] ?? error.message);
        return;
      }
      const value: unknown = document.toJS({ maxAliasCount: 100 });
      if (value === null || value === undefined) return; // `---` with nothing after it
      if (typeof value !== 'object' || Array.isArray(value)) {
        fail('(document)', 'is not a mapping');
        return;
      }
      const object = value as Record<string, unknown>;
      const kind = object['kind'];
      const metadata = object['metadata'] as Record<string, unknown> | undefined;
      const name = typeof metadata?.['name'] === 'string' ? metadata['name'] : undefined;
      const label = typeof kind === 'string' && name ? `${kind}/${name}` : undefined;
      if (kind === 'Secret' && object['apiVersion'] === 'v1') {
        readSecret(object, name, (path, message) => fail(path, message, label), set.secrets);
        return;
      }
      if (kind !== 'SecurityAssociation' && kind !== 'IpsecPolicy') {
        fail('kind', `unsupported kind ${JSON.stringify(kind)}: expected SecurityAssociation, IpsecPolicy or Secret`, label);
        return;
      }
      if (object['apiVersion'] !== GROUP_VERSION) {
        fail('apiVersion', `must be ${GROUP_VERSION}`, label);
        return;
      }
      if (!name || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) {
        fail('metadata.name', 'must be a DNS subdomain name (lower case letters, digits, "-" and ".")', label);
        return;
      }
      const errors = validateSpec(kind, object['spec']);
      if (object['spec'] === undefined) errors.splice(0, errors.length, { path: 'spec', message: 'required field "spec" is missing' });
      for (const error of errors) fail(error.path, error.message, label);
      if (errors.length > 0) return;
      const key = `${kind}/${name}`;
      const previous = seen.get(key);
      if (previous) {
        fail('metadata.name', `${key} is also defined in ${previous.file}: document ${previous.index}`, label);
        return;
      }
      seen.set(key, source);
      const resource = object as unknown as IpsecResource;
      if (resource.kind === 'SecurityAssociation') set.securityAssociations.push({ resource, source });
      else set.policies.push({ resource, source });
    });
  }
  return set;
}

function readSecret(
  object: Record<string, unknown>,
  name: string | undefined,
  fail: (path: string, message: string) => void,
  secrets: Map<string, Map<string, Buffer>>,
): void {
  if (!name) {
    fail('metadata.name', 'a Secret needs a name');
    return;
  }
  const values = new Map<string, Buffer>();
  const data = object['data'];
  const stringData = object['stringData'];
  for (const [field, entries, decode] of [
    ['data', data, (text: string) => Buffer.from(text, 'base64')],
    ['stringData', stringData, (text: string) => Buffer.from(text, 'utf8')],
  ] as const) {
    if (entries === undefined || entries === null) continue;
    if (typeof entries !== 'object' || Array.isArray(entries)) {
      fail(field, 'must be a mapping of key to value');
      continue;
    }
    for (const [key, text] of Object.entries(entries)) {
      if (typeof text !== 'string') {
        fail(`${field}.${key}`, 'must be a string');
        continue;
      }
      if (field === 'data' && !/^[A-Za-z0-9+/]*={0,2}$/.test(text.replace(/\s+/g, ''))) {
        // Never echo the value: it is key material.
        fail(`${field}.${key}`, 'is not valid base64');
        continue;
      }
      values.set(key, decode(text));
    }
  }
  if (secrets.has(name)) {
    fail('metadata.name', `Secret "${name}" is defined twice`);
    return;
  }
  secrets.set(name, values);
}
