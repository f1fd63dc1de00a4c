// For test files of the 'vm' and 'e2e' projects: a client of the VM that global-setup.ts booted.
import { inject } from 'vitest';
import { VmClient } from './client.js';

/** The run's test VM. Tests share it: put what they create in namespaces of their own. */
export function vmFromInject(): VmClient {
  const endpoint = inject('vmControl');
  if (!endpoint) {
    throw new Error("no test VM: this file must run in a vitest project whose globalSetup is test/infra/vm/global-setup.ts ('vm' or 'e2e')");
  }
  return new VmClient(endpoint);
}
