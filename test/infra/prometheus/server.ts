// A real Prometheus server (Debian's /usr/bin/prometheus) for tests, on 127.0.0.1 with a
// throwaway TSDB: scrape jobs from static targets, optional rule files, and a small client of
// its HTTP API. stop() kills it (SIGTERM, then SIGKILL) and removes its data.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../free-port.js';

export const PROMETHEUS = '/usr/bin/prometheus';

export interface ScrapeTarget {
  /** host:port */
  readonly address: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface ScrapeJob {
  readonly job: string;
  readonly targets: readonly ScrapeTarget[];
}

export interface PrometheusOptions {
  readonly jobs: readonly ScrapeJob[];
  readonly ruleFiles?: readonly string[];
  /** Scrape and rule evaluation interval, e.g. '2s'. */
  readonly interval?: string;
}

export interface QueryResult {
  readonly status: string;
  readonly errorType?: string;
  readonly error?: string;
  readonly warnings?: string[];
  readonly data?: { resultType: string; result: { metric: Record<string, string>; value?: [number, string] }[] | [number, string] };
}

export interface PrometheusServer {
  readonly url: string;
  /** GET /api/v1/query (instant query, now); the parsed JSON whatever the status. */
  query(expr: string): Promise<QueryResult>;
  /** GET of any API path, parsed JSON. */
  api<T = unknown>(path: string): Promise<T>;
  log(): string;
  stop(): Promise<void>;
}

export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const interval = options.interval ?? '2s';
  const dir = mkdtempSync(join(tmpdir(), 'ipsecop-prometheus-'));
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    ...(options.ruleFiles?.length ? { rule_files: [...options.ruleFiles] } : {}),
    scrape_configs: options.jobs.map((job) => ({
      job_name: job.job,
      static_configs: job.targets.map((target) => ({ targets: [target.address], ...(target.labels ? { labels: { ...target.labels } } : {}) })),
    })),
  };
  const configPath = join(dir, 'prometheus.yml');
  writeFileSync(configPath, stringify(config));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let output = '';
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [`--config.file=${configPath}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--web.enable-lifecycle', '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-100_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 120_000;
  for (;;) {
    if (spawnError) {
      await stop();
      throw new Error(`cannot run ${PROMETHEUS} (Debian package prometheus): ${spawnError.message}`);
    }
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited with ${child.exitCode} before it was ready:\n${output}`);
    }
    const ready = await fetch(`${url}/-/ready`).then((response) => response.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready after 120 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }

  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}${path}`);
    const text = await response.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new Error(`prometheus ${path}: HTTP ${response.status}: ${text.slice(0, 500)}`);
    }
  };
  return {
    url,
    api,
    query: (expr) => api<QueryResult>(`/api/v1/query?query=${encodeURIComponent(expr)}`),
    log: () => output,
    stop,
  };
}
