// vitest globalSetup of the 'controlplane' and 'e2e' projects: starts ONE real control plane
// (kube-apiserver over an embedded etcd) for the run, hands its kubeconfig and URL to the test
// files (see inject.ts), and stops it at teardown, which vitest runs after failed tests too.
//
// When one vitest run includes both projects, they share it: a process-wide reference count
// keeps it until the last teardown. Tests share the cluster, so each puts what it creates in
// namespaces (and cluster-scoped names) of its own. A test that must disrupt the apiserver
// either starts a control plane of its own with startControlPlane(), or, if it runs alone
// (e2e runs its files one at a time), halts and resumes this one through
// injectedControlPlane() (see control-server.ts).
import type { TestProject } from 'vitest/node';
import { serveControl, type ControlServer } from './control-server.js';
import { startControlPlane, type ControlPlane } from './controlplane.js';

declare module 'vitest' {
  interface ProvidedContext {
    /** Path of the admin kubeconfig (system:masters client certificate). */
    kubeconfig: string;
    /** https://127.0.0.1:<port> */
    apiServer: string;
    /** etcd client URL, for compactEtcd() in etcd.ts. */
    etcdUrl: string;
    /** The control plane's log (apiserver and etcd), to point at when a test fails. */
    controlPlaneLog: string;
    /** URL of the halt/resume endpoint (control-server.ts); use injectedControlPlane(). */
    controlPlaneControl: string;
  }
}

interface Shared {
  controlPlane: Promise<ControlPlane>;
  users: number;
}

const SHARED = Symbol.for('ipsec-operator.test-controlplane');
const registry = globalThis as typeof globalThis & { [SHARED]?: Shared };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const shared = (registry[SHARED] ??= { controlPlane: startControlPlane(), users: 0 });
  shared.users++;
  let cp: ControlPlane;
  try {
    cp = await shared.controlPlane;
  } catch (err) {
    release();
    throw err;
  }
  if (shared.users === 1) {
    console.log(`[controlplane] ${cp.server} ready in ${(cp.startupMs / 1000).toFixed(1)} s; log ${cp.logPath}`);
  }
  project.provide('kubeconfig', cp.kubeconfigPath);
  project.provide('apiServer', cp.server);
  project.provide('etcdUrl', cp.etcdUrl);
  project.provide('controlPlaneLog', cp.logPath);
  let control: ControlServer;
  try {
    control = await serveControl(cp);
  } catch (err) {
    if (release() === 0) await cp.stop();
    throw err;
  }
  project.provide('controlPlaneControl', control.url);
  return async () => {
    await control.close();
    if (release() === 0) await cp.stop();
  };
}

function release(): number {
  const shared = registry[SHARED];
  if (!shared) return 0;
  shared.users--;
  if (shared.users === 0) delete registry[SHARED];
  return shared.users;
}
