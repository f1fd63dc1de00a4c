/**
 * Reading the Prometheus text exposition in tests: the unit tests scrape a prom-client registry,
 * the end-to-end tests an agent's or the controller's /metrics.
 */

/** The value of one series (`name{labels}`, labels as prom-client orders them) in a text exposition, or undefined when it is absent. */
export function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
