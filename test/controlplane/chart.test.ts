// The Helm chart against the real API server (and the pinned helm and kubectl) of the run's
// control plane: lint, server-side dry-run of every CI scenario, Pod Security admission of the
// pod templates, RBAC through the real authorizer, and install / upgrade (with a CRD change) /
// uninstall / reinstall. There is no kubelet nor controller-manager: objects are checked, not pods.
//
// The API server is shared with other test files: every name here carries this run's id. CRDs are
// cluster-scoped and other files may install deploy/crds for real, so the lifecycle test installs a
// copy of the chart whose CRDs are moved to a group of their own (<id>.chart-test.xfrm.io); the
// templates are otherwise the chart's.
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { renderDeploy } from '../../scripts/render-deploy.mjs';
import { helmPath } from '../infra/controlplane/binaries.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { check, helm, kubectl, type ToolResult } from '../infra/controlplane/tools.js';
import {
  CHART,
  type K8sObject,
  only,
  parseManifests,
  podSecurityViolations,
  podTemplate,
  readRepoFile,
} from '../unit/chart-helpers.js';

const id = randomBytes(3).toString('hex');
const release = `chart-${id}`;
const scenarios = readdirSync(join(CHART, 'ci')).filter((f) => f.endsWith('-values.yaml')).sort();
let kubeconfig = '';
let helmHome = '';

function opts(input?: string): { kubeconfig: string; input?: string; env: NodeJS.ProcessEnv } {
  return {
    kubeconfig,
    input,
    env: { HELM_CACHE_HOME: join(helmHome, 'cache'), HELM_CONFIG_HOME: join(helmHome, 'config'), HELM_DATA_HOME: join(helmHome, 'data') },
  };
}
const run = {
  helm: (args: string[], input?: string): Promise<ToolResult> => helm(args, opts(input)),
  kubectl: (args: string[], input?: string): Promise<ToolResult> => kubectl(args, opts(input)),
};
const must = {
  helm: (args: string[], input?: string): Promise<string> => check(run.helm(args, input), `helm ${args.join(' ')}`),
  kubectl: (args: string[], input?: string): Promise<string> => check(run.kubectl(args, input), `kubectl ${args.join(' ')}`),
};

async function template(name: string, namespace: string, valuesFile?: string, chart = CHART): Promise<K8sObject[]> {
  const args = ['template', name, chart, '--namespace', namespace, ...(valuesFile ? ['-f', join(CHART, 'ci', valuesFile)] : [])];
  return parseManifests(await must.helm(args));
}

async function getJson<T = K8sObject>(args: string[]): Promise<T> {
  return JSON.parse(await must.kubectl(['get', ...args, '-o', 'json'])) as T;
}

async function exists(args: string[]): Promise<boolean> {
  const r = await run.kubectl(['get', ...args, '--ignore-not-found', '-o', 'name']);
  if (r.code !== 0) throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim() !== '';
}

const createdNamespaces: string[] = [];
async function createNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
  await must.kubectl(['apply', '-f', '-'], stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }));
  createdNamespaces.push(name);
}

// ---------------------------------------------------------------------------------------------
// prometheus-operator's CRDs, reduced to the fields the chart sets (types and patterns as in
// prometheus-operator's CRDs). kubectl's strict field validation rejects any other field, so a
// typo in templates/monitoring.yaml fails the dry-run. They are created only when absent and never
// deleted: other test files may rely on them, or have installed the real ones.

const DURATION = { type: 'string', pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' };
const STRING_MAP = { type: 'object', additionalProperties: { type: 'string' } };
const LABEL_SELECTOR = {
  type: 'object',
  properties: {
    matchLabels: STRING_MAP,
    matchExpressions: { type: 'array', items: { type: 'object', required: ['key', 'operator'], properties: { key: { type: 'string' }, operator: { type: 'string' }, values: { type: 'array', items: { type: 'string' } } } } },
  },
};
const RELABELING = {
  type: 'object',
  properties: {
    action: { type: 'string', default: 'replace', enum: ['replace', 'Replace', 'keep', 'Keep', 'drop', 'Drop', 'hashmod', 'HashMod', 'labelmap', 'LabelMap', 'labeldrop', 'LabelDrop', 'labelkeep', 'LabelKeep', 'lowercase', 'Lowercase', 'uppercase', 'Uppercase', 'keepequal', 'KeepEqual', 'dropequal', 'DropEqual'] },
    sourceLabels: { type: 'array', items: { type: 'string', pattern: '^[a-zA-Z_][a-zA-Z0-9_]*$' } },
    separator: { type: 'string' },
    targetLabel: { type: 'string' },
    regex: { type: 'string' },
    replacement: { type: 'string' },
    modulus: { type: 'integer', format: 'int64' },
  },
};
const ENDPOINT = {
  type: 'object',
  properties: { port: { type: 'string' }, path: { type: 'string' }, interval: DURATION, scrapeTimeout: DURATION, relabelings: { type: 'array', items: RELABELING } },
};
const NAMESPACE_SELECTOR = { type: 'object', properties: { any: { type: 'boolean' }, matchNames: { type: 'array', items: { type: 'string' } } } };

function monitoringCrd(kind: string, plural: string, spec: Record<string, unknown>): K8sObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.monitoring.coreos.com`, labels: { 'ipsec-operator.test/minimal-monitoring-crd': 'true' } },
    spec: {
      group: 'monitoring.coreos.com',
      scope: 'Namespaced',
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', required: ['spec'], properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec } } },
        },
      ],
    },
  };
}

const MONITORING_CRDS = [
  monitoringCrd('ServiceMonitor', 'servicemonitors', {
    type: 'object',
    required: ['selector'],
    properties: { jobLabel: { type: 'string' }, endpoints: { type: 'array', items: ENDPOINT }, selector: LABEL_SELECTOR, namespaceSelector: NAMESPACE_SELECTOR },
  }),
  monitoringCrd('PodMonitor', 'podmonitors', {
    type: 'object',
    required: ['selector'],
    properties: { jobLabel: { type: 'string' }, podMetricsEndpoints: { type: 'array', items: ENDPOINT }, selector: LABEL_SELECTOR, namespaceSelector: NAMESPACE_SELECTOR },
  }),
  monitoringCrd('PrometheusRule', 'prometheusrules', {
    type: 'object',
    properties: {
      groups: {
        type: 'array',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        items: {
          type: 'object',
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1 },
            interval: DURATION,
            rules: {
              type: 'array',
              items: {
                type: 'object',
                required: ['expr'],
                properties: {
                  alert: { type: 'string' },
                  record: { type: 'string' },
                  expr: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] },
                  for: DURATION,
                  keep_firing_for: DURATION,
                  labels: STRING_MAP,
                  annotations: STRING_MAP,
                },
              },
            },
          },
        },
      },
    },
  }),
];

async function ensureMonitoringCrds(): Promise<void> {
  for (const crd of MONITORING_CRDS) {
    if (await exists(['crd', crd.metadata.name])) continue;
    const r = await run.kubectl(['create', '-f', '-'], stringify(crd));
    if (r.code !== 0 && !r.stderr.includes('AlreadyExists')) throw new Error(`creating ${crd.metadata.name}: ${r.stderr}`);
  }
  await must.kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...MONITORING_CRDS.map((crd) => `crd/${crd.metadata.name}`)]);
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  kubeconfig = injectedKubeconfigPath();
  helmHome = mkdtempSync(join(tmpdir(), `ipsec-helm-${id}-`));
});

afterAll(async () => {
  // No controller-manager runs, so deleted namespaces stay Terminating; do not wait for them.
  if (createdNamespaces.length > 0) await run.kubectl(['delete', 'namespace', '--wait=false', '--ignore-not-found', ...createdNamespaces]);
  if (helmHome) rmSync(helmHome, { recursive: true, force: true });
});

describe('helm lint and render', () => {
  it('deploy/ipsec-operator.yaml is `helm template` of the current chart (refresh: node scripts/render-deploy.mjs)', () => {
    expect(readRepoFile('deploy/ipsec-operator.yaml')).toBe(renderDeploy({ helm: helmPath() }));
  });

  it.each(['(defaults)', ...scenarios])('helm lint --strict with %s', async (scenario) => {
    const values = scenario.startsWith('(') ? [] : ['-f', join(CHART, 'ci', scenario)];
    const r = await run.helm(['lint', '--strict', CHART, ...values]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
  });

  it('helm refuses values the schema rejects', async () => {
    const r = await run.helm(['template', 'x', CHART, '--set', 'controller.replica=3']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/values don't meet the specifications of the schema|additional properties 'replica' not allowed/);
  });

  it('helm refuses ServiceMonitors and PodMonitors together', async () => {
    const r = await run.helm(['template', 'x', CHART, '--set', 'monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('enable one');
  });
});

describe('CI scenarios', () => {
  const namespace = `chart-${id}-scenarios`;
  const rendered = new Map<string, K8sObject[]>();

  beforeAll(async () => {
    await ensureMonitoringCrds();
    await createNamespace(namespace);
    for (const scenario of scenarios) rendered.set(scenario, await template(release, namespace, scenario));
  });

  it.each(scenarios)('%s passes server-side dry-run', async (scenario) => {
    const manifest = rendered.get(scenario)!.map((o) => stringify(o)).join('---\n');
    const r = await run.kubectl(['apply', '--dry-run=server', '-f', '-'], manifest);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').length).toBe(rendered.get(scenario)!.length);
  });

  it.each(scenarios)('%s: the controller meets restricted Pod Security, the agent needs only hostNetwork, hostPath, root and NET_ADMIN', (scenario) => {
    const objects = rendered.get(scenario)!;
    expect(podSecurityViolations(podTemplate(only(objects, 'Deployment')).spec, 'restricted')).toEqual([]);
    const agentSpec = podTemplate(only(objects, 'DaemonSet')).spec;
    const port = agentSpec.containers[0]!.ports![0]!.containerPort;
    expect(podSecurityViolations(agentSpec, 'restricted')).toEqual(['hostNetwork', 'hostPath volume state', `hostPort ${port} (agent)`, 'capability NET_ADMIN (agent)', 'runAsNonRoot not true (agent)', 'runAsUser 0 (agent)']);
  });

  it('monitoring: ServiceMonitors with the alerts\' job names, the rules and the dashboard of monitoring/', () => {
    const objects = rendered.get('monitoring-values.yaml')!;
    const monitors = objects.filter((o) => o.kind === 'ServiceMonitor');
    expect(monitors.map((m) => m.metadata.name).sort()).toEqual([`${release}-ipsec-operator-agent`, `${release}-ipsec-operator-controller`]);
    for (const monitor of monitors) {
      const component = monitor.metadata.name.endsWith('-agent') ? 'agent' : 'controller';
      expect(monitor.metadata.labels).toMatchObject({ release: 'kube-prometheus-stack' });
      const endpoint = (monitor['spec'] as { endpoints: { port: string; interval: string; relabelings: unknown[] }[] }).endpoints[0]!;
      expect(endpoint).toMatchObject({ port: 'metrics', interval: '15s' });
      expect(endpoint.relabelings[0]).toEqual({ action: 'replace', targetLabel: 'job', replacement: `ipsec-operator-${component}` });
      const service = only(objects, 'Service', `${release}-ipsec-operator-${component}-metrics`);
      expect(service.metadata.labels).toMatchObject((monitor['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels);
    }
    const rule = only(objects, 'PrometheusRule');
    expect(rule['spec']).toEqual(parse(readRepoFile('monitoring/alerts.yaml')));
    const dashboard = only(objects, 'ConfigMap');
    expect(dashboard.metadata.labels).toMatchObject({ grafana_dashboard: '1', team: 'networking' });
    expect(dashboard.metadata.annotations).toEqual({ grafana_folder: 'IPsec' });
    expect(JSON.parse((dashboard['data'] as Record<string, string>)['ipsec-operator.json']!)).toEqual(JSON.parse(readRepoFile('monitoring/dashboard.json')));
    expect(podTemplate(only(objects, 'DaemonSet')).spec.containers[0]!.args).toContain('--per-sa-metrics');
  });

  it('custom: images, pull secrets, resources, placement, ports and PodMonitors follow the values', () => {
    const objects = rendered.get('custom-values.yaml')!;
    const controller = podTemplate(only(objects, 'Deployment'));
    const agent = podTemplate(only(objects, 'DaemonSet'));
    const c = controller.spec.containers[0]!;
    const a = agent.spec.containers[0]!;
    expect(c.image).toBe('registry.example.com/net/ipsec-operator:0.1.0-rc.2');
    expect(a.image).toBe('registry.example.com/net/ipsec-operator-agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
    expect([c.imagePullPolicy, a.imagePullPolicy]).toEqual(['Always', 'Always']);
    expect(controller.spec.imagePullSecrets).toEqual([{ name: 'registry-credentials' }, { name: 'controller-extra-credentials' }]);
    expect(agent.spec.imagePullSecrets).toEqual([{ name: 'registry-credentials' }]);
    expect(c.resources).toEqual({ requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } });
    expect((only(objects, 'Deployment')['spec'] as { replicas: number }).replicas).toBe(3);
    expect(controller.metadata.annotations).toEqual({ 'example.com/scrape': 'true' });
    expect(controller.metadata.labels).toMatchObject({ team: 'networking', 'cost-center': 'network' });
    expect(agent.spec.priorityClassName).toBe('system-cluster-critical');
    expect(agent.spec.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'gateway', effect: 'NoSchedule' }]);
    expect(a.args).toEqual(['agent', '--metrics-address=:9464', '--state-dir=/var/lib/ipsec-operator-custom', '--resync-seconds=60']);
    expect(a.ports).toEqual([{ name: 'metrics', containerPort: 9464, protocol: 'TCP' }]);
    expect(agent.spec.volumes).toContainEqual({ name: 'state', hostPath: { path: '/var/lib/ipsec-operator-custom', type: 'DirectoryOrCreate' } });
    expect(a.volumeMounts).toContainEqual({ name: 'state', mountPath: '/var/lib/ipsec-operator-custom' });
    expect((only(objects, 'DaemonSet')['spec'] as { updateStrategy: unknown }).updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } });
    expect(c.args).toContain('--metrics-address=:8443');
    for (const o of objects) expect(o.metadata.labels?.['cost-center'], `${o.kind}/${o.metadata.name}`).toBe('network');
    const podMonitors = objects.filter((o) => o.kind === 'PodMonitor');
    expect(podMonitors.map((m) => (m['spec'] as { podMetricsEndpoints: { relabelings: { replacement?: string }[] }[] }).podMetricsEndpoints[0]!.relabelings[0]!.replacement).sort()).toEqual(['ipsec-agent', 'ipsec-controller']);
    expect(objects.filter((o) => o.kind === 'ServiceMonitor')).toEqual([]);
    const rules = JSON.stringify(only(objects, 'PrometheusRule')['spec']);
    expect(rules).toContain('up{job=\\"ipsec-agent\\"}');
    expect(rules).not.toContain('ipsec-operator-agent"}');
  });

  it('minimal: no CRDs, no PodDisruptionBudget for one replica, the given ServiceAccounts', () => {
    const objects = rendered.get('minimal-values.yaml')!;
    expect(objects.filter((o) => ['CustomResourceDefinition', 'PodDisruptionBudget', 'ServiceAccount'].includes(o.kind))).toEqual([]);
    expect(podTemplate(only(objects, 'Deployment')).spec.serviceAccountName).toBe('ipsec-controller');
    expect(podTemplate(only(objects, 'DaemonSet')).spec.serviceAccountName).toBe('ipsec-agent');
    const subjects = objects.filter((o) => o.kind.endsWith('Binding')).map((o) => (o['subjects'] as { name: string }[])[0]!.name);
    expect(new Set(subjects)).toEqual(new Set(['ipsec-controller', 'ipsec-agent']));
    expect(podTemplate(only(objects, 'DaemonSet')).spec.tolerations).toBeUndefined();
  });
});

describe('Pod Security admission (the real PodSecurity plugin)', () => {
  const levels = ['restricted', 'baseline', 'privileged'] as const;
  const namespaceOf = (level: string): string => `chart-${id}-${level}`;
  let objects: K8sObject[] = [];

  function pod(workload: K8sObject, namespace: string): string {
    const t = podTemplate(workload);
    return stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${workload.metadata.name}-probe`, namespace, labels: t.metadata.labels }, spec: t.spec });
  }

  /** The names of the checks a PodSecurity refusal lists, sorted, e.g. "hostPort" or "runAsUser=0". */
  function violatedChecks(stderr: string): string[] {
    const m = /violates PodSecurity "[a-z]+:latest": (.*)$/m.exec(stderr);
    if (!m) throw new Error(`not a PodSecurity refusal: ${stderr}`);
    return m[1]!.split(/\), (?=[^()]+ \()/).map((part) => part.replace(/ \(.*$/s, '')).sort();
  }

  async function admit(kind: 'Deployment' | 'DaemonSet', level: (typeof levels)[number]): Promise<ToolResult> {
    return run.kubectl(['create', '--dry-run=server', '-f', '-'], pod(only(objects, kind), namespaceOf(level)));
  }

  beforeAll(async () => {
    objects = await template(release, namespaceOf('restricted'));
    for (const level of levels) {
      await createNamespace(namespaceOf(level), { 'pod-security.kubernetes.io/enforce': level });
      // Pods need their ServiceAccount (no controller-manager creates `default`).
      for (const sa of objects.filter((o) => o.kind === 'ServiceAccount')) await must.kubectl(['-n', namespaceOf(level), 'create', 'serviceaccount', sa.metadata.name]);
    }
  });

  it('admits the controller pod where restricted is enforced', async () => {
    const r = await admit('Deployment', 'restricted');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('PodSecurity');
  });

  it('refuses the agent pod under restricted for exactly the reasons the chart documents', async () => {
    const r = await admit('DaemonSet', 'restricted');
    expect(r.code).not.toBe(0);
    expect(violatedChecks(r.stderr)).toEqual(['host namespaces', 'hostPort', 'restricted volume types', 'runAsNonRoot != true', 'runAsUser=0', 'unrestricted capabilities']);
  });

  it('refuses the agent pod under baseline too: hostNetwork (and its port), NET_ADMIN and the hostPath', async () => {
    const r = await admit('DaemonSet', 'baseline');
    expect(r.code).not.toBe(0);
    expect(violatedChecks(r.stderr)).toEqual(['host namespaces', 'hostPath volumes', 'hostPort', 'non-default capabilities']);
  });

  it('admits the agent pod (system-node-critical priority included) where privileged is enforced', async () => {
    const r = await admit('DaemonSet', 'privileged');
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('install, upgrade with a CRD change, uninstall, reinstall', () => {
  const namespace = `chart-${id}`;
  const group = `${id}.chart-test.xfrm.io`;
  const crdNames = ['ipsecnodestates', 'ipsecpolicies', 'securityassociations'].map((plural) => `${plural}.${group}`);
  let chartCopy = '';
  const fullname = `${release}-ipsec-operator`;
  const workloads = [
    ['deployment', `${fullname}-controller`],
    ['daemonset', `${fullname}-agent`],
    ['serviceaccount', `${fullname}-controller`],
    ['serviceaccount', `${fullname}-agent`],
    ['service', `${fullname}-controller-metrics`],
    ['service', `${fullname}-agent-metrics`],
    ['role', `${fullname}-controller`],
    ['role', `${fullname}-agent`],
    ['rolebinding', `${fullname}-controller`],
    ['rolebinding', `${fullname}-agent`],
    ['poddisruptionbudget', `${fullname}-controller`],
  ] as const;
  const clusterObjects = [
    ['clusterrole', `${fullname}-controller`],
    ['clusterrole', `${fullname}-agent`],
    ['clusterrolebinding', `${fullname}-controller`],
    ['clusterrolebinding', `${fullname}-agent`],
  ] as const;

  beforeAll(() => {
    chartCopy = join(mkdtempSync(join(tmpdir(), `ipsec-chart-${id}-`)), 'ipsec-operator');
    cpSync(CHART, chartCopy, { recursive: true });
    for (const file of readdirSync(join(chartCopy, 'files/crds'))) {
      const path = join(chartCopy, 'files/crds', file);
      writeFileSync(path, readFileSync(path, 'utf8').replaceAll('ipsec.xfrm.io', group));
    }
  });

  afterAll(async () => {
    await run.helm(['uninstall', release, '--namespace', namespace, '--ignore-not-found']);
    await run.kubectl(['delete', 'crd', '--ignore-not-found', '--wait=false', ...crdNames]);
    if (chartCopy) rmSync(join(chartCopy, '..'), { recursive: true, force: true });
  });

  it('helm install creates every object, CRDs included', async () => {
    await must.helm(['install', release, chartCopy, '--namespace', namespace, '--create-namespace']);
    createdNamespaces.push(namespace);
    for (const [kind, name] of [...workloads, ...clusterObjects]) expect(await exists(['-n', namespace, kind, name]), `${kind}/${name}`).toBe(true);
    for (const crd of crdNames) {
      const object = await getJson(['crd', crd]);
      expect(object.metadata.annotations).toMatchObject({ 'helm.sh/resource-policy': 'keep', 'meta.helm.sh/release-name': release, 'meta.helm.sh/release-namespace': namespace });
    }
    await must.kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...crdNames.map((crd) => `crd/${crd}`)]);
    const deployment = await getJson(['-n', namespace, 'deployment', `${fullname}-controller`]);
    expect((deployment['spec'] as { replicas: number }).replicas).toBe(2);
    const status = JSON.parse(await must.helm(['status', release, '--namespace', namespace, '-o', 'json'])) as { info: { status: string }; version: number };
    expect([status.info.status, status.version]).toEqual(['deployed', 1]);
  }, 120_000);

  // Straight SubjectAccessReviews: the RBAC authorizer's answer for the ServiceAccount, with no
  // discovery in between (the ipsec.xfrm.io CRDs need not exist for the question).
  it.each([
    ['controller', 'list', '/secrets', 'own', true],
    ['controller', 'list', '/secrets', 'other', false],
    ['controller', 'update', 'coordination.k8s.io/leases', 'own', true],
    ['controller', 'delete', 'coordination.k8s.io/leases', 'own', false],
    ['controller', 'update', 'coordination.k8s.io/leases', 'other', false],
    ['controller', 'patch', 'ipsec.xfrm.io/securityassociations/status', 'cluster', true],
    ['controller', 'update', 'ipsec.xfrm.io/ipsecpolicies', 'cluster', true],
    ['controller', 'watch', 'ipsec.xfrm.io/ipsecnodestates', 'cluster', true],
    ['controller', 'delete', 'ipsec.xfrm.io/ipsecpolicies', 'cluster', false],
    ['controller', 'create', 'ipsec.xfrm.io/securityassociations', 'cluster', false],
    ['controller', 'create', 'ipsec.xfrm.io/ipsecnodestates', 'cluster', false],
    ['controller', 'update', '/nodes', 'cluster', false],
    ['controller', 'create', '/events', 'own', true],
    ['controller', 'create', '/pods', 'own', false],
    ['agent', 'watch', 'ipsec.xfrm.io/securityassociations', 'cluster', true],
    ['agent', 'list', '/nodes', 'cluster', true],
    ['agent', 'patch', 'ipsec.xfrm.io/securityassociations', 'cluster', false],
    ['agent', 'patch', 'ipsec.xfrm.io/ipsecpolicies/status', 'cluster', false],
    ['agent', 'create', 'ipsec.xfrm.io/ipsecnodestates', 'cluster', true],
    ['agent', 'update', 'ipsec.xfrm.io/ipsecnodestates/status', 'cluster', true],
    ['agent', 'delete', 'ipsec.xfrm.io/ipsecnodestates', 'cluster', false],
    ['agent', 'get', '/secrets', 'own', true],
    ['agent', 'get', '/secrets', 'other', false],
    ['agent', 'get', 'coordination.k8s.io/leases', 'own', false],
    ['agent', 'patch', '/nodes', 'cluster', false],
  ] as const)('RBAC: %s may %s %s (%s namespace): %s', async (component, verb, resource, where, allowed) => {
    const [group, name, subresource] = resource.split('/') as [string, string, string | undefined];
    const review = {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: {
        user: `system:serviceaccount:${namespace}:${fullname}-${component}`,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
        resourceAttributes: {
          verb,
          group,
          resource: name,
          ...(subresource ? { subresource } : {}),
          ...(where === 'own' ? { namespace } : where === 'other' ? { namespace: 'kube-system' } : {}),
        },
      },
    };
    const answer = JSON.parse(await must.kubectl(['create', '-f', '-', '-o', 'json'], stringify(review))) as { status: { allowed: boolean; reason?: string } };
    expect(answer.status.allowed, answer.status.reason).toBe(allowed);
  });

  it('helm upgrade applies a changed CRD (a new printer column) to the cluster', async () => {
    const file = join(chartCopy, 'files/crds', 'ipsecpolicies.ipsec.xfrm.io.yaml'); // content moved to the test group
    const crd = readFileSync(file, 'utf8');
    const marker = '      additionalPrinterColumns:\n';
    expect(crd).toContain(marker);
    writeFileSync(file, crd.replace(marker, `${marker}        - name: UpgradedBy${id}\n          type: string\n          jsonPath: .metadata.name\n          priority: 1\n`));
    const chartYaml = join(chartCopy, 'Chart.yaml');
    writeFileSync(chartYaml, readFileSync(chartYaml, 'utf8').replace(/^version: .*$/m, 'version: 0.1.1'));

    const before = await getJson<{ spec: { versions: { additionalPrinterColumns: { name: string }[] }[] } }>(['crd', `ipsecpolicies.${group}`]);
    expect(before.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name)).not.toContain(`UpgradedBy${id}`);
    await must.helm(['upgrade', release, chartCopy, '--namespace', namespace]);
    const after = await getJson<{ spec: { versions: { additionalPrinterColumns: { name: string; jsonPath: string }[] }[] } }>(['crd', `ipsecpolicies.${group}`]);
    expect(after.spec.versions[0]!.additionalPrinterColumns).toContainEqual({ name: `UpgradedBy${id}`, type: 'string', jsonPath: '.metadata.name', priority: 1 });
    const status = JSON.parse(await must.helm(['status', release, '--namespace', namespace, '-o', 'json'])) as { info: { status: string }; version: number };
    expect([status.info.status, status.version]).toEqual(['deployed', 2]);
  }, 120_000);

  it('helm uninstall removes the workloads and RBAC, and keeps the CRDs (helm.sh/resource-policy: keep)', async () => {
    const r = await must.helm(['uninstall', release, '--namespace', namespace]);
    expect(r).toContain('These resources were kept due to the resource policy');
    for (const [kind, name] of [...workloads, ...clusterObjects]) expect(await exists(['-n', namespace, kind, name]), `${kind}/${name}`).toBe(false);
    for (const crd of crdNames) expect(await exists(['crd', crd]), crd).toBe(true);
  }, 120_000);

  it('helm install under the same release name adopts the kept CRDs', async () => {
    await must.helm(['install', release, chartCopy, '--namespace', namespace]);
    for (const [kind, name] of [...workloads, ...clusterObjects]) expect(await exists(['-n', namespace, kind, name]), `${kind}/${name}`).toBe(true);
    const crd = await getJson<{ spec: { versions: { additionalPrinterColumns: { name: string }[] }[] } }>(['crd', `ipsecpolicies.${group}`]);
    expect(crd.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name)).toContain(`UpgradedBy${id}`);
    await must.helm(['uninstall', release, '--namespace', namespace]);
  }, 120_000);
});
