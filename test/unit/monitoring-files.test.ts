// The monitoring files against the metrics contract of docs/operations.md: every metric the rules
// and the dashboard query is documented, every alert is complete and tested both ways, the
// dashboard is well formed, and the plain scrape jobs match the alerts and the chart's pods.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  documentedMetrics,
  metricNames,
  only,
  parseManifests,
  podTemplate,
  queryableNames,
  readRepoFile,
} from './chart-helpers.js';

interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: AlertRule[] }[];
}
interface AlertTestFile {
  rule_files: string[];
  tests: {
    input_series: { series: string; values: string }[];
    alert_rule_test?: { eval_time: string; alertname: string; exp_alerts: { exp_labels: Record<string, string> }[] }[];
  }[];
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { type: string; name: string; query: unknown; definition?: string }[] };
}

const documented = documentedMetrics();
const queryable = queryableNames(documented);
const rules = parse(readRepoFile('monitoring/alerts.yaml')) as RuleFile;
const alerts = rules.groups.flatMap((group) => group.rules);
const alertTests = parse(readRepoFile('monitoring/alerts.test.yaml')) as AlertTestFile;
const dashboard = JSON.parse(readRepoFile('monitoring/dashboard.json')) as Dashboard;
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
const queries = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));
const variableQueries = dashboard.templating.list
  .filter((v) => v.type === 'query')
  .map((v) => (typeof v.query === 'string' ? v.query : (v.query as { query: string }).query));

describe('metric names', () => {
  it('docs/operations.md documents the metrics contract', () => {
    expect(documented.size).toBeGreaterThanOrEqual(25);
    expect(documented.get('ipsec_operator_reconcile_time_seconds')?.type).toBe('histogram');
    expect(documented.get('ipsec_operator_sa_packets_total')?.type).toBe('counter');
  });

  it.each([
    ['sum by (controller) (rate(ipsec_operator_reconcile_total{result="error"}[5m]))', ['ipsec_operator_reconcile_total']],
    ['histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))', ['x_bucket']],
    ['(max(a) or vector(0)) < 1', ['a']],
    ['time() - b{instance=~"$instance"} > 600', ['b']],
    ['c unless c offset 10m', ['c']],
    ['sum(max by (kind, reason) (d)) + on (kind) group_left (reason) e', ['d', 'e']],
    ['absent(up{job="ipsec-operator-agent"})', ['up']],
  ])('reads the metric names of %s', (expr, names) => {
    expect(metricNames(expr)).toEqual(names);
  });

  it('every alert queries only documented metrics (and Prometheus\' own `up`)', () => {
    const unknown = alerts.flatMap((rule) => metricNames(rule.expr).filter((name) => name !== 'up' && !queryable.has(name)).map((name) => `${rule.alert}: ${name}`));
    expect(unknown).toEqual([]);
  });

  it('every dashboard query and variable uses only documented metrics', () => {
    const unknown = [
      ...queries.flatMap(({ panel, expr }) => metricNames(expr).filter((name) => !queryable.has(name)).map((name) => `${panel}: ${name}`)),
      ...variableQueries.flatMap((query) => {
        const m = /^label_values\((\w+),\s*\w+\)$/.exec(query);
        return m && queryable.has(m[1]!) ? [] : [`variable query ${query}`];
      }),
    ];
    expect(unknown).toEqual([]);
  });

  it('the dashboard shows every documented metric', () => {
    const used = new Set(queries.flatMap(({ expr }) => metricNames(expr)).map((name) => name.replace(/_bucket$/, '')));
    expect([...documented.keys()].filter((name) => !used.has(name))).toEqual([]);
  });
});

describe('monitoring/alerts.yaml', () => {
  const names = alerts.map((rule) => rule.alert);

  it('holds alerts only, each named once', () => {
    expect(alerts.every((rule) => rule.alert && !rule.record)).toBe(true);
    expect(new Set(names).size).toBe(names.length);
  });

  it.each([
    'IpsecOperatorAgentDown',
    'IpsecOperatorApplyFailures',
    'IpsecOperatorDriftRepairs',
    'IpsecOperatorKernelInboundErrors',
    'IpsecOperatorSaNearHardLifetime',
    'IpsecOperatorSequenceExhaustion',
    'IpsecOperatorResourceNotReady',
  ])('has %s', (name) => {
    expect(names).toContain(name);
  });

  it.each(alerts.map((rule) => [rule.alert!, rule] as const))('%s has a severity, a summary, a description and a runbook section', (name, rule) => {
    expect(['critical', 'warning', 'info']).toContain(rule.labels?.['severity']);
    expect(rule.annotations?.['summary']?.length).toBeGreaterThan(10);
    expect(rule.annotations?.['description']?.length).toBeGreaterThan(20);
    const runbook = rule.annotations?.['runbook'] ?? '';
    expect(runbook).toMatch(new RegExp(`^monitoring/runbook\\.md#${name.toLowerCase()}: .{20,}`));
    expect(readRepoFile('monitoring/runbook.md')).toContain(`\n## ${name}\n`);
  });

  it('keeps the thresholds the issue asks for', () => {
    const expr = (name: string): string => alerts.find((rule) => rule.alert === name)!.expr;
    expect(expr('IpsecOperatorSaNearHardLifetime')).toBe('ipsec_operator_sa_lifetime_used_ratio > 0.9');
    expect(expr('IpsecOperatorSequenceExhaustion')).toBe('ipsec_operator_sequence_space_used_ratio > 0.8');
    expect(alerts.find((rule) => rule.alert === 'IpsecOperatorResourceNotReady')!.for).toBe('15m');
    for (const counter of ['XfrmInNoStates', 'XfrmInStateProtoError', 'XfrmInStateSeqError', 'XfrmInStateMismatch']) {
      expect(expr('IpsecOperatorKernelInboundErrors')).toContain(counter);
    }
    expect(expr('IpsecOperatorKernelInboundErrors')).not.toContain('XfrmInPolBlock');
  });

  it.each(alerts.map((rule) => rule.alert!))('alerts.test.yaml has a case where %s fires and one where it is silent', (name) => {
    const cases = alertTests.tests.flatMap((test) => test.alert_rule_test ?? []).filter((test) => test.alertname === name);
    expect(cases.some((test) => test.exp_alerts.length > 0)).toBe(true);
    expect(cases.some((test) => test.exp_alerts.length === 0)).toBe(true);
  });

  it('alerts.test.yaml tests this rules file', () => {
    expect(alertTests.rule_files).toEqual(['alerts.yaml']);
  });
});

describe('monitoring/dashboard.json', () => {
  it('is a Grafana dashboard with a Prometheus data source variable', () => {
    expect(dashboard.uid).toBe('ipsec-operator');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    const datasource = dashboard.templating.list.find((v) => v.name === 'datasource');
    expect(datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
  });

  it('gives every panel a unique id and the data source variable; every query an expr and refId', () => {
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      const refIds = panel.targets!.map((target) => target.refId);
      expect(new Set(refIds).size, panel.title).toBe(refIds.length);
      for (const target of panel.targets!) {
        expect(target.expr.length, panel.title).toBeGreaterThan(0);
        expect(target.datasource?.uid ?? '${datasource}', panel.title).toBe('${datasource}');
      }
    }
  });

  it('lays panels out on the 24-column grid without overlaps', () => {
    const cells = new Map<string, string>();
    for (const panel of panels) {
      const { x, y, w, h } = panel.gridPos;
      expect(x + w, panel.title).toBeLessThanOrEqual(24);
      for (let row = y; row < y + h; row++) {
        for (let col = x; col < x + w; col++) {
          const key = `${row},${col}`;
          expect(cells.get(key), `${panel.title} overlaps ${cells.get(key)}`).toBeUndefined();
          cells.set(key, panel.title);
        }
      }
    }
  });

  it.each([
    ['convergence / last sync age', 'ipsec_operator_last_sync_timestamp_seconds', undefined],
    ['reconcile rate', 'ipsec_operator_reconcile_total', undefined],
    ['reconcile errors', 'ipsec_operator_reconcile_errors_total', undefined],
    ['drift repairs', 'ipsec_operator_drift_repairs_total', undefined],
    ['kernel apply errors by errno', 'ipsec_operator_kernel_apply_errors_total', 'errno'],
    ['owned SAs by direction', 'ipsec_operator_owned_states', 'direction'],
    ['owned policies by direction', 'ipsec_operator_owned_policies', 'direction'],
    ['foreign SAs', 'ipsec_operator_foreign_states', undefined],
    ['foreign policies', 'ipsec_operator_foreign_policies', undefined],
    ['xfrm_stat error counters', 'ipsec_operator_xfrm_stat_packets_total', 'counter'],
    ['sequence ratio', 'ipsec_operator_sequence_space_used_ratio', undefined],
    ['lifetime ratio', 'ipsec_operator_sa_lifetime_used_ratio', undefined],
    ['resources not ready by reason', 'ipsec_operator_resources_not_ready', 'reason'],
  ])('has a panel for %s', (_what, metric, by) => {
    const matching = queries.filter(({ expr }) => metricNames(expr).includes(metric) && (by === undefined || new RegExp(`by \\([^)]*\\b${by}\\b`).test(expr)));
    expect(matching.length).toBeGreaterThan(0);
  });
});

describe('deploy/prometheus/scrape-configs.yaml', () => {
  interface ScrapeConfig {
    job_name: string;
    kubernetes_sd_configs: { role: string; namespaces: { names: string[] } }[];
    relabel_configs: { source_labels?: string[]; regex?: string; action?: string; target_label?: string }[];
  }
  const scrape = (parse(readRepoFile('deploy/prometheus/scrape-configs.yaml')) as { scrape_configs: ScrapeConfig[] }).scrape_configs;
  const manifests = parseManifests(readRepoFile('deploy/ipsec-operator.yaml'));

  it('names the jobs the alerts select on', () => {
    const selected = new Set(alerts.flatMap((rule) => [...rule.expr.matchAll(/job="([^"]+)"/g)].map((m) => m[1]!)));
    expect([...selected].sort()).toEqual(['ipsec-operator-agent']);
    expect(scrape.map((job) => job.job_name).sort()).toEqual(['ipsec-operator-agent', 'ipsec-operator-controller']);
  });

  it.each([
    ['ipsec-operator-controller', 'Deployment', 'ipsec-operator-controller'],
    ['ipsec-operator-agent', 'DaemonSet', 'ipsec-operator-agent'],
  ])('job %s keeps exactly the metrics port of the %s of deploy/ipsec-operator.yaml', (jobName, kind, workloadName) => {
    const job = scrape.find((j) => j.job_name === jobName)!;
    const workload = only(manifests, kind, workloadName);
    expect(job.kubernetes_sd_configs).toEqual([{ role: 'pod', namespaces: { names: [workload.metadata.namespace] } }]);
    const keep = job.relabel_configs.find((r) => r.action === 'keep')!;
    const template = podTemplate(workload);
    const metaValue = (label: string): string => {
      const labelName = /^__meta_kubernetes_pod_label_(.+)$/.exec(label);
      if (labelName) {
        const key = Object.keys(template.metadata.labels ?? {}).find((k) => k.replace(/[^a-zA-Z0-9_]/g, '_') === labelName[1]);
        return key ? template.metadata.labels![key]! : '';
      }
      if (label === '__meta_kubernetes_pod_container_port_name') return template.spec.containers[0]!.ports![0]!.name!;
      throw new Error(`unexpected source label ${label}`);
    };
    const value = keep.source_labels!.map(metaValue).join(';');
    expect(new RegExp(`^(?:${keep.regex})$`).test(value), value).toBe(true);
  });
});
