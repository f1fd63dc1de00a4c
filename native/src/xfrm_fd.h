// Opening and configuring the NETLINK_XFRM socket descriptor: plain system calls, no JavaScript.
#ifndef IPSECOP_XFRM_FD_H
#define IPSECOP_XFRM_FD_H

#include <cstdint>
#include <string>
#include <vector>

#include "sys_error.h"

namespace ipsecop {

struct XfrmSocketConfig {
  std::string netnsPath;           // empty: the calling thread's namespace
  std::vector<uint32_t> groups;    // XFRMNLGRP_* to join
  int receiveBufferBytes = 0;      // 0: leave the kernel default
  int sendBufferBytes = 0;         // 0: leave the kernel default
  bool extendedAck = true;         // NETLINK_EXT_ACK
  bool capAck = true;              // NETLINK_CAP_ACK
};

struct OpenedXfrmSocket {
  int fd = -1;
  uint32_t portId = 0;             // nl_pid the kernel assigned at bind
  int receiveBufferBytes = 0;      // effective SO_RCVBUF as the kernel reports it
  int sendBufferBytes = 0;         // effective SO_SNDBUF as the kernel reports it
};

// Creates, configures and binds the socket. On failure nothing is left open and `*err` says
// which step failed.
bool OpenXfrmSocket(const XfrmSocketConfig& config, OpenedXfrmSocket* out, SysError* err);

}  // namespace ipsecop

#endif
