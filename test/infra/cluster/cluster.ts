// A local ipsec-operator cluster for end-to-end tests and the demo: the real control plane on
// the host, the test VM's kernel as the nodes' kernel (one network namespace per node, joined
// by veth or a bridge), the controller as a process on the host and one agent per node as a
// process in the VM whose netlink sockets live in that node's namespace.
//
// Everything runs with the credentials a real install gives it: the chart's ServiceAccounts
// and RBAC (rendered with helm), tokens from the TokenRequest API. Nodes are plain Node
// objects (there is no kubelet) labelled `ipsec.xfrm.io/node: <name>`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { VmClient } from '../vm/client.js';
import { createNodes, type Topology } from '../vm/topology.js';
import { loadKubeConfig, kubeConfigForServiceAccount, withServer, GUEST_HOST_ADDRESS } from '../controlplane/kubeconfig.js';
import { check, helm, kubectl } from '../controlplane/tools.js';
import { REPO_ROOT } from '../controlplane/binaries.js';
import { freePort } from '../free-port.js';

export const NAMESPACE = 'ipsec-operator';
export const NODE_LABEL = 'ipsec.xfrm.io/node';
// The bundled CLI (scripts/bundle.mjs): agents in the VM start in seconds instead of minutes.
const CLI = join(REPO_ROOT, 'dist/bundle/ipsec-operator.mjs');
const GUEST_DIR = '/run/ipsecop-e2e';
/**
 * Agents' state (ledgers, mesh key stores): inside the VM (its writes never reach the host), kept
 * across agent restarts, one directory per node under this one: an agent's state directory is
 * its own (docs/design.md, "Starting an agent for a mesh"; a mesh's key store is named by the
 * mesh alone, so agents sharing one would read each other's key pairs after a restart).
 */
export const AGENT_STATE_DIR = '/var/lib/ipsec-operator-e2e';
export const agentStateDir = (node: string): string => `${AGENT_STATE_DIR}/${node}`;

export interface ClusterOptions {
  readonly vm: VmClient;
  readonly kubeconfigPath: string;
  readonly nodes: readonly string[];
  /** Agents' full-resync period. */
  readonly resyncSeconds?: number;
  /** Argv put before every agent's `node ...` (e.g. `unshare --pid --fork --mount-proc`). */
  readonly agentPrefix?: readonly string[];
  readonly log?: (line: string) => void;
}

export interface AgentHandle {
  readonly node: string;
  readonly netns: string;
  id: string;
  readonly metricsPort: number;
}

export interface Cluster {
  readonly topology: Topology;
  readonly admin: KubeConfig;
  readonly adminKubeconfig: string;
  readonly agents: ReadonlyMap<string, AgentHandle>;
  readonly controllerMetricsPort: number;
  kubectl(args: string[], input?: string): Promise<string>;
  /**
   * Starts the node's agent; `extraArgs` (e.g. `['--boot-id', ID]`) are added to its command line
   * and kept for its later restarts, as a node's configuration would be.
   */
  startAgent(node: string, extraArgs?: readonly string[]): Promise<void>;
  /** Sends `signal` to the agent's process group and waits for it to end. */
  stopAgent(node: string, signal?: NodeJS.Signals): Promise<void>;
  agentLogs(node: string): Promise<string>;
  controllerLogs(): string;
  /** Stops controller and agents; removes Nodes, namespaces, the VM namespaces. */
  stop(): Promise<void>;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { vm, kubeconfigPath } = options;
  const log = options.log ?? (() => undefined);
  const admin = loadKubeConfig(kubeconfigPath);
  const run = (args: string[], input?: string) => check(kubectl(args, { kubeconfig: kubeconfigPath, ...(input === undefined ? {} : { input }) }), `kubectl ${args.join(' ')}`);
  const scratch = mkdtempSync(join(tmpdir(), 'ipsecop-cluster-'));

  log('installing CRDs, namespace, ServiceAccounts and RBAC from the chart');
  await run(['apply', '--server-side', '--force-conflicts', '-f', join(REPO_ROOT, 'deploy/crds')]);
  await run(['wait', '--for=condition=Established', '--timeout=60s', 'crd/securityassociations.ipsec.xfrm.io', 'crd/ipsecpolicies.ipsec.xfrm.io', 'crd/ipsecnodestates.ipsec.xfrm.io']);
  await run(['apply', '-f', '-'], `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${NAMESPACE}\n`);
  const rbac = await check(
    helm(['template', 'ipsec-operator', join(REPO_ROOT, 'charts/ipsec-operator'), '--namespace', NAMESPACE, '--show-only', 'templates/serviceaccounts.yaml', '--show-only', 'templates/controller-rbac.yaml', '--show-only', 'templates/agent-rbac.yaml'], {
      kubeconfig: kubeconfigPath,
      env: { HELM_CACHE_HOME: join(scratch, 'helm'), HELM_CONFIG_HOME: join(scratch, 'helm'), HELM_DATA_HOME: join(scratch, 'helm') },
    }),
    'helm template (RBAC)',
  );
  await run(['apply', '-f', '-'], rbac);
  const serviceAccounts = await run(['get', 'serviceaccounts', '-n', NAMESPACE, '-o', 'name']);
  const accountName = (component: string) => {
    const match = serviceAccounts.split('\n').find((line) => line.includes(component));
    if (!match) throw new Error(`the chart rendered no ServiceAccount for the ${component}:\n${serviceAccounts}`);
    return match.replace('serviceaccount/', '').trim();
  };
  const controllerConfig = await kubeConfigForServiceAccount(admin, { namespace: NAMESPACE, name: accountName('controller'), expirationSeconds: 86_400 });
  const agentConfig = await kubeConfigForServiceAccount(admin, { namespace: NAMESPACE, name: accountName('agent'), expirationSeconds: 86_400 });

  log(`creating nodes ${options.nodes.join(', ')} (Node objects and network namespaces in the VM)`);
  const core = admin.makeApiClient(CoreV1Api);
  for (const node of options.nodes) {
    await core.deleteNode({ name: node }).catch(() => undefined);
    await core.createNode({ body: { metadata: { name: node, labels: { [NODE_LABEL]: node, 'kubernetes.io/hostname': node } } } });
  }
  const topology = await createNodes(vm, options.nodes, { ipv4: true, ipv6: true });

  const controllerKubeconfig = join(scratch, 'controller.kubeconfig');
  writeFileSync(controllerKubeconfig, controllerConfig.exportConfig(), { mode: 0o600 });
  const guestKubeconfig = `${GUEST_DIR}/agent.kubeconfig`;
  const server = controllerConfig.getCurrentCluster()!.server.replace('127.0.0.1', GUEST_HOST_ADDRESS);
  await vm.run({ script: `mkdir -p ${GUEST_DIR} ${options.nodes.map(agentStateDir).join(' ')} && cat > ${guestKubeconfig} && chmod 600 ${guestKubeconfig}` }, { stdin: withServer(agentConfig, server).exportConfig() });

  log('starting the controller (host) and one agent per node (VM)');
  const controllerMetricsPort = await freePort();
  let controllerOutput = '';
  const controller: ChildProcess = spawn(process.execPath, [CLI, 'controller', '--kubeconfig', controllerKubeconfig, '--namespace', NAMESPACE, '--metrics-address', `127.0.0.1:${controllerMetricsPort}`, '--leader-elect'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, POD_NAME: 'controller-e2e' },
  });
  const keep = (chunk: Buffer) => {
    controllerOutput = (controllerOutput + chunk.toString()).slice(-200_000);
  };
  controller.stdout?.on('data', keep);
  controller.stderr?.on('data', keep);

  const agents = new Map<string, AgentHandle>();
  const agentArgs = new Map<string, readonly string[]>();
  const startAgent = async (node: string, extraArgs?: readonly string[]) => {
    if (extraArgs !== undefined) agentArgs.set(node, extraArgs);
    const netns = topology.node(node).netns;
    const metricsPort = agents.get(node)?.metricsPort ?? 9100 + options.nodes.indexOf(node);
    const { id } = await vm.spawn({
      argv: [...(options.agentPrefix ?? []), 'node', CLI, 'agent', '--node-name', node, '--netns', netns, '--namespace', NAMESPACE, '--kubeconfig', guestKubeconfig, '--state-dir', agentStateDir(node), '--metrics-address', `10.0.2.15:${metricsPort}`, '--resync-seconds', String(options.resyncSeconds ?? 10), ...(agentArgs.get(node) ?? [])],
    });
    agents.set(node, { node, netns, id, metricsPort });
  };
  for (const node of options.nodes) await startAgent(node);

  const stopAgent = async (node: string, signal: NodeJS.Signals = 'SIGTERM') => {
    const agent = agents.get(node);
    if (!agent) return;
    await vm.kill(agent.id, signal).catch(() => undefined);
    await vm.wait(agent.id, 30_000).catch(() => undefined);
  };

  return {
    topology,
    admin,
    adminKubeconfig: kubeconfigPath,
    agents,
    controllerMetricsPort,
    kubectl: run,
    startAgent,
    stopAgent,
    agentLogs: async (node) => {
      const agent = agents.get(node);
      if (!agent) return '';
      const status = await vm.logs(agent.id);
      return `${status.stdout}${status.stderr}`;
    },
    controllerLogs: () => controllerOutput,
    async stop() {
      for (const node of options.nodes) await stopAgent(node);
      controller.kill('SIGTERM');
      await new Promise((resolve) => (controller.exitCode !== null ? resolve(undefined) : controller.once('exit', resolve)));
      await topology.cleanup();
      for (const node of options.nodes) await core.deleteNode({ name: node }).catch(() => undefined);
      await vm.trySh(`rm -rf ${AGENT_STATE_DIR} ${GUEST_DIR}`);
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
