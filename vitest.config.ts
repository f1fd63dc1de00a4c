import { defineConfig } from 'vitest/config';

// One project per test layer. `npm test` runs them all; `npm run test:<layer>` runs one.
// Layers that need real infrastructure (root + network namespaces, the test VM, the
// Go-built control plane) start it in their globalSetup and fail loudly when it is missing:
// nothing is skipped.
export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/host/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'vm',
          include: ['test/kernel/vm/**/*.test.ts'],
          globalSetup: ['test/infra/build-dist.ts', 'test/infra/vm/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000, // a bound for TCG on a loaded 2-core machine, not a measure
          hookTimeout: 300_000,
        },
      },
      {
        // The same VM suites on Debian 12's linux-image-6.12-amd64 (SA direction and other
        // attributes 6.1 drops); `vm` above boots the default 6.1.
        test: {
          name: 'vm-6.12',
          include: ['test/kernel/vm/**/*.test.ts'],
          env: { IPSEC_OPERATOR_VM_KERNEL: '6.12' },
          globalSetup: ['test/infra/build-dist.ts', 'test/infra/vm/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000, // a bound for TCG on a loaded 2-core machine, not a measure
          hookTimeout: 300_000,
        },
      },
      {
        test: {
          name: 'controlplane',
          include: ['test/controlplane/**/*.test.ts'],
          globalSetup: ['test/infra/controlplane/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          // The chart's pods on a real kubelet + containerd in the test VM (test/infra/node).
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          globalSetup: ['test/infra/build-dist.ts'],
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 1_800_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/infra/build-dist.ts', 'test/infra/controlplane/global-setup.ts', 'test/infra/vm/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 600_000,
        },
      },
      {
        // IpsecMesh on real kernels with traffic (issue 12): four nodes through rotation rounds, a
        // join, a SIGKILLed agent, a boot id change and a leave, 0 lost, the key scan and the
        // agents' mesh metrics; a dual-stack transport mesh and a tunnel mesh for pod CIDRs, each
        // through a rotation round with 0 lost (in `npm test`).
        test: {
          name: 'e2e-mesh',
          include: ['test/e2e-mesh/mesh-churn.test.ts', 'test/e2e-mesh/mesh-modes.test.ts', 'test/e2e-mesh/mesh-natt.test.ts'],
          globalSetup: ['test/infra/build-dist.ts', 'test/infra/controlplane/global-setup.ts', 'test/infra/vm/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 900_000,
          hookTimeout: 600_000,
        },
      },
      {
        // The same on the second kernel of the matrix (npm run test:e2e-mesh runs both).
        test: {
          name: 'e2e-mesh-6.12',
          include: ['test/e2e-mesh/mesh-churn.test.ts', 'test/e2e-mesh/mesh-modes.test.ts', 'test/e2e-mesh/mesh-natt.test.ts'],
          env: { IPSEC_OPERATOR_VM_KERNEL: '6.12' },
          globalSetup: ['test/infra/build-dist.ts', 'test/infra/controlplane/global-setup.ts', 'test/infra/vm/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 900_000,
          hookTimeout: 600_000,
        },
      },
      {
        // The agent as PID 1 on the second kernel of the matrix: the kill loop and SIGTERM on
        // 6.12 too. Only that file: the rest of e2e is about the operator, not the kernel, and
        // CI's time bound has no room for a second full e2e run under TCG.
        test: {
          name: 'e2e-6.12',
          include: ['test/e2e/agent-pid1.test.ts'],
          env: { IPSEC_OPERATOR_VM_KERNEL: '6.12' },
          globalSetup: ['test/infra/build-dist.ts', 'test/infra/controlplane/global-setup.ts', 'test/infra/vm/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
