/**
 * The SA-direction probe against the host kernel (6.18 on these machines, which knows
 * XFRMA_SA_DIR): it answers "kept", agrees with the release table, and changes nothing. The
 * older answer (6.1: "no such SA", the attribute skipped) is checked in the VM on both kernels of
 * the matrix (test/kernel/vm/kernel-features.test.ts).
 */
import { release } from 'node:os';
import { describe, expect, it } from 'vitest';
import { openKernelTables } from '../../../src/engine/kernel.js';
import { kernelFeatures, parseKernelRelease } from '../../../src/xfrm/kernel-features.js';
import { useNetnsWithClient } from './netns.js';

const setup = useNetnsWithClient();

describe('kernel features of the host kernel', () => {
  it('runs a kernel new enough to answer the probe with "kept"', () => {
    const version = parseKernelRelease(release());
    expect(version, release()).toBeDefined();
    expect(version![0] > 6 || (version![0] === 6 && version![1] >= 10), `host kernel ${release()}`).toBe(true);
  });

  it('asks the kernel, which keeps SA direction, and the release table agrees', async () => {
    expect(await setup.client.keepsStateDirection()).toBe(true);
    expect(kernelFeatures(release()).supported.has('sa-direction')).toBe(true);
  });

  it('changes nothing: no SA, no policy, whatever the answer', async () => {
    for (let i = 0; i < 3; i++) await setup.client.keepsStateDirection();
    expect(await setup.client.listStates()).toEqual([]);
    expect(await setup.client.listPolicies()).toEqual([]);
    expect(setup.netns.ip('xfrm', 'state', 'count').trim()).toBe('SAD count 0');
  });

  it('opens the kernel tables with the features learned', async () => {
    const tables = await openKernelTables(setup.netns.name);
    try {
      expect(tables.features).toMatchObject({ release: release(), learnedBy: { 'sa-direction': 'probe', 'nat-keepalive': 'release' } });
      expect(tables.features.supported.has('sa-direction')).toBe(true);
    } finally {
      tables.close();
    }
  });
});
