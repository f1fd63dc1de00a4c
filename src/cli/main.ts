/**
 * The `ipsec-operator` command: makes one machine's (or one network namespace's) XFRM state
 * declarative without any cluster. The only place that exits the process: commands return an
 * exit status or throw, and errors map to statuses here.
 *
 *   0  done (diff: nothing would change)
 *   1  diff: something would change; apply: a conflict, a kernel refusal or a mismatch after apply
 *   2  invalid input or usage; nothing was changed
 */
import { parseArgs } from 'node:util';
import { UsageError, InputError } from './errors.js';
// Each command's module is imported when that command runs: the Kubernetes client alone takes
// about a second and 130 MB to load, and only `controller`, `agent` and `mesh` use it;
// `--help` loads nothing.

const USAGE = `Usage: ipsec-operator <command> [options]

Commands:
  apply -f PATH...   Validate manifests, print the plan, apply it, verify the kernel matches.
  diff  -f PATH...   Print the plan only. Exit 0 when nothing would change, 1 when something would.
  import             Print every SA and policy of the namespace as manifests plus a Secret with the keys.
  monitor            Print kernel XFRM events, one line each (like \`ip xfrm monitor\`).
  crds               Print the CustomResourceDefinitions.
  hold-encap -f PATH...  Hold the UDP encapsulation sockets the manifests' ESP-in-UDP SAs receive on, until stopped.
  controller         Run the cluster controller (status, Events, finalizers; leader-elected).
  agent              Run the node agent (reconciles this node's XFRM tables).
  mesh rotate NAME   Rotate the keys of every member of IpsecMesh NAME now (sets its ipsec.xfrm.io/rotate annotation).

Options:
  -f, --filename PATH   Manifest file or directory (repeatable). SecurityAssociation, IpsecPolicy, Secret.
  --netns NAME          Network namespace (as \`ip netns\` names it) instead of the current one.
  --dry-run             (apply) Print the plan, change nothing.
  --prune               (apply, diff) Also delete entries this tool created that the manifests no longer hold.
                        Refused when the input holds no resource (it would delete everything).
  --prune-all           (apply, diff) --prune, also when the input holds no resource.
  --node-labels K=V,... Only resources whose nodeSelector matches these labels.
  --state-dir DIR       Where ownership records live (default /var/lib/ipsec-operator).
  --json                (monitor) One JSON object per line.
  --retry-seconds N     (hold-encap) Try ports held by other processes again this often. Default 10.

Controller, agent and mesh options:
  --kubeconfig PATH        Default: $KUBECONFIG, in-cluster, then ~/.kube/config.
  --namespace NS           The operator's namespace (Secrets, Lease). Default: $POD_NAMESPACE.
  --metrics-address H:P    /healthz, /readyz, /metrics. Default :8080 (controller), :9090 (agent).
  --leader-elect           (controller) Take part in leader election; only the leader works.
  --lease-duration-seconds N  (controller) How long a Lease holds without renewal. Default 15.
  --renew-deadline-seconds N  (controller) The leader gives up if it cannot renew for this long. Default 10.
  --retry-period-seconds N    (controller) How often the leader renews and candidates retry. Default 2.
  --node-name NAME         (agent) This node. Default: $NODE_NAME.
  --state-dir DIR          (agent) Ownership ledger; must survive restarts (a hostPath).
  --netns NAME             (agent) Reconcile this named network namespace instead of the pod's.
  --resync-seconds N       (agent) Full reconcile at least this often. Default 30.
  --per-sa-metrics         (agent) Byte and packet counters per resource.
  --boot-id ID             (agent) The boot id IpsecMesh keys are bound to, instead of the kernel's (tests that simulate a reboot).
  -h, --help            This text.
`;

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  try {
    const { values, positionals } = parseArgs({
      args: [...rest],
      strict: true,
      // Only `mesh` takes operands (`mesh rotate NAME`).
      allowPositionals: command === 'mesh',
      options: {
        filename: { type: 'string', short: 'f', multiple: true },
        netns: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        prune: { type: 'boolean', default: false },
        'prune-all': { type: 'boolean', default: false },
        'node-labels': { type: 'string' },
        'state-dir': { type: 'string', default: '/var/lib/ipsec-operator' },
        json: { type: 'boolean', default: false },
        kubeconfig: { type: 'string' },
        namespace: { type: 'string' },
        'metrics-address': { type: 'string' },
        'leader-elect': { type: 'boolean', default: false },
        'lease-duration-seconds': { type: 'string' },
        'renew-deadline-seconds': { type: 'string' },
        'retry-period-seconds': { type: 'string' },
        'node-name': { type: 'string' },
        'resync-seconds': { type: 'string' },
        'per-sa-metrics': { type: 'boolean', default: false },
        'boot-id': { type: 'string' },
        'retry-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const common = { netns: values.netns, stateDirectory: values['state-dir'] };
    switch (command) {
      case 'apply':
      case 'diff':
        return await (await import('./apply.js')).runApply({
          ...common,
          mode: command === 'diff' ? 'diff' : values['dry-run'] ? 'dry-run' : 'apply',
          files: requireFiles(values.filename),
          prune: values.prune,
          pruneAll: values['prune-all'],
          nodeLabels: parseLabels(values['node-labels']),
        });
      case 'import':
        return await (await import('./import.js')).runImport(common);
      case 'monitor':
        return await (await import('./monitor.js')).runMonitor({ netns: values.netns, json: values.json });
      case 'crds':
        return (await import('./crds.js')).runCrds();
      case 'hold-encap':
        return await (await import('./hold-encap.js')).runHoldEncap({ files: requireFiles(values.filename), netns: values.netns, nodeLabels: parseLabels(values['node-labels']), retrySeconds: values['retry-seconds'] });
      case 'controller':
        return await (await import('./serve.js')).runControllerCommand({
          kubeconfig: values.kubeconfig,
          namespace: values.namespace,
          metricsAddress: values['metrics-address'],
          leaderElect: values['leader-elect'],
          leaseDurationSeconds: values['lease-duration-seconds'],
          renewDeadlineSeconds: values['renew-deadline-seconds'],
          retryPeriodSeconds: values['retry-period-seconds'],
        });
      case 'agent':
        return await (await import('./serve.js')).runAgentCommand({
          kubeconfig: values.kubeconfig,
          namespace: values.namespace,
          metricsAddress: values['metrics-address'],
          nodeName: values['node-name'],
          stateDirectory: values['state-dir'],
          netns: values.netns,
          resyncSeconds: values['resync-seconds'],
          perSaMetrics: values['per-sa-metrics'],
          bootId: values['boot-id'],
        });
      case 'mesh':
        return await (await import('./mesh.js')).runMesh({ args: positionals, kubeconfig: values.kubeconfig });
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`ipsec-operator: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof InputError) {
      process.stderr.write(`ipsec-operator: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`ipsec-operator: ${(error as Error).message}\n`);
    return 1;
  }
}

function requireFiles(files: string[] | undefined): string[] {
  if (!files || files.length === 0) throw new UsageError('-f PATH is required');
  return files;
}

function parseLabels(text: string | undefined): Record<string, string> | undefined {
  if (text === undefined) return undefined;
  const labels: Record<string, string> = {};
  for (const pair of text.split(',').filter(Boolean)) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new UsageError(`--node-labels: "${pair}" is not KEY=VALUE`);
    labels[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return labels;
}
