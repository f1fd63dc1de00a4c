/**
 * Pure helpers for the chart and monitoring tests (test/unit/chart-*.test.ts,
 * test/unit/monitoring-*.test.ts, test/controlplane/chart.test.ts): reading rendered manifests,
 * the Pod Security Standards checks, RBAC expansion, PromQL metric names and the metrics
 * contract of docs/operations.md.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CHART = resolve(ROOT, 'charts/ipsec-operator');

export function readRepoFile(path: string): string {
  return readFileSync(resolve(ROOT, path), 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Manifests

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

/** Every non-empty document of a multi-document YAML text; throws on a YAML error. */
export function parseManifests(text: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`YAML error: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS({ maxAliasCount: -1 }) as K8sObject | null;
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

/** The one object of this kind (and name, if given); throws when there is not exactly one. */
export function only(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  }
  return found[0]!;
}

export interface Container {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  args?: string[];
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports?: { name?: string; containerPort: number; hostPort?: number; protocol?: string }[];
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: SecurityContext;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  resources?: Record<string, Record<string, string | number>>;
}

export interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  privileged?: boolean;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
  seccompProfile?: { type: string };
  procMount?: string;
  seLinuxOptions?: { type?: string; user?: string; role?: string };
  appArmorProfile?: { type: string };
  sysctls?: { name: string; value: string }[];
}

export interface PodSpec {
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  dnsPolicy?: string;
  serviceAccountName?: string;
  priorityClassName?: string;
  securityContext?: SecurityContext;
  containers: Container[];
  initContainers?: Container[];
  volumes?: ({ name: string } & Record<string, unknown>)[];
  tolerations?: Record<string, unknown>[];
  nodeSelector?: Record<string, string>;
  imagePullSecrets?: { name: string }[];
  affinity?: unknown;
}

export interface PodTemplate {
  metadata: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}

export function podTemplate(workload: K8sObject): PodTemplate {
  return (workload['spec'] as { template: PodTemplate }).template;
}

// ---------------------------------------------------------------------------------------------
// Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), the
// checks of the baseline and restricted levels that apply to a pod template. The control plane
// test confirms the verdicts with the real PodSecurity admission plugin.

const BASELINE_CAPABILITIES = new Set(['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']);
const RESTRICTED_VOLUME_TYPES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);

/** What keeps the pod from the given level; empty when it meets it. */
export function podSecurityViolations(spec: PodSpec, level: 'baseline' | 'restricted'): string[] {
  const out: string[] = [];
  const pod = spec.securityContext ?? {};
  const containers = [...(spec.initContainers ?? []), ...spec.containers];
  if (spec.hostNetwork) out.push('hostNetwork');
  if (spec.hostPID) out.push('hostPID');
  if (spec.hostIPC) out.push('hostIPC');
  for (const volume of spec.volumes ?? []) {
    if ('hostPath' in volume) out.push(`hostPath volume ${volume.name}`);
    else if (level === 'restricted') {
      const type = Object.keys(volume).find((key) => key !== 'name');
      if (!type || !RESTRICTED_VOLUME_TYPES.has(type)) out.push(`volume type ${type ?? '?'} (${volume.name})`);
    }
  }
  if (pod.seccompProfile?.type === 'Unconfined') out.push('pod seccompProfile Unconfined');
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`privileged (${c.name})`);
    // The API server defaults hostPort to containerPort in a hostNetwork pod.
    for (const port of c.ports ?? []) {
      const hostPort = port.hostPort ?? (spec.hostNetwork ? port.containerPort : undefined);
      if (hostPort) out.push(`hostPort ${hostPort} (${c.name})`);
    }
    if (sc.procMount && sc.procMount !== 'Default') out.push(`procMount (${c.name})`);
    if (sc.seccompProfile?.type === 'Unconfined') out.push(`seccompProfile Unconfined (${c.name})`);
    for (const cap of sc.capabilities?.add ?? []) {
      if (level === 'restricted' ? cap !== 'NET_BIND_SERVICE' : !BASELINE_CAPABILITIES.has(cap)) out.push(`capability ${cap} (${c.name})`);
    }
    if (level !== 'restricted') continue;
    if (sc.allowPrivilegeEscalation !== false) out.push(`allowPrivilegeEscalation not false (${c.name})`);
    if ((sc.runAsNonRoot ?? pod.runAsNonRoot) !== true) out.push(`runAsNonRoot not true (${c.name})`);
    if ((sc.runAsUser ?? pod.runAsUser) === 0) out.push(`runAsUser 0 (${c.name})`);
    const seccomp = sc.seccompProfile?.type ?? pod.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`seccompProfile not RuntimeDefault/Localhost (${c.name})`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) out.push(`capabilities not dropping ALL (${c.name})`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// RBAC: what a ServiceAccount may do, as "scope group/resource verb" lines, through the
// (Cluster)RoleBindings of the manifests. scope is "cluster" or "ns:<namespace>".

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export function permissionsOf(objects: readonly K8sObject[], namespace: string, serviceAccount: string): string[] {
  const out = new Set<string>();
  for (const binding of objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding')) {
    const subjects = (binding['subjects'] ?? []) as { kind: string; name: string; namespace?: string }[];
    if (!subjects.some((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount && s.namespace === namespace)) continue;
    const ref = binding['roleRef'] as { kind: string; name: string };
    const role = objects.find((o) => o.kind === ref.kind && o.metadata.name === ref.name && (ref.kind === 'ClusterRole' || o.metadata.namespace === binding.metadata.namespace));
    if (!role) throw new Error(`${binding.kind} ${binding.metadata.name} refers to a missing ${ref.kind} ${ref.name}`);
    const scope = binding.kind === 'ClusterRoleBinding' ? 'cluster' : `ns:${binding.metadata.namespace}`;
    for (const rule of (role['rules'] ?? []) as Rule[]) {
      if (rule.nonResourceURLs) throw new Error(`${role.metadata.name}: nonResourceURLs are not expected`);
      const names = rule.resourceNames ? `[${rule.resourceNames.join(',')}]` : '';
      for (const group of rule.apiGroups ?? []) {
        for (const resource of rule.resources ?? []) {
          for (const verb of rule.verbs) out.add(`${scope} ${group === '' ? 'core' : group}/${resource}${names} ${verb}`);
        }
      }
    }
  }
  return [...out].sort();
}

/** "scope group/resource verb" lines from a compact table: scope → "group/r1,r2" → verbs. */
export function permissionTable(table: Record<string, Record<string, string>>): string[] {
  const out: string[] = [];
  for (const [scope, rows] of Object.entries(table)) {
    for (const [resources, verbs] of Object.entries(rows)) {
      const slash = resources.indexOf('/');
      const [group, list] = [resources.slice(0, slash), resources.slice(slash + 1)];
      const [first, ...subs] = list.split('/'); // "securityassociations,ipsecpolicies/status"
      for (const resource of first!.split(',')) {
        for (const verb of verbs.split(',')) out.push(`${scope} ${group}/${[resource, ...subs].join('/')} ${verb}`);
      }
    }
  }
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Metrics: the contract of docs/operations.md and the metric names a PromQL expression uses.

export interface DocumentedMetric {
  name: string;
  type: string;
}

/** Every ipsec_operator_* metric in the tables of docs/operations.md, with its type column. */
export function documentedMetrics(markdown = readRepoFile('docs/operations.md')): Map<string, DocumentedMetric> {
  const out = new Map<string, DocumentedMetric>();
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|')) continue;
    const cells = line.split('|').map((cell) => cell.trim());
    const names = [...(cells[1] ?? '').matchAll(/`(ipsec_operator_[a-z0-9_]+)`/g)].map((m) => m[1]!);
    for (const name of names) out.set(name, { name, type: cells[2] ?? '' });
  }
  return out;
}

/** The series names a metric name may be queried by: a histogram's _bucket, _sum and _count. */
export function queryableNames(documented: Map<string, DocumentedMetric>): Set<string> {
  const out = new Set<string>();
  for (const { name, type } of documented.values()) {
    if (type.startsWith('histogram')) for (const suffix of ['_bucket', '_sum', '_count']) out.add(name + suffix);
    else out.add(name);
  }
  return out;
}

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2', 'start', 'end']);

/**
 * The metric names a PromQL expression selects: identifiers that are not functions, aggregations
 * or keywords, outside strings, label matchers, ranges and grouping lists. Enough for the
 * expressions of our rules and dashboard (no metric selected only by {__name__=...}).
 */
export function metricNames(expr: string): string[] {
  let text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  text = text.replace(/\$\{?\w+\}?/g, ' ');
  const out = new Set<string>();
  for (const m of text.matchAll(/(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?/g)) {
    const [, name, call] = m;
    if (call || PROMQL_KEYWORDS.has(name!)) continue;
    out.add(name!);
  }
  return [...out].sort();
}

// ---------------------------------------------------------------------------------------------
// Helm values

/** Helm's merge of user values over defaults: maps merge key by key, anything else replaces. */
export function mergeValues(base: unknown, over: unknown): unknown {
  if (isMap(base) && isMap(over)) {
    const out: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(over)) out[key] = key in base ? mergeValues(base[key], value) : value;
    return out;
  }
  return over === undefined ? base : over;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
