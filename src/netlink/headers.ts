/**
 * Layout tables of the netlink framing structs (linux/netlink.h). Checked against the C header
 * by the layout test like every other table.
 */
import { at, s32, struct, u16, u32 } from './layout.js';

/**
 * struct nlmsghdr {
 *   __u32 nlmsg_len;    // length of the message including this header
 *   __u16 nlmsg_type;
 *   __u16 nlmsg_flags;
 *   __u32 nlmsg_seq;
 *   __u32 nlmsg_pid;    // sender port id (0 = kernel)
 * };
 */
export const nlmsghdr = struct('nlmsghdr', 16, {
  nlmsg_len: at(0, u32),
  nlmsg_type: at(4, u16),
  nlmsg_flags: at(6, u16),
  nlmsg_seq: at(8, u32),
  nlmsg_pid: at(12, u32),
});

/**
 * struct nlmsgerr {
 *   int error;              // negative errno, or 0 for an acknowledgement
 *   struct nlmsghdr msg;    // the request's header (followed by its payload unless capped)
 * };
 */
export const nlmsgerr = struct('nlmsgerr', 20, {
  error: at(0, s32),
  msg: at(4, nlmsghdr),
});

/**
 * struct nlattr {
 *   __u16 nla_len;    // header + payload, without trailing padding
 *   __u16 nla_type;   // with NLA_F_NESTED / NLA_F_NET_BYTEORDER in the top bits
 * };
 */
export const nlattr = struct('nlattr', 4, {
  nla_len: at(0, u16),
  nla_type: at(2, u16),
});
