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

export async function runAgentCommand(options: ServeOptions & { nodeName: string | undefined; stateDirectory: string; netns: string | undefined; resyncSeconds: string | undefined; perSaMetrics: boolean; bootId?: string | undefined }): Promise<number> {
  const resyncSeconds = Number(options.resyncSeconds ?? '30');
  if (!Number.isInteger(resyncSeconds) || resyncSeconds < 1) throw new UsageError('--resync-seconds must be a positive whole number');
  const nodeName = required(options.nodeName ?? process.env['NODE_NAME'], '--node-name', 'NODE_NAME');
  if (options.bootId !== undefined && !/^[A-Za-z0-9-]{1,64}$/.test(options.bootId)) throw new UsageError('--boot-id must be 1 to 64 letters, digits or dashes');
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
    ...(options.bootId !== undefined ? { bootId: options.bootId } : {}),
    logger,
    signal: stopSignal(),
  });
  return 0;
}

export interface LeaseTimingFlags {
  readonly leaseDurationSeconds: string | undefined;
  readonly renewDeadlineSeconds: string | undefined;
  readonly retryPeriodSeconds: string | undefined;
}

/**
 * The Lease timing flags in milliseconds, checked as the elector will check them, so that a bad
 * combination is a usage error (exit 2) before anything starts. Defaults: Kubernetes' 15/10/2 s.
 * A slow node (emulated, overloaded) needs more: a leader that cannot renew within the deadline
 * gives up its term, and two replicas that keep doing so hand the lease back and forth.
 */
export function leaseTiming(flags: LeaseTimingFlags): { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number } {
  const seconds = (value: string | undefined, fallback: number, flag: string) => {
    const parsed = Number(value ?? fallback);
    if (!Number.isInteger(parsed) || parsed < 1) throw new UsageError(`${flag} must be a positive whole number`);
    return parsed;
  };
  const lease = seconds(flags.leaseDurationSeconds, 15, '--lease-duration-seconds');
  const renew = seconds(flags.renewDeadlineSeconds, 10, '--renew-deadline-seconds');
  const retry = seconds(flags.retryPeriodSeconds, 2, '--retry-period-seconds');
  if (!(lease > renew)) throw new UsageError('--lease-duration-seconds must be greater than --renew-deadline-seconds');
  // client-go's rule (the elector's too): renewals jitter by up to 1.2 x the retry period.
  if (!(renew > 1.2 * retry)) throw new UsageError('--renew-deadline-seconds must be greater than 1.2 x --retry-period-seconds');
  return { leaseDurationMs: lease * 1000, renewDeadlineMs: renew * 1000, retryPeriodMs: retry * 1000 };
}

export async function runControllerCommand(options: ServeOptions & LeaseTimingFlags & { leaderElect: boolean }): Promise<number> {
  const timing = leaseTiming(options);
  const identity = process.env['POD_NAME'] ?? `${hostname()}-${process.pid}`;
  const logger = createLogger({ fields: { component: 'controller', identity } });
  await runController({
    kubeConfig: loadKubeConfig(options.kubeconfig === undefined ? {} : { path: options.kubeconfig }),
    namespace: required(options.namespace ?? process.env['POD_NAMESPACE'], '--namespace', 'POD_NAMESPACE'),
    metricsAddress: options.metricsAddress ?? ':8080',
    leaderElect: options.leaderElect,
    ...timing,
    identity,
    logger,
    signal: stopSignal(),
  });
  return 0;
}
