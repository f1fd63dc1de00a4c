// The chart's defaults as rendered into deploy/ipsec-operator.yaml (test/controlplane/chart.test.ts
// proves the file is current and that the API server accepts it): workloads, security contexts,
// least-privilege RBAC, Services and the CRDs.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  type K8sObject,
  only,
  parseManifests,
  permissionTable,
  permissionsOf,
  podSecurityViolations,
  podTemplate,
  readRepoFile,
} from './chart-helpers.js';

const NS = 'ipsec-operator';
const objects = parseManifests(readRepoFile('deploy/ipsec-operator.yaml'));
const controller = only(objects, 'Deployment', 'ipsec-operator-controller');
const agent = only(objects, 'DaemonSet', 'ipsec-operator-agent');
const controllerPod = podTemplate(controller);
const agentPod = podTemplate(agent);
const env = (pod: typeof agentPod): Record<string, unknown> =>
  Object.fromEntries((pod.spec.containers[0]!.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath ?? e.value]));

describe('deploy/ipsec-operator.yaml', () => {
  it('holds the Namespace first, then the chart objects, all namespaced ones in it', () => {
    expect(objects[0]).toMatchObject({ kind: 'Namespace', metadata: { name: NS, labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } });
    const kinds = objects.map((o) => o.kind).sort();
    expect(kinds).toEqual([
      'ClusterRole', 'ClusterRole', 'ClusterRoleBinding', 'ClusterRoleBinding',
      'CustomResourceDefinition', 'CustomResourceDefinition', 'CustomResourceDefinition', 'CustomResourceDefinition',
      'DaemonSet', 'Deployment', 'Namespace', 'PodDisruptionBudget',
      'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Service', 'Service', 'ServiceAccount', 'ServiceAccount',
    ]);
    const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);
    for (const o of objects) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(clusterScoped.has(o.kind) ? undefined : NS);
  });

  it('renders no monitoring.coreos.com object and no dashboard by default', () => {
    expect(objects.filter((o) => o.apiVersion.startsWith('monitoring.coreos.com/') || o.kind === 'ConfigMap')).toEqual([]);
  });
});

describe('controller Deployment', () => {
  const container = controllerPod.spec.containers[0]!;

  it('runs 2 replicas of `controller --leader-elect`, surging during a rollout', () => {
    expect(controller['spec']).toMatchObject({ replicas: 2, strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } });
    expect(container.args).toContain('--leader-elect');
    expect(container.image).toBe('ipsec-operator:0.1.0');
  });

  it('meets the restricted Pod Security level', () => {
    expect(podSecurityViolations(controllerPod.spec, 'restricted')).toEqual([]);
    expect(container.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(controllerPod.spec.hostNetwork).toBeUndefined();
  });

  it('probes /healthz and /readyz on the port of --metrics-address', () => {
    expect(container.args).toContain('--metrics-address=:8080');
    expect(container.ports).toEqual([{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
  });

  it('learns its namespace from the downward API', () => {
    expect(env(controllerPod)).toEqual({ POD_NAMESPACE: 'metadata.namespace' });
  });

  it('keeps one replica through voluntary disruptions', () => {
    const pdb = only(objects, 'PodDisruptionBudget');
    expect(pdb['spec']).toEqual({ minAvailable: 1, selector: (controller['spec'] as { selector: unknown }).selector });
  });
});

describe('agent DaemonSet', () => {
  const container = agentPod.spec.containers[0]!;

  it('runs in the host network namespace with cluster DNS', () => {
    expect(agentPod.spec.hostNetwork).toBe(true);
    expect(agentPod.spec.dnsPolicy).toBe('ClusterFirstWithHostNet');
  });

  it('is root with NET_ADMIN as its only capability, no escalation, a read-only root', () => {
    expect(container.securityContext).toEqual({
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  it('breaks the restricted and baseline levels exactly where it must, and nowhere else', () => {
    // hostPort: the API server sets hostPort = containerPort (the metrics port) in a hostNetwork pod.
    expect(podSecurityViolations(agentPod.spec, 'baseline')).toEqual(['hostNetwork', 'hostPath volume state', 'hostPort 9090 (agent)', 'capability NET_ADMIN (agent)']);
    expect(podSecurityViolations(agentPod.spec, 'restricted')).toEqual([
      'hostNetwork',
      'hostPath volume state',
      'hostPort 9090 (agent)',
      'capability NET_ADMIN (agent)',
      'runAsNonRoot not true (agent)',
      'runAsUser 0 (agent)',
    ]);
  });

  it('runs on every node: every taint tolerated, system-node-critical, one node at a time', () => {
    expect(agentPod.spec.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(agentPod.spec.priorityClassName).toBe('system-node-critical');
    expect(agentPod.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect((agent['spec'] as { updateStrategy: unknown }).updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  });

  it('keeps its ownership ledger in a hostPath at the --state-dir it is given', () => {
    expect(agentPod.spec.volumes).toContainEqual({ name: 'state', hostPath: { path: '/var/lib/ipsec-operator', type: 'DirectoryOrCreate' } });
    expect(container.volumeMounts).toContainEqual({ name: 'state', mountPath: '/var/lib/ipsec-operator' });
    expect(container.args).toContain('--state-dir=/var/lib/ipsec-operator');
  });

  it('learns its node and namespace from the downward API', () => {
    expect(env(agentPod)).toEqual({ NODE_NAME: 'spec.nodeName', POD_NAMESPACE: 'metadata.namespace' });
  });

  it('probes /healthz and /readyz on the port of --metrics-address', () => {
    expect(container.args).toContain('--metrics-address=:9090');
    expect(container.ports).toEqual([{ name: 'metrics', containerPort: 9090, protocol: 'TCP' }]);
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
  });
});

describe('RBAC (least privilege)', () => {
  it('binds each component to its own ServiceAccount', () => {
    expect(controllerPod.spec.serviceAccountName).toBe('ipsec-operator-controller');
    expect(agentPod.spec.serviceAccountName).toBe('ipsec-operator-agent');
    for (const name of ['ipsec-operator-controller', 'ipsec-operator-agent']) only(objects, 'ServiceAccount', name);
  });

  it('gives the controller exactly: reads, finalizers and status of SAs and policies, the rotate annotation and status of meshes, Events; Secrets and its Lease in its namespace', () => {
    expect(permissionsOf(objects, NS, 'ipsec-operator-controller')).toEqual(
      permissionTable({
        cluster: {
          'ipsec.xfrm.io/securityassociations,ipsecpolicies,ipsecmeshes': 'get,list,watch,update,patch',
          'ipsec.xfrm.io/ipsecnodestates': 'get,list,watch',
          'ipsec.xfrm.io/securityassociations,ipsecpolicies,ipsecmeshes/status': 'update,patch',
          'core/nodes': 'get,list,watch',
          'core/events': 'create,patch',
        },
        [`ns:${NS}`]: {
          'core/secrets': 'get,list,watch',
          'coordination.k8s.io/leases': 'create,get,update',
        },
      }),
    );
  });

  it('gives the agent exactly: reads of SAs, policies, meshes, Nodes and IpsecNodeStates, writes of its IpsecNodeStates, Events; Secrets in its namespace', () => {
    expect(permissionsOf(objects, NS, 'ipsec-operator-agent')).toEqual(
      permissionTable({
        cluster: {
          'ipsec.xfrm.io/securityassociations,ipsecpolicies,ipsecmeshes': 'get,list,watch',
          'ipsec.xfrm.io/ipsecnodestates': 'get,list,watch,create,update,patch',
          'ipsec.xfrm.io/ipsecnodestates/status': 'get,create,update,patch',
          'core/nodes': 'get,list,watch',
          'core/events': 'create,patch',
        },
        [`ns:${NS}`]: { 'core/secrets': 'get,list,watch' },
      }),
    );
  });

  it('uses no wildcard and grants nothing to other subjects', () => {
    for (const role of objects.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole')) {
      expect(JSON.stringify(role['rules']), role.metadata.name).not.toContain('*');
    }
    const subjects = objects
      .filter((o) => o.kind.endsWith('Binding'))
      .flatMap((o) => (o['subjects'] as { kind: string; name: string; namespace: string }[]).map((s) => `${s.kind}/${s.namespace}/${s.name}`));
    expect([...new Set(subjects)].sort()).toEqual([`ServiceAccount/${NS}/ipsec-operator-agent`, `ServiceAccount/${NS}/ipsec-operator-controller`]);
  });
});

describe('metrics Services', () => {
  it.each([
    ['ipsec-operator-controller-metrics', controller, 8080, undefined],
    ['ipsec-operator-agent-metrics', agent, 9090, 'None'],
  ] as const)('%s selects its pods and their metrics port', (name, workload, port, clusterIP) => {
    const service = only(objects, 'Service', name);
    const spec = service['spec'] as { selector: Record<string, string>; ports: unknown[]; clusterIP?: string };
    expect(spec.clusterIP).toBe(clusterIP);
    expect(spec.ports).toEqual([{ name: 'metrics', port, targetPort: 'metrics', protocol: 'TCP' }]);
    const labels = podTemplate(workload).metadata.labels!;
    for (const [key, value] of Object.entries(spec.selector)) expect(labels[key], key).toBe(value);
    // A Service must not select the other component's pods.
    const other = workload === controller ? agentPod : controllerPod;
    expect(Object.entries(spec.selector).every(([key, value]) => other.metadata.labels![key] === value)).toBe(false);
  });

  it('workload selectors match their own pod labels', () => {
    for (const workload of [controller, agent]) {
      const selector = (workload['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      expect(podTemplate(workload).metadata.labels).toMatchObject(selector);
    }
  });
});

describe('CustomResourceDefinitions', () => {
  const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition');

  it.each(crds.map((crd) => [crd.metadata.name, crd] as const))('%s is deploy/crds/ plus labels and helm.sh/resource-policy: keep', (name, crd) => {
    const source = parse(readRepoFile(`deploy/crds/${name}.yaml`)) as K8sObject;
    expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(crd.metadata.labels).toMatchObject({ 'app.kubernetes.io/part-of': 'ipsec-operator', 'app.kubernetes.io/component': 'crds' });
    const { metadata: _rendered, ...renderedRest } = crd;
    const { metadata: sourceMetadata, ...sourceRest } = source;
    expect(renderedRest).toEqual(sourceRest);
    expect(sourceMetadata).toEqual({ name });
  });
});
