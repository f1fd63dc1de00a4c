// vitest globalSetup of the 'vm' and 'e2e' projects: builds the image (cached) and boots ONE
// test VM, hands its control endpoint to the test files (see inject.ts), and powers it off at
// teardown, which vitest runs after failed tests too.
//
// When one vitest run includes several projects with this setup (vm and e2e), they share the
// VM: booting costs ~20 s of both cores, and two TCG guests side by side would each be
// slower than one. A process-wide reference count keeps it until the last teardown.
import type { TestProject } from 'vitest/node';
import type { VmEndpoint } from './client.js';
import { bootVm, type Vm } from './vm.js';

declare module 'vitest' {
  interface ProvidedContext {
    /** The booted test VM's control server; use vmFromInject() from test/infra/vm/inject.ts. */
    vmControl: VmEndpoint & { consoleLogPath: string };
  }
}

interface SharedVm {
  vm: Promise<Vm>;
  users: number;
}

const SHARED = Symbol.for('ipsec-operator.test-vm');
const registry = globalThis as typeof globalThis & { [SHARED]?: SharedVm };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const shared = (registry[SHARED] ??= { vm: bootVm(), users: 0 });
  shared.users++;
  let vm: Vm;
  try {
    vm = await shared.vm;
  } catch (err) {
    release();
    throw err;
  }
  project.provide('vmControl', { ...vm.endpoint, consoleLogPath: vm.consoleLogPath });
  return async () => {
    if (release() === 0) await vm.shutdown();
  };
}

function release(): number {
  const shared = registry[SHARED];
  if (!shared) return 0;
  shared.users--;
  if (shared.users === 0) delete registry[SHARED];
  return shared.users;
}
