/**
 * Kubernetes' syntax rules for names, label keys and values and Secret keys, as the API server
 * applies them (k8s.io/apimachinery/pkg/util/validation): the CLI refuses what the server would.
 * Each check returns the problems found (none = valid); messages never quote the value, the
 * caller decides what may be shown (./echo.ts).
 */

const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_LABEL_RE = new RegExp(`^${DNS1123_LABEL}$`);
const DNS1123_SUBDOMAIN_RE = new RegExp(`^${DNS1123_LABEL}(\\.${DNS1123_LABEL})*$`);
const QUALIFIED_NAME_PART_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const CONFIG_KEY_RE = /^[-._a-zA-Z0-9]+$/;

/** Object names of cluster-scoped custom resources and of Secrets (NameIsDNSSubdomain). */
export function dnsSubdomainProblems(value: string): string[] {
  const problems: string[] = [];
  if (value.length === 0) return ['must not be empty'];
  if (value.length > 253) problems.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN_RE.test(value)) {
    problems.push(
      "must be a lowercase RFC 1123 subdomain: lower case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit",
    );
  }
  return problems;
}

/** Namespace names (IsDNS1123Label). */
export function dnsLabelProblems(value: string): string[] {
  const problems: string[] = [];
  if (value.length === 0) return ['must not be empty'];
  if (value.length > 63) problems.push('must be no more than 63 characters');
  if (!DNS1123_LABEL_RE.test(value)) problems.push("must be a lowercase RFC 1123 label: lower case letters, digits and '-', starting and ending with a letter or digit");
  return problems;
}

/** Label and annotation keys, finalizers (IsQualifiedName): `[prefix/]name`. */
export function qualifiedNameProblems(value: string): string[] {
  const parts = value.split('/');
  let name = value;
  const problems: string[] = [];
  if (parts.length === 2) {
    const [prefix = '', rest = ''] = parts;
    name = rest;
    if (prefix.length === 0) problems.push('prefix part must not be empty');
    else problems.push(...dnsSubdomainProblems(prefix).map((problem) => `prefix part ${problem}`));
  } else if (parts.length > 2) {
    return ["a qualified name must be a name with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"];
  }
  if (name.length === 0) problems.push('name part must not be empty');
  else if (name.length > 63) problems.push('name part must be no more than 63 characters');
  if (name.length > 0 && !QUALIFIED_NAME_PART_RE.test(name)) {
    problems.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
  }
  return problems;
}

/** Label values (IsValidLabelValue): empty, or up to 63 characters of a qualified name part. */
export function labelValueProblems(value: string): string[] {
  const problems: string[] = [];
  if (value.length > 63) problems.push('must be no more than 63 characters');
  if (!LABEL_VALUE_RE.test(value)) {
    problems.push("a label value must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
  }
  return problems;
}

/** Keys of a Secret's data and stringData (IsConfigMapKey). */
export function secretKeyProblems(value: string): string[] {
  const problems: string[] = [];
  if (value.length > 253) problems.push('must be no more than 253 characters');
  if (!CONFIG_KEY_RE.test(value)) problems.push("a valid Secret key must consist of alphanumeric characters, '-', '_' or '.'");
  if (value === '.' || value === '..') problems.push("must not be '.' or '..'");
  else if (value.startsWith('..')) problems.push("must not start with '..'");
  return problems;
}
