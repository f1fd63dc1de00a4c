/**
 * A Secret document of the CLI's input, checked as the API server checks a Secret
 * (k8s.io/kubernetes pkg/apis/core/validation ValidateSecret) and decoded as it decodes one:
 * `data` values are base64 in Go's StdEncoding (padding required, line breaks ignored, nothing
 * else), `stringData` overrides `data` key by key, the well-known types need their keys.
 *
 * No message ever holds a value; a key name is shown only when it cannot be key material.
 */
import { quoted, quotedName } from '../crd/echo.js';
import { metadataProblems, isMapping } from '../crd/object.js';
import { secretKeyProblems } from '../crd/names.js';
import type { FieldError } from '../crd/validate.js';

export interface SecretDocument {
  readonly name: string | undefined;
  /** Key → bytes; undefined when the document has problems. */
  readonly values: Map<string, Buffer> | undefined;
  readonly errors: FieldError[];
}

const SECRET_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'data', 'stringData', 'type', 'immutable']);
/** MaxSecretSize: every value of a Secret together. */
const MAX_SECRET_BYTES = 1024 * 1024;
/** Go's base64.StdEncoding after it dropped `\r` and `\n`: whole quanta, padding only at the end. */
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Keys each well-known Secret type must hold (at least one of each inner list). */
const REQUIRED_KEYS: Record<string, readonly (readonly string[])[]> = {
  'kubernetes.io/tls': [['tls.crt'], ['tls.key']],
  'kubernetes.io/basic-auth': [['username', 'password']],
  'kubernetes.io/ssh-auth': [['ssh-privatekey']],
  'kubernetes.io/dockercfg': [['.dockercfg']],
  'kubernetes.io/dockerconfigjson': [['.dockerconfigjson']],
};
const JSON_KEYS: Record<string, string> = { 'kubernetes.io/dockercfg': '.dockercfg', 'kubernetes.io/dockerconfigjson': '.dockerconfigjson' };

export function readSecretDocument(object: Record<string, unknown>): SecretDocument {
  const errors: FieldError[] = [];
  const fail = (path: string, message: string) => errors.push({ path, message });
  for (const field of Object.keys(object)) if (!SECRET_FIELDS.has(field)) fail('(document)', `unknown field ${quoted(field)}`);
  if (object['apiVersion'] !== 'v1') fail('apiVersion', 'must be v1 for a Secret');
  errors.push(...metadataProblems(object['metadata'], { namespaced: true }));
  const metadata = isMapping(object['metadata']) ? object['metadata'] : {};
  const name = typeof metadata['name'] === 'string' ? metadata['name'] : undefined;

  const type = object['type'] ?? 'Opaque';
  if (typeof type !== 'string') fail('type', 'must be a string');
  const immutable = object['immutable'];
  if (immutable !== undefined && immutable !== null && typeof immutable !== 'boolean') fail('immutable', 'must be a boolean');

  const values = new Map<string, Buffer>();
  for (const field of ['data', 'stringData'] as const) {
    const entries = object[field];
    if (entries === undefined || entries === null) continue;
    if (!isMapping(entries)) {
      fail(field, 'must be a mapping of key to value');
      continue;
    }
    for (const [key, value] of Object.entries(entries)) {
      const path = `${field}[${quotedName(key)}]`;
      const keyProblems = secretKeyProblems(key);
      for (const problem of keyProblems) fail(path, `key ${problem}`);
      // A null value is an empty one, as JSON decoding gives it.
      const text = value === null ? '' : value;
      if (typeof text !== 'string') {
        fail(path, 'must be a string');
        continue;
      }
      if (field === 'stringData') {
        values.set(key, Buffer.from(text, 'utf8'));
        continue;
      }
      const compact = text.replace(/[\r\n]/g, '');
      if (!STD_BASE64.test(compact)) {
        fail(path, 'is not valid base64 (standard alphabet, with = padding; only line breaks may separate it)');
        continue;
      }
      // stringData wins over data for the same key: it is applied after.
      values.set(key, Buffer.from(compact, 'base64'));
    }
  }
  let total = 0;
  for (const bytes of values.values()) total += bytes.length;
  if (total > MAX_SECRET_BYTES) fail('data', `may not hold more than ${MAX_SECRET_BYTES} bytes`);

  if (typeof type === 'string') {
    for (const alternatives of REQUIRED_KEYS[type] ?? []) {
      if (!alternatives.some((key) => values.has(key))) fail(`data[${quoted(alternatives[0])}]`, `required for a Secret of type ${type}`);
    }
    const jsonKey = JSON_KEYS[type];
    const jsonValue = jsonKey === undefined ? undefined : values.get(jsonKey);
    if (jsonKey !== undefined && jsonValue !== undefined && !isJson(jsonValue)) fail(`data[${quoted(jsonKey)}]`, 'must be valid JSON');
    if (type === 'kubernetes.io/service-account-token') {
      const annotations = isMapping(metadata['annotations']) ? metadata['annotations'] : {};
      if (typeof annotations['kubernetes.io/service-account.name'] !== 'string') {
        fail('metadata.annotations["kubernetes.io/service-account.name"]', `required for a Secret of type ${type}`);
      }
    }
  }
  return { name, values: errors.length > 0 ? undefined : values, errors };
}

function isJson(bytes: Buffer): boolean {
  try {
    JSON.parse(bytes.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}
