// The metrics contract against a real Prometheus (issue 5): Debian's prometheus scrapes the
// controller (host) and the agents (in the VM, through a loopback relay) every 2 s with the job
// names the alert rules expect, evaluates monitoring/alerts.yaml, and answers every expression of
// monitoring/dashboard.json and of the alert rules without error. Induced faults show up in the
// metrics: a hand flush of node a's tables raises its agent's drift repairs, an SA whose key has
// the wrong length is counted by the controller as not Ready with reason InvalidKey.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmFromInject } from '../infra/vm/inject.js';
import { injectedKubeconfigPath } from '../infra/controlplane/inject.js';
import { REPO_ROOT } from '../infra/controlplane/binaries.js';
import { startCluster, NAMESPACE, type Cluster } from '../infra/cluster/cluster.js';
import { startMetricsRelay, type MetricsRelay } from '../infra/prometheus/relay.js';
import { startPrometheus, type PrometheusServer, type QueryResult } from '../infra/prometheus/server.js';
import { warmCrypto } from '../support/vm-cli.js';
import { resourceStates, timed, waitFor } from './support.js';

const vm = vmFromInject();
const EXAMPLE = join(REPO_ROOT, 'examples/host-to-host');
const ALERTS = join(REPO_ROOT, 'monitoring/alerts.yaml');
const DASHBOARD = join(REPO_ROOT, 'monitoring/dashboard.json');
const CONTROLLER_JOB = 'ipsec-operator-controller';
const AGENT_JOB = 'ipsec-operator-agent';
const NODES = ['a', 'b'] as const;
const BAD_KEY = `apiVersion: v1
kind: Secret
metadata: {name: prometheus-e2e-keys, namespace: ${NAMESPACE}}
stringData:
  short: "0102030405060708"
---
apiVersion: ipsec.xfrm.io/v1alpha1
kind: SecurityAssociation
metadata: {name: prometheus-e2e-short-key}
spec:
  nodeSelector: {matchLabels: {ipsec.xfrm.io/node: a}}
  source: 198.51.100.1
  destination: 198.51.100.2
  protocol: esp
  spi: 0x3abc
  aead: {algorithm: rfc4106(gcm(aes)), icvLength: 128, keyRef: {name: prometheus-e2e-keys, key: short, encoding: hex}}
`;

let cluster: Cluster | undefined;
let prometheus: PrometheusServer | undefined;
const relays = new Map<string, MetricsRelay>();

const allReady = async () => {
  const states = await resourceStates(cluster!);
  return states.length > 0 && states.every((state) => state.ready === 'True') ? states : undefined;
};
type Vector = { metric: Record<string, string>; value: [number, string] }[];
const vector = async (expr: string): Promise<Vector> => {
  const result = await prometheus!.query(expr);
  if (result.status !== 'success' || result.data?.resultType !== 'vector') throw new Error(`${expr}: ${JSON.stringify(result)}`);
  return result.data.result as Vector;
};
/** The single value of a query, or undefined when it has no series. */
const scalarOf = async (expr: string): Promise<number | undefined> => {
  const result = await vector(expr);
  if (result.length > 1) throw new Error(`${expr}: ${result.length} series`);
  return result[0] ? Number(result[0].value[1]) : undefined;
};

/** Every panel target's expr of the dashboard, nested rows included. */
function dashboardExpressions(): { title: string; expr: string }[] {
  type Panel = { title?: string; panels?: Panel[]; targets?: { expr?: string }[] };
  const out: { title: string; expr: string }[] = [];
  const walk = (panels: Panel[] = []) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) if (target.expr) out.push({ title: panel.title ?? '(untitled)', expr: target.expr });
      walk(panel.panels);
    }
  };
  walk((JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] }).panels);
  return out;
}

function alertExpressions(): { alert: string; expr: string }[] {
  const file = parse(readFileSync(ALERTS, 'utf8')) as { groups: { rules: { alert?: string; record?: string; expr: string }[] }[] };
  return file.groups.flatMap((group) => group.rules.map((rule) => ({ alert: rule.alert ?? rule.record ?? '?', expr: String(rule.expr) })));
}

/** Grafana's template variables, replaced with values a dashboard would use for this cluster. */
function expand(expr: string, variables: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced: string | undefined, plain: string | undefined) => {
    const name = braced ?? plain!;
    const value = variables[name];
    if (value === undefined) throw new Error(`unknown template variable ${whole} in ${expr}`);
    return value;
  });
}

function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const run = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (run.error) throw new Error(`cannot run promtool (Debian package prometheus): ${run.error.message}`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('ipsec-operator metrics in a real Prometheus', () => {
  beforeAll(async () => {
    await warmCrypto(vm);
    cluster = await startCluster({ vm, kubeconfigPath: injectedKubeconfigPath(), nodes: [...NODES], log: (line) => console.log(`[e2e] ${line}`) });
    for (const node of NODES) relays.set(node, await startMetricsRelay(vm, cluster.agents.get(node)!.metricsPort));
    prometheus = await startPrometheus({
      interval: '2s',
      ruleFiles: [ALERTS],
      jobs: [
        { job: CONTROLLER_JOB, targets: [{ address: `127.0.0.1:${cluster.controllerMetricsPort}` }] },
        { job: AGENT_JOB, targets: NODES.map((node) => ({ address: relays.get(node)!.address, labels: { node } })) },
      ],
    });
    console.log(`[e2e] prometheus at ${prometheus.url}; controller 127.0.0.1:${cluster.controllerMetricsPort}; agents ${NODES.map((node) => `${node} → ${relays.get(node)!.address}`).join(', ')}`);
  });
  afterAll(async () => {
    if (prometheus) {
      const log = prometheus.log();
      if (log) console.log(`[e2e] prometheus log tail:\n${log.slice(-3000)}`);
      await prometheus.stop();
    }
    for (const [node, relay] of relays) {
      console.log(`[e2e] relay ${node}: ${JSON.stringify(relay.stats)}`);
      await relay.close();
    }
    if (!cluster) return;
    await cluster.kubectl(['delete', '-f', '-', '--ignore-not-found', '--wait=false'], BAD_KEY).catch(() => undefined);
    await cluster.kubectl(['delete', '-f', EXAMPLE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await waitFor('every object gone', async () => ((await resourceStates(cluster!)).length === 0 ? true : undefined), 180_000, 1000).catch((error) =>
      console.log(`[e2e] ${String(error)}`),
    );
    await cluster.stop();
  });

  it('applies examples/host-to-host: every resource becomes Ready', async () => {
    await cluster!.kubectl(['apply', '-f', EXAMPLE]);
    const states = await timed('examples Ready', () => waitFor('every resource Ready', allReady, 240_000, 1000));
    expect(states).toHaveLength(8);
  });

  it('scrapes every target: the controller and one agent per node are up', async () => {
    const up = await timed('every target up', () =>
      waitFor(
        'up == 1 for the controller and both agents',
        async () => {
          const result = await vector('up');
          return result.length === 1 + NODES.length && result.every((series) => series.value[1] === '1') ? result : undefined;
        },
        120_000,
        1000,
      ),
    );
    console.log(`[e2e] up: ${up.map((series) => `${series.metric.job}/${series.metric.instance}${series.metric.node ? ` node=${series.metric.node}` : ''}=${series.value[1]}`).join(', ')}`);
    expect(up.filter((series) => series.metric.job === CONTROLLER_JOB)).toHaveLength(1);
    expect(up.filter((series) => series.metric.job === AGENT_JOB).map((series) => series.metric.node).sort()).toEqual([...NODES]);
    // What Prometheus stored carries the job's labels: the agent metrics by node.
    const bySync = await waitFor('ipsec_operator_last_sync_timestamp_seconds of both agents', async () => {
      const result = await vector(`ipsec_operator_last_sync_timestamp_seconds{job="${AGENT_JOB}"}`);
      return result.length === NODES.length ? result : undefined;
    });
    expect(bySync.map((series) => series.metric.node).sort()).toEqual([...NODES]);
  });

  it('passes promtool check metrics for the controller and an agent', async () => {
    const controllerText = await (await fetch(`http://127.0.0.1:${cluster!.controllerMetricsPort}/metrics`)).text();
    const agentResponse = await fetch(`${relays.get('a')!.url}/metrics`);
    const agentText = await agentResponse.text();
    expect(agentResponse.headers.get('content-type')).toContain('version=0.0.4');
    for (const [who, text] of [['controller', controllerText], ['agent a', agentText]] as const) {
      const families = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((match) => match[1]));
      const check = promtoolCheckMetrics(text);
      console.log(`[e2e] promtool check metrics, ${who}: ${families.size} families, ${text.split('\n').filter((line) => line && !line.startsWith('#')).length} samples, exit ${check.status}${check.output ? `\n${check.output}` : ''}`);
      expect(families.size).toBeGreaterThan(0);
      expect(check, `promtool check metrics (${who})`).toMatchObject({ status: 0 });
    }
    // Reported, not asserted (some series appear only after their first event): the metric
    // names of docs/operations.md that neither process exposes now.
    const documented = new Set([...readFileSync(join(REPO_ROOT, 'docs/operations.md'), 'utf8').matchAll(/`(ipsec_operator_[a-z0-9_]+)`/g)].map((match) => match[1]!));
    const exposed = new Set([...`${controllerText}\n${agentText}`.matchAll(/^# TYPE (\S+)/gm)].map((match) => match[1]!));
    console.log(`[e2e] documented metric names not exposed now: ${[...documented].filter((name) => !exposed.has(name)).join(', ') || 'none'}`);
    console.log(`[e2e] exposed metric names not documented: ${[...exposed].filter((name) => !documented.has(name)).join(', ') || 'none'}`);
  });

  it('evaluates every dashboard expression and every alert expression without error', async () => {
    const agentA = relays.get('a')!.address;
    const variables = { instance: agentA.replace(/\./g, '\\\\.'), __rate_interval: '1m', __interval: '10s', __range: '5m', datasource: 'prometheus' };
    const expressions = [
      ...dashboardExpressions().map(({ title, expr }) => ({ from: `dashboard "${title}"`, expr: expand(expr, variables) })),
      ...alertExpressions().map(({ alert, expr }) => ({ from: `alert ${alert}`, expr })),
    ];
    // The rates need two samples at least of every series.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const failures: string[] = [];
    const empty: string[] = [];
    for (const { from, expr } of expressions) {
      const result: QueryResult = await prometheus!.query(expr);
      if (result.status !== 'success') failures.push(`${from}: ${expr}\n  ${result.errorType}: ${result.error}`);
      else if (Array.isArray(result.data?.result) && result.data.result.length === 0 && result.data.resultType !== 'scalar') empty.push(`${from}: ${expr}`);
    }
    const dashboardCount = expressions.filter((item) => item.from.startsWith('dashboard')).length;
    console.log(`[e2e] evaluated ${expressions.length} expressions (${dashboardCount} dashboard, ${expressions.length - dashboardCount} alert): ${expressions.length - failures.length} success, ${failures.length} errors, ${empty.length} empty results`);
    if (empty.length) console.log(`[e2e] expressions with no series now (no data yet, or opt-in metrics):\n${empty.join('\n')}`);
    expect(failures).toEqual([]);
    // The dashboard's instance variable (label_values(ipsec_operator_last_sync_timestamp_seconds, instance)).
    const instances = await prometheus!.api<{ status: string; data: string[] }>(`/api/v1/label/instance/values?match[]=${encodeURIComponent('ipsec_operator_last_sync_timestamp_seconds')}`);
    expect(instances.status).toBe('success');
    expect(instances.data.sort()).toEqual(NODES.map((node) => relays.get(node)!.address).sort());
    // The rule manager evaluated every alert rule without error.
    type Rules = { status: string; data: { groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] } };
    const rules = await waitFor('every alert rule evaluated', async () => {
      const current = await prometheus!.api<Rules>('/api/v1/rules');
      const all = current.data.groups.flatMap((group) => group.rules);
      return all.length > 0 && all.every((rule) => rule.health !== 'unknown') ? all : undefined;
    });
    console.log(`[e2e] rule manager: ${rules.length} rules, health ${[...new Set(rules.map((rule) => rule.health))].join(',')}`);
    expect(rules.length).toBe(alertExpressions().length);
    expect(rules.filter((rule) => rule.health !== 'ok').map((rule) => `${rule.name}: ${rule.health} ${rule.lastError ?? ''}`)).toEqual([]);
  });

  it('shows a hand flush of node a in ipsec_operator_drift_repairs_total of its agent', async () => {
    const expr = `sum(ipsec_operator_drift_repairs_total{job="${AGENT_JOB}",node="a"})`;
    const before = (await scalarOf(expr)) ?? 0;
    await cluster!.topology.node('a').sh('ip xfrm state flush; ip xfrm policy flush');
    const after = await timed('drift repairs in Prometheus', () => waitFor('node a drift repairs increase in Prometheus', async () => {
      const value = await scalarOf(expr);
      return value !== undefined && value > before ? value : undefined;
    }, 180_000, 1000));
    console.log(`[e2e] ipsec_operator_drift_repairs_total{node="a"}: ${before} → ${after}`);
    expect(after).toBeGreaterThan(before);
    const alert = await scalarOf(`sum(increase(ipsec_operator_drift_repairs_total{job="${AGENT_JOB}",node="a"}[30m]))`);
    console.log(`[e2e] increase(...[30m]) (the IpsecOperatorDriftRepairs expression): ${alert}`);
  });

  it('shows an SA with a key of the wrong length as not Ready with reason InvalidKey', async () => {
    const expr = `sum(ipsec_operator_resources_not_ready{job="${CONTROLLER_JOB}",reason="InvalidKey"})`;
    const before = (await scalarOf(expr)) ?? 0;
    expect(before).toBe(0);
    await cluster!.kubectl(['apply', '-f', '-'], BAD_KEY);
    const after = await timed('InvalidKey in Prometheus', () => waitFor('resources_not_ready{reason="InvalidKey"} ≥ 1 in Prometheus', async () => {
      const value = await scalarOf(expr);
      return value !== undefined && value >= 1 ? value : undefined;
    }, 180_000, 1000));
    const series = await vector(`ipsec_operator_resources_not_ready{job="${CONTROLLER_JOB}",reason="InvalidKey"}`);
    console.log(`[e2e] ipsec_operator_resources_not_ready{reason="InvalidKey"}: ${before} → ${after} (${series.map((item) => JSON.stringify(item.metric)).join(' ')})`);
    expect(after).toBeGreaterThanOrEqual(1);
    const state = (await resourceStates(cluster!)).find((item) => item.name === 'prometheus-e2e-short-key');
    expect(state).toMatchObject({ ready: 'False', reason: 'InvalidKey' });
  });
});
