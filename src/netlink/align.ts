/**
 * Netlink alignment, mirroring the macros of linux/netlink.h. Lengths are always computed from
 * these, never typed in, so a message built here has the padding the kernel's parser expects.
 */

/** NLMSG_ALIGNTO and NLA_ALIGNTO: messages and attributes start on 4-byte boundaries. */
export const NETLINK_ALIGNTO = 4;

/** NLMSG_ALIGN(len). */
export function nlmsgAlign(length: number): number {
  return (length + NETLINK_ALIGNTO - 1) & ~(NETLINK_ALIGNTO - 1);
}

/** NLA_ALIGN(len): same rounding as messages, kept apart because the kernel names it apart. */
export function nlaAlign(length: number): number {
  return (length + NETLINK_ALIGNTO - 1) & ~(NETLINK_ALIGNTO - 1);
}

/** NLMSG_HDRLEN: sizeof(struct nlmsghdr) rounded up (16). */
export const NLMSG_HDRLEN = nlmsgAlign(16);

/** NLA_HDRLEN: sizeof(struct nlattr) rounded up (4). */
export const NLA_HDRLEN = nlaAlign(4);
