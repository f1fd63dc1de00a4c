/**
 * `agent` and `controller`: the long-running processes. They run until SIGTERM or SIGINT, then
 * stop their components in reverse start order and exit 0 (the agent leaves the kernel as it
 * is: removing entries is what deleting resources is for, never a side effect of a restart).
 * A component that fails to start or fails while running stops the process with status 1 and
 * a message naming the component. Signals work the same when the process is PID 1 of its
 * container (./signals.ts).
 */
import { hostname } from 'node:os';
import { loadKubeConfig } from '../kube/client.js';
import { createLogger } from '../kube/logger.js';
import { runAgent } from '../agent/agent.js';
import { runController } from '../controller/controller.js';
import { UsageError } from './errors.js';
import { processSignals } from './signals.js';

export interface ServeOptions {
  readonly kubeconfig: string | undefined;
  readonly namespace: string | undefined;
  readonly metricsAddress: string | undefined;
}

function stopSignal(): AbortSignal {
  return processSignals().claim();
}

function required(value: string | undefined, what: string, env: string): string {
  if (value === undefined || value === '') throw new UsageError(`${what} is required (flag, or the ${env} environment variable)`);
  return value;
}

export async function runAgentCommand(options: ServeOptions & { nodeName: string | undefined; stateDirectory: string; netns: string | undefined; resyncSeconds: string | undefined; perSaMetrics: boolean }): Promise<number> {
  const resyncSeconds = Number(options.resyncSeconds ?? '30');
  if (!Number.isInteger(resyncSeconds) || resyncSeconds < 1) throw new UsageError('--resync-seconds must be a positive whole number');
  const nodeName = required(options.nodeName ?? process.env['NODE_NAME'], '--node-name', 'NODE_NAME');
  const logger = createLogger({ fields: { component: 'agent', node: nodeName } });
  await runAgent({
    kubeConfig: loadKubeConfig(options.kubeconfig === undefined ? {} : { path: options.kubeconfig }),
    nodeName,
    namespace: required(options.namespace ?? process.env['POD_NAMESPACE'], '--namespace', 'POD_NAMESPACE'),
    stateDirectory: options.stateDirectory,
    netns: options.netns,
    metricsAddress: options.metricsAddress ?? ':9090',
    resyncSeconds,
    perSaMetrics: options.perSaMetrics,
    logger,
    signal: stopSignal(),
  });
  return 0;
}

export async function runControllerCommand(options: ServeOptions & { leaderElect: boolean }): Promise<number> {
  const identity = process.env['POD_NAME'] ?? `${hostname()}-${process.pid}`;
  const logger = createLogger({ fields: { component: 'controller', identity } });
  await runController({
    kubeConfig: loadKubeConfig(options.kubeconfig === undefined ? {} : { path: options.kubeconfig }),
    namespace: required(options.namespace ?? process.env['POD_NAMESPACE'], '--namespace', 'POD_NAMESPACE'),
    metricsAddress: options.metricsAddress ?? ':8080',
    leaderElect: options.leaderElect,
    identity,
    logger,
    signal: stopSignal(),
  });
  return 0;
}
