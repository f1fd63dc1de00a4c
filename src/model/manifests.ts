/**
 * Reading manifests: YAML files holding SecurityAssociation, IpsecPolicy and Secret documents,
 * as `kubectl apply -f` would take them (YAML read as kubectl reads it, ./yaml-documents.ts).
 * Every document is validated as the API server would validate it (metadata, fields beside
 * `spec`, the CRD schema and CEL rules, Secrets' names, types and data); every problem of
 * every document is reported, each naming the file, the document and the field path.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GROUP_VERSION, type IpsecPolicyResource, type IpsecResource, type SecurityAssociationResource } from '../crd/types.js';
import type { FieldError } from '../crd/validate.js';
import { isMapping, resourceProblems } from '../crd/object.js';
import { dnsSubdomainProblems } from '../crd/names.js';
import { capMessage, quoted } from '../crd/echo.js';
import { readYamlDocuments } from './yaml-documents.js';
import { readSimpleYaml } from './yaml-fast.js';
import { readSecretDocument } from './secret-document.js';

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
  // Every part is built from capped, redacted pieces; the cap on the whole line is a backstop.
  return capMessage(`${where}: ${error.path}: ${error.message}`, 2048);
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
  const secretSources = new Map<string, DocumentSource>();
  for (const { file, text } of files) {
    // The simple form most manifests use is read fast; anything else, errors included, by the general reader.
    for (const document of readSimpleYaml(text) ?? readYamlDocuments(text)) {
      const source = { file, index: document.index };
      const fail = (path: string, message: string, object?: string) => set.errors.push({ source, object, path, message });
      for (const problem of document.problems) fail(problem.path, problem.message);
      const value = document.value;
      if (document.problems.length > 0 || value === null || value === undefined) continue; // `---` with nothing after it
      if (!isMapping(value)) {
        fail('(document)', 'is not a mapping');
        continue;
      }
      const kind = value['kind'];
      const metadata = isMapping(value['metadata']) ? value['metadata'] : undefined;
      const rawName = metadata?.['name'];
      // Only a valid name is shown in a label: anything else could be unbounded or worse.
      const name = typeof rawName === 'string' && dnsSubdomainProblems(rawName).length === 0 ? rawName : undefined;
      if (kind === 'Secret') {
        const label = name ? `Secret/${name}` : undefined;
        const secret = readSecretDocument(value);
        for (const error of secret.errors) fail(error.path, error.message, label);
        if (!secret.values || !name) continue;
        const previous = secretSources.get(name);
        if (previous) {
          fail('metadata.name', `Secret "${name}" is also defined in ${previous.file}: document ${previous.index}`, label);
          continue;
        }
        secretSources.set(name, source);
        set.secrets.set(name, secret.values);
        continue;
      }
      if (kind !== 'SecurityAssociation' && kind !== 'IpsecPolicy') {
        const problem = kind === undefined || kind === null ? 'required field "kind" is missing' : `unsupported kind ${quoted(kind)}`;
        fail('kind', `${problem}: expected SecurityAssociation, IpsecPolicy or Secret`);
        continue;
      }
      const label = name ? `${kind}/${name}` : undefined;
      const errors = resourceProblems(kind, value, GROUP_VERSION);
      for (const error of errors) fail(error.path, error.message, label);
      if (errors.length > 0 || !name) continue;
      const key = `${kind}/${name}`;
      const previous = seen.get(key);
      if (previous) {
        fail('metadata.name', `${key} is also defined in ${previous.file}: document ${previous.index}`, label);
        continue;
      }
      seen.set(key, source);
      const resource = value as unknown as IpsecResource;
      if (resource.kind === 'SecurityAssociation') set.securityAssociations.push({ resource, source });
      else set.policies.push({ resource, source });
    }
  }
  return set;
}
