/**
 * Linux errno numbers and names, both ways.
 *
 * The kernel reports failures as errno values: negated in NLMSG_ERROR, positive from system
 * calls. Code elsewhere compares names (`code === 'ESRCH'`) or numbers (`Errno.ESRCH`); this
 * table is the one place that knows which is which. The numbers are the Linux asm-generic ones
 * (x86-64, arm64); test/unit/errno.test.ts checks them against the running platform.
 */

/** Name → [number, the glibc strerror text]. Only errnos the XFRM/netlink paths can produce. */
const TABLE = {
  EPERM: [1, 'Operation not permitted'],
  ENOENT: [2, 'No such file or directory'],
  ESRCH: [3, 'No such process'],
  EINTR: [4, 'Interrupted system call'],
  EIO: [5, 'Input/output error'],
  ENXIO: [6, 'No such device or address'],
  E2BIG: [7, 'Argument list too long'],
  EBADF: [9, 'Bad file descriptor'],
  EAGAIN: [11, 'Resource temporarily unavailable'],
  ENOMEM: [12, 'Cannot allocate memory'],
  EACCES: [13, 'Permission denied'],
  EFAULT: [14, 'Bad address'],
  EBUSY: [16, 'Device or resource busy'],
  EEXIST: [17, 'File exists'],
  ENODEV: [19, 'No such device'],
  ENOTDIR: [20, 'Not a directory'],
  EINVAL: [22, 'Invalid argument'],
  ENFILE: [23, 'Too many open files in system'],
  EMFILE: [24, 'Too many open files'],
  ENOSPC: [28, 'No space left on device'],
  ERANGE: [34, 'Numerical result out of range'],
  ENOSYS: [38, 'Function not implemented'],
  ENODATA: [61, 'No data available'],
  EPROTO: [71, 'Protocol error'],
  EMSGSIZE: [90, 'Message too long'],
  EPROTOTYPE: [91, 'Protocol wrong type for socket'],
  ENOPROTOOPT: [92, 'Protocol not available'],
  EPROTONOSUPPORT: [93, 'Protocol not supported'],
  EOPNOTSUPP: [95, 'Operation not supported'],
  EAFNOSUPPORT: [97, 'Address family not supported by protocol'],
  EADDRINUSE: [98, 'Address already in use'],
  EADDRNOTAVAIL: [99, 'Cannot assign requested address'],
  ENETDOWN: [100, 'Network is down'],
  ENETUNREACH: [101, 'Network is unreachable'],
  ENOBUFS: [105, 'No buffer space available'],
  ETIMEDOUT: [110, 'Connection timed out'],
  ECONNREFUSED: [111, 'Connection refused'],
  EALREADY: [114, 'Operation already in progress'],
  EINPROGRESS: [115, 'Operation now in progress'],
  ECANCELED: [125, 'Operation canceled'],
  // Kernel-internal (include/linux/errno.h), never meant for user space, yet some offload and
  // driver paths leak it through netlink. Not in libc, hence not in os.constants.errno.
  ENOTSUPP: [524, 'Operation is not supported (kernel-internal ENOTSUPP)'],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrnoName = keyof typeof TABLE;

/** Name → number, e.g. `Errno.ENOENT === 2`. */
export const Errno: { readonly [N in ErrnoName]: (typeof TABLE)[N][0] } = Object.freeze(
  Object.fromEntries(Object.entries(TABLE).map(([name, [num]]) => [name, num])),
) as { readonly [N in ErrnoName]: (typeof TABLE)[N][0] };

const NAME_BY_NUMBER: ReadonlyMap<number, ErrnoName> = new Map(
  (Object.entries(TABLE) as [ErrnoName, readonly [number, string]][]).map(([name, [num]]) => [num, name]),
);

/** Accepts the kernel's negated form too (NLMSG_ERROR carries -errno). */
function magnitude(errno: number): number {
  return Math.abs(errno);
}

/** The name of an errno (`2` or `-2` → `'ENOENT'`), or undefined when this table lacks it. */
export function errnoName(errno: number): ErrnoName | undefined {
  return NAME_BY_NUMBER.get(magnitude(errno));
}

/**
 * A string code for any errno, for an error's `code` field: the name when known, otherwise
 * `ERRNO_<n>` so that an unexpected value is still visible and greppable.
 */
export function errnoCode(errno: number): string {
  return errnoName(errno) ?? `ERRNO_${magnitude(errno)}`;
}

/** The number for a name (`'ESRCH'` → 3). */
export function errnoNumber(name: ErrnoName): number {
  return TABLE[name][0];
}

/** Human text for an errno, like strerror(3): `'No such process'`. */
export function errnoDescription(errno: number): string {
  const name = errnoName(errno);
  return name === undefined ? `Unknown error ${magnitude(errno)}` : TABLE[name][1];
}

/** For error messages: `describeErrno(-105)` → `'ENOBUFS (No buffer space available)'`. */
export function describeErrno(errno: number): string {
  return `${errnoCode(errno)} (${errnoDescription(errno)})`;
}
