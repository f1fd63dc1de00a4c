// Leader election (src/kube/leader-election.ts) on a real coordination.k8s.io/v1 Lease: two
// electors, only one leads; a clean stop hands over; a leader cut off from the apiserver steps
// down by its renew deadline and the other takes over once the lease has expired.
import { randomBytes } from 'node:crypto';
import { CoordinationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { injectedApiServer, injectedKubeConfig } from '../infra/controlplane/inject.js';
import { LeaderElector, kubeLeaseStore, type ElectionEnd } from '../../src/kube/leader-election.js';
import { TcpProxy } from './kube-tcp-proxy.js';
import { ensure, eventually, kubeConfigVia } from './kube-support.js';

const ns = `kube-election-${randomBytes(3).toString('hex')}`;
let admin: KubeConfig;
const stops: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  admin = injectedKubeConfig();
  await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
});

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

afterAll(async () => {
  await admin.makeApiClient(CoreV1Api).deleteNamespace({ name: ns });
});

interface Candidate {
  elector: LeaderElector;
  stop: AbortController;
  log: string[];
  run: Promise<ElectionEnd>;
  leaderSignal?: AbortSignal;
}

// Short but valid timings: lease 3 s > renew deadline 2 s > 1.2 * retry 0.5 s.
const timings = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 };

function candidate(identity: string, lease: string, kc: KubeConfig = admin): Candidate {
  const log: string[] = [];
  const stop = new AbortController();
  const entry: Partial<Candidate> = { stop, log };
  const elector = new LeaderElector({
    store: kubeLeaseStore(kc, ns, lease),
    identity,
    ...timings,
    onStartedLeading: (signal) => {
      entry.leaderSignal = signal;
      log.push('started');
    },
    onStoppedLeading: () => log.push('stopped'),
  });
  const run = elector.run(stop.signal);
  const result = Object.assign(entry, { elector, run }) as Candidate;
  stops.push(async () => {
    stop.abort();
    await run;
  });
  return result;
}

async function holder(lease: string): Promise<string | undefined> {
  const read = await admin.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: lease, namespace: ns });
  return read.spec?.holderIdentity;
}

describe('LeaderElector on a real Lease', () => {
  it('elects exactly one of two candidates, and hands over when the leader stops cleanly', async () => {
    const a = candidate('replica-a', 'handover');
    const b = candidate('replica-b', 'handover');
    await eventually('a leader', () => ensure(a.elector.isLeader() || b.elector.isLeader(), 'nobody leads'));
    const [leader, standby] = a.elector.isLeader() ? [a, b] : [b, a];
    // Several renew periods later, still exactly one leader, and the Lease names it.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(leader.elector.isLeader()).toBe(true);
    expect(standby.elector.isLeader()).toBe(false);
    expect(await holder('handover')).toBe(leader.elector.identity);
    expect(standby.elector.currentLeader()).toBe(leader.elector.identity);

    leader.stop.abort();
    expect(await leader.run).toBe('stopped');
    expect(leader.log).toEqual(['started', 'stopped']);
    expect(leader.leaderSignal?.aborted).toBe(true);
    // Released on the clean stop (empty holder, or already the standby): not left to expire.
    expect(await holder('handover')).not.toBe(leader.elector.identity);
    await eventually('standby takes over', () => ensure(standby.elector.isLeader(), 'standby not leading'));
    expect(await holder('handover')).toBe(standby.elector.identity);
    const lease = await admin.makeApiClient(CoordinationV1Api).readNamespacedLease({ name: 'handover', namespace: ns });
    expect(lease.spec?.leaseTransitions).toBe(1);
    expect(lease.spec?.leaseDurationSeconds).toBe(3);
  });

  it('a leader cut off from the apiserver steps down by its renew deadline; the other takes over after expiry', async () => {
    const proxy = await TcpProxy.start(Number(new URL(injectedApiServer()).port));
    stops.push(() => proxy.close());
    const a = candidate('isolated', 'partition', kubeConfigVia(admin, proxy.url));
    await eventually('a leads', () => ensure(a.elector.isLeader(), 'a not leading'));
    const b = candidate('healthy', 'partition');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(b.elector.isLeader()).toBe(false);

    proxy.refuse();
    expect(await a.run).toBe('lost');
    expect(a.leaderSignal?.aborted).toBe(true);
    expect(a.log).toEqual(['started', 'stopped']);
    await eventually('b takes over', () => ensure(b.elector.isLeader(), 'b not leading'));
    expect(await holder('partition')).toBe('healthy');
  });
});
