// For test files of the 'controlplane' and 'e2e' projects: the control plane that
// global-setup.ts started for this run.
import type { KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { ControlPlaneControl } from './control-server.js';
import { loadKubeConfig } from './kubeconfig.js';

function provided<K extends 'kubeconfig' | 'apiServer' | 'etcdUrl' | 'controlPlaneLog' | 'controlPlaneControl'>(key: K): string {
  const value = inject(key);
  if (!value) {
    throw new Error(
      `no control plane (${key} not provided): this file must run in a vitest project whose globalSetup is ` +
        `test/infra/controlplane/global-setup.ts ('controlplane' or 'e2e')`,
    );
  }
  return value;
}

/** Path of the run's admin kubeconfig. */
export const injectedKubeconfigPath = (): string => provided('kubeconfig');
/** https://127.0.0.1:<port> of the run's apiserver. */
export const injectedApiServer = (): string => provided('apiServer');
/** The run's etcd client URL (for compactEtcd). */
export const injectedEtcdUrl = (): string => provided('etcdUrl');
/** The run's control plane log. */
export const injectedControlPlaneLog = (): string => provided('controlPlaneLog');

/** An admin KubeConfig for the run's control plane. */
export function injectedKubeConfig(): KubeConfig {
  return loadKubeConfig(injectedKubeconfigPath());
}

/**
 * Halt/resume of the run's shared control plane (same port, data dir and credentials after
 * resume). Only for tests that run alone: every other test file sees the outage too.
 */
export function injectedControlPlane(): ControlPlaneControl {
  return new ControlPlaneControl(provided('controlPlaneControl'));
}
