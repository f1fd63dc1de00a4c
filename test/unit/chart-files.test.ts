// The chart's files: copies of shared sources are current, and values.schema.json is strict and
// accepts the defaults and every CI scenario. (Rendering with helm: test/controlplane/chart.test.ts.)
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { copyPairs, staleCopies } from '../../scripts/render-deploy.mjs';
import { CHART, mergeValues, readRepoFile } from './chart-helpers.js';

describe('chart copies of shared files (refresh with `node scripts/render-deploy.mjs`)', () => {
  it.each(copyPairs().map(({ from, to }) => [to, from]))('%s is a byte-for-byte copy of %s', (to, from) => {
    expect(readRepoFile(to)).toBe(readRepoFile(from));
  });

  it('copies every CRD of deploy/crds and nothing else', () => {
    const crds = readdirSync(join(CHART, '../../deploy/crds')).filter((name) => name.endsWith('.yaml'));
    expect(crds.length).toBe(4);
    expect(copyPairs().filter(({ to }) => to.includes('/files/crds/')).length).toBe(crds.length);
    expect(staleCopies()).toEqual([]);
  });
});

const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as Record<string, unknown>;
const defaults = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
const scenarios = readdirSync(join(CHART, 'ci')).filter((name) => name.endsWith('-values.yaml')).sort();

function validate(values: unknown): string[] {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const check = ajv.compile(schema);
  return check(values) ? [] : (check.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
}

describe('values.schema.json', () => {
  it('accepts values.yaml', () => {
    expect(validate(defaults)).toEqual([]);
  });

  it('has the four CI scenarios', () => {
    expect(scenarios).toEqual(['custom-values.yaml', 'default-values.yaml', 'minimal-values.yaml', 'monitoring-values.yaml']);
  });

  it.each(scenarios)('accepts ci/%s merged over the defaults', (file) => {
    const values = parse(readFileSync(join(CHART, 'ci', file), 'utf8')) as unknown;
    expect(validate(mergeValues(defaults, values ?? {}))).toEqual([]);
  });

  it('closes every object that lists its properties (no silently ignored typo)', () => {
    const open: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      if (n['properties'] && n['additionalProperties'] !== false) open.push(path);
      for (const [key, value] of Object.entries(n)) walk(value, `${path}/${key}`);
    };
    walk(schema, '#');
    expect(open).toEqual([]);
  });

  it.each([
    ['an unknown top-level key', { replicas: 3 }, '/ must NOT have additional properties (replicas)'],
    ['a typo in controller', { controller: { replica: 3 } }, '/controller must NOT have additional properties (replica)'],
    ['a typo in agent.image', { agent: { image: { tags: 'x' } } }, '/agent/image must NOT have additional properties (tags)'],
    ['replicas as a string', { controller: { replicas: '2' } }, '/controller/replicas must be integer'],
    ['zero replicas', { controller: { replicas: 0 } }, '/controller/replicas must be >= 1'],
    ['an unknown pull policy', { image: { pullPolicy: 'Sometimes' } }, '/image/pullPolicy must be equal to one of the allowed values'],
    ['a relative state directory', { agent: { stateDir: 'var/lib/x' } }, '/agent/stateDir must match pattern "^/[^\\s]*[^/\\s]$"'],
    ['maxUnavailable 0', { agent: { updateStrategy: { maxUnavailable: 0 } } }, '/agent/updateStrategy/maxUnavailable must match exactly one schema in oneOf'],
    ['a port out of range', { agent: { metricsPort: 70000 } }, '/agent/metricsPort must be <= 65535'],
    ['a bad scrape interval', { monitoring: { serviceMonitor: { interval: '30 seconds' } } }, '/monitoring/serviceMonitor/interval must match pattern "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"'],
    ['a non-string pod label', { agent: { podLabels: { team: 7 } } }, '/agent/podLabels/team must be string'],
  ])('rejects %s', (_what, override, message) => {
    expect(validate(mergeValues(defaults, override))).toContain(message);
  });
});
