import { constants } from 'node:os';

import { describe, expect, it } from 'vitest';

import { describeErrno, Errno, errnoCode, errnoDescription, errnoName, errnoNumber, type ErrnoName } from '../../src/netlink/errno.js';

// Kernel-internal codes that libc (and so Node) does not know.
const KERNEL_INTERNAL: readonly ErrnoName[] = ['ENOTSUPP'];

describe('errno table', () => {
  it('agrees with the platform errno numbers Node was built with', () => {
    const platform = constants.errno as Record<string, number>;
    for (const [name, num] of Object.entries(Errno) as [ErrnoName, number][]) {
      if (KERNEL_INTERNAL.includes(name)) continue;
      expect({ name, num: platform[name] }).toEqual({ name, num });
    }
  });

  it('covers the errnos the XFRM layers compare against', () => {
    for (const name of ['ENOENT', 'ESRCH', 'EEXIST', 'ENOBUFS', 'EINVAL', 'EPERM', 'EAFNOSUPPORT', 'EPROTONOSUPPORT', 'ENOSYS', 'EOPNOTSUPP', 'EBUSY', 'ENOMEM', 'E2BIG'] as const) {
      expect(errnoName(errnoNumber(name))).toBe(name);
    }
  });

  it('maps numbers to names in both signs, since NLMSG_ERROR carries -errno', () => {
    expect(errnoName(3)).toBe('ESRCH');
    expect(errnoName(-3)).toBe('ESRCH');
    expect(errnoName(-105)).toBe('ENOBUFS');
    // 95 is both ENOTSUP and EOPNOTSUPP in libc; the kernel's name is EOPNOTSUPP.
    expect(errnoName(95)).toBe('EOPNOTSUPP');
  });

  it('gives unknown numbers a visible code instead of undefined', () => {
    expect(errnoName(4095)).toBeUndefined();
    expect(errnoCode(-4095)).toBe('ERRNO_4095');
    expect(errnoDescription(4095)).toBe('Unknown error 4095');
  });

  it('describes errnos for messages', () => {
    expect(describeErrno(-17)).toBe('EEXIST (File exists)');
    expect(errnoDescription(Errno.ESRCH)).toBe('No such process');
  });
});
