// `make demo`: the main job on a local default. Starts the real control plane, boots the test
// VM with two nodes (network namespaces joined by veth), runs the controller and one agent per
// node, applies examples/host-to-host with kubectl, shows the resources with their status and
// an encrypted ping with the SA counters, then keeps running until Ctrl-C and stops everything.
//
// Run through `make demo` (which bootstraps first), or: node --import ./scripts/ts-register.mjs scripts/demo.ts
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../test/infra/controlplane/controlplane.js';
import { kubectlPath, REPO_ROOT } from '../test/infra/controlplane/binaries.js';
import { bootVm, type Vm } from '../test/infra/vm/vm.js';
import { startCluster, type Cluster } from '../test/infra/cluster/cluster.js';
import { warmCrypto } from '../test/support/vm-cli.js';
import { resourceStates, waitFor } from '../test/e2e/support.js';

const EXAMPLE = join(REPO_ROOT, 'examples/host-to-host');
const say = (line: string) => console.log(`\n== ${line}`);

let controlPlane: ControlPlane | undefined;
let vm: Vm | undefined;
let cluster: Cluster | undefined;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say('stopping: agents, controller, VM, control plane');
    await cluster?.stop().catch((error: unknown) => console.error(error));
    await vm?.shutdown().catch((error: unknown) => console.error(error));
    await controlPlane?.stop().catch((error: unknown) => console.error(error));
  }
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

try {
  say('building the TypeScript (npm run build)');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
  say('starting the control plane (kube-apiserver + etcd on 127.0.0.1)');
  controlPlane = await startControlPlane();
  console.log(`API server ${controlPlane.server}, kubeconfig ${controlPlane.kubeconfigPath}`);
  say('booting the node VM (Debian kernel with ESP/AH/IPComp, under qemu)');
  vm = await bootVm();
  await warmCrypto(vm);
  cluster = await startCluster({ vm, kubeconfigPath: controlPlane.kubeconfigPath, nodes: ['a', 'b'], log: (line) => console.log(line) });

  say(`kubectl apply -f examples/host-to-host`);
  console.log(await cluster.kubectl(['apply', '-f', EXAMPLE]));
  await waitFor(
    'every resource Ready',
    async () => {
      const states = await resourceStates(cluster!);
      return states.length > 0 && states.every((state) => state.ready === 'True');
    },
    300_000,
    1000,
  );
  say('kubectl get securityassociations,ipsecpolicies,ipsecnodestates -o wide');
  console.log(await cluster.kubectl(['get', 'securityassociations,ipsecpolicies,ipsecnodestates', '-o', 'wide']));

  const a = cluster.topology.node('a');
  const b = cluster.topology.node('b');
  say(`ping ${b.ipv4} from node a (through ESP)`);
  console.log((await a.sh(`ping -c 3 -W 5 ${b.ipv4}`)).stdout);
  say('the SA counters on node a (ip -s xfrm state)');
  console.log((await a.sh('ip -s xfrm state')).stdout.replace(/0x[0-9a-f]{32,}/g, '<key hidden>'));
  say('what the wire shows on node b (tcpdump): ESP, not ICMP');
  console.log(
    (await b.trySh(`tcpdump -l -n -i eth0 -c 2 'host ${a.ipv4} and (esp or icmp)' 2>/dev/null & sleep 2; ip netns exec ${a.netns} ping -c 1 -W 5 ${b.ipv4} >/dev/null; wait`, { timeoutMs: 60_000 })).stdout,
  );
  say(`running. Try: ${kubectlPath()} --kubeconfig ${controlPlane.kubeconfigPath} get xsa,xpol,xnode -o wide`);
  say('Ctrl-C stops everything.');
  await new Promise(() => undefined);
} catch (error) {
  console.error(`demo failed: ${(error as Error).stack ?? String(error)}`);
  await stop(1);
}
