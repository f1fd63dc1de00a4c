// Creating a socket inside another network namespace.
//
// A socket belongs to the namespace its creating thread was in when socket(2) ran, for its
// whole life. So we switch only the calling thread (setns), create the socket, and switch back.
#ifndef IPSECOP_NETNS_H
#define IPSECOP_NETNS_H

#include <string>

#include "sys_error.h"

namespace ipsecop {

// Creates a NETLINK_XFRM socket (SOCK_CLOEXEC | SOCK_NONBLOCK) in the network namespace named by
// `netnsPath` (a bind-mounted namespace file such as /run/netns/NAME), or in the calling thread's
// namespace when `netnsPath` is empty. Returns the fd, or -1 with `*err` filled in.
//
// Guarantee: when this returns (success or failure) the calling thread is back in the namespace
// it started in. If the kernel refuses to switch back, the process aborts with a message on
// stderr: carrying on would run the rest of the program in the wrong network namespace.
int CreateXfrmSocketIn(const std::string& netnsPath, SysError* err);

// The same for any socket(2) call: `what` names it in errors (e.g. "a UDP socket"). `type`
// should carry SOCK_CLOEXEC.
int CreateSocketIn(const std::string& netnsPath, int domain, int type, int protocol, const std::string& what,
                   SysError* err);

}  // namespace ipsecop

#endif
