// The controller's Lease timing flags: what the chart passes (controller.leaderElection) reaches
// the elector in milliseconds, and a combination the elector would refuse is a usage error
// before anything starts.
import { describe, expect, it } from 'vitest';
import { leaseTiming } from '../../src/cli/serve.js';
import { UsageError } from '../../src/cli/errors.js';
import { LeaderElector } from '../../src/kube/leader-election.js';

const none = { leaseDurationSeconds: undefined, renewDeadlineSeconds: undefined, retryPeriodSeconds: undefined };

describe('leaseTiming', () => {
  it("defaults to Kubernetes' 15/10/2 s", () => {
    expect(leaseTiming(none)).toEqual({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });
  });

  it('takes whole seconds from the flags', () => {
    expect(leaseTiming({ leaseDurationSeconds: '60', renewDeadlineSeconds: '40', retryPeriodSeconds: '5' })).toEqual({
      leaseDurationMs: 60_000,
      renewDeadlineMs: 40_000,
      retryPeriodMs: 5_000,
    });
  });

  it.each([
    [{ ...none, leaseDurationSeconds: '0' }, /--lease-duration-seconds must be a positive whole number/],
    [{ ...none, renewDeadlineSeconds: '1.5' }, /--renew-deadline-seconds must be a positive whole number/],
    [{ ...none, retryPeriodSeconds: 'soon' }, /--retry-period-seconds must be a positive whole number/],
    [{ ...none, leaseDurationSeconds: '10' }, /greater than --renew-deadline-seconds/],
    [{ ...none, retryPeriodSeconds: '9' }, /greater than 1.2 x --retry-period-seconds/],
  ])('refuses %j', (flags, message) => {
    expect(() => leaseTiming(flags)).toThrow(UsageError);
    expect(() => leaseTiming(flags)).toThrow(message);
  });

  it('accepts only what the elector accepts (on the boundary too)', () => {
    const store = { get: async () => undefined, create: async () => undefined, update: async () => undefined } as never;
    for (const [lease, renew, retry] of [[15, 10, 2], [11, 10, 8], [60, 40, 5], [10, 10, 2], [15, 12, 10], [15, 6, 5]] as const) {
      const flags = { leaseDurationSeconds: String(lease), renewDeadlineSeconds: String(renew), retryPeriodSeconds: String(retry) };
      let ours: unknown;
      let elector: unknown;
      try {
        leaseTiming(flags);
      } catch (error) {
        ours = error;
      }
      try {
        new LeaderElector({ store, identity: 'x', onStartedLeading: async () => undefined, leaseDurationMs: lease * 1000, renewDeadlineMs: renew * 1000, retryPeriodMs: retry * 1000 });
      } catch (error) {
        elector = error;
      }
      expect(ours === undefined, `${lease}/${renew}/${retry}`).toBe(elector === undefined);
    }
  });
});
