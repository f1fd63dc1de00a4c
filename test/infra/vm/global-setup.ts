// vitest globalSetup of the 'vm' and 'e2e' projects: builds the image (cached) and boots ONE
// test VM, hands its control endpoint to the test files (see inject.ts), and powers it off at
// teardown, which vitest runs after failed tests too.
//
// The kernel comes from the project's env IPSEC_OPERATOR_VM_KERNEL (vitest.config.ts: `vm`
// boots the default 6.1, `vm-6.12` sets 6.12), else the process environment, else 6.1.
//
// When one vitest run includes several projects with this setup and the same kernel (vm and
// e2e), they share the VM: booting costs ~20 s of both cores, and two TCG guests side by side
// would each be slower than one. A process-wide reference count per kernel keeps it until the
// last teardown.
import type { TestProject } from 'vitest/node';
import type { VmEndpoint } from './client.js';
import { buildVmImage } from './image.js';
import { bootVm, type Vm } from './vm.js';

declare module 'vitest' {
  interface ProvidedContext {
    /** The booted test VM's control server; use vmFromInject() from test/infra/vm/inject.ts. */
    vmControl: VmEndpoint & { consoleLogPath: string; kernelVersion: string };
  }
}

interface SharedVm {
  vm: Promise<Vm>;
  users: number;
}

const SHARED = Symbol.for('ipsec-operator.test-vms');
const registry = globalThis as typeof globalThis & { [SHARED]?: Map<string, SharedVm> };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const kernel = project.config.env?.['IPSEC_OPERATOR_VM_KERNEL'] ?? process.env['IPSEC_OPERATOR_VM_KERNEL'] ?? '6.1';
  const vms = (registry[SHARED] ??= new Map());
  let shared = vms.get(kernel);
  if (!shared) {
    shared = { vm: buildVmImage(kernel).then((image) => bootVm({ image })), users: 0 };
    vms.set(kernel, shared);
  }
  shared.users++;
  let vm: Vm;
  try {
    vm = await shared.vm;
  } catch (err) {
    release(kernel);
    throw err;
  }
  project.provide('vmControl', { ...vm.endpoint, consoleLogPath: vm.consoleLogPath, kernelVersion: vm.image.kernelVersion });
  return async () => {
    if (release(kernel) === 0) await vm.shutdown();
  };
}

function release(kernel: string): number {
  const shared = registry[SHARED]?.get(kernel);
  if (!shared) return 0;
  shared.users--;
  if (shared.users === 0) registry[SHARED]!.delete(kernel);
  return shared.users;
}
