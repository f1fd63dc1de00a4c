// The alert rules through Prometheus' own checker and rule unit tester (promtool, Debian package
// `prometheus`): the rules parse, and every alert fires and stays silent where
// monitoring/alerts.test.yaml says. Any failure shows promtool's output.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './chart-helpers.js';

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8' });
  if (run.error) throw new Error(`cannot run promtool (install the Debian package prometheus; scripts/bootstrap.sh does): ${run.error.message}`);
  return { status: run.status, output: `$ promtool ${args.join(' ')}\n${run.stdout}${run.stderr}` };
}

// promtool evaluates every rule test over its time series: seconds of CPU, and beyond vitest's 5 s
// default on a loaded 2-core machine (seen at load 14). The bound is for a hung process only.
describe('promtool', { timeout: 60_000 }, () => {
  it('check rules monitoring/alerts.yaml', () => {
    const { status, output } = promtool(['check', 'rules', 'monitoring/alerts.yaml']);
    expect(status, output).toBe(0);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('test rules monitoring/alerts.test.yaml', () => {
    const { status, output } = promtool(['test', 'rules', 'monitoring/alerts.test.yaml']);
    expect(status, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });

  it('test rules fails when an alert does not behave as the test file says', () => {
    // The same tests against a copy of the rules with one threshold moved: promtool must report
    // that alert, or the passing run above would prove nothing.
    const dir = mkdtempSync(join(tmpdir(), 'ipsec-alerts-'));
    try {
      const rules = readFileSync(join(ROOT, 'monitoring/alerts.yaml'), 'utf8');
      const broken = rules.replace('ipsec_operator_sequence_space_used_ratio > 0.8', 'ipsec_operator_sequence_space_used_ratio > 0.9');
      expect(broken).not.toBe(rules);
      writeFileSync(join(dir, 'alerts.yaml'), broken);
      copyFileSync(join(ROOT, 'monitoring/alerts.test.yaml'), join(dir, 'alerts.test.yaml'));
      const { status, output } = promtool(['test', 'rules', join(dir, 'alerts.test.yaml')]);
      expect(status, output).not.toBe(0);
      expect(output).toContain('alertname: IpsecOperatorSequenceExhaustion');
      expect(output).not.toContain('alertname: IpsecOperatorSaNearHardLifetime');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
