#include "xfrm_fd.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "netns.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace ipsecop {
namespace {

bool SetIntOption(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0;
}

bool GetIntOption(int fd, int level, int name, int* value) {
  socklen_t len = sizeof(*value);
  return getsockopt(fd, level, name, value, &len) == 0;
}

// The *FORCE variant ignores net.core.{r,w}mem_max but needs CAP_NET_ADMIN; without it we
// still get the plain option, capped by the sysctl, rather than failing the open.
bool SetBufferSize(int fd, int forceName, int plainName, int bytes) {
  if (SetIntOption(fd, SOL_SOCKET, forceName, bytes)) return true;
  if (errno != EPERM) return false;
  return SetIntOption(fd, SOL_SOCKET, plainName, bytes);
}

bool Configure(int fd, const XfrmSocketConfig& config, OpenedXfrmSocket* out, SysError* err) {
  if (config.receiveBufferBytes > 0 &&
      !SetBufferSize(fd, SO_RCVBUFFORCE, SO_RCVBUF, config.receiveBufferBytes)) {
    *err = SysError::Of(errno, "setsockopt", "setting the receive buffer (SO_RCVBUFFORCE/SO_RCVBUF) to " +
                                                 std::to_string(config.receiveBufferBytes) + " bytes");
    return false;
  }
  if (config.sendBufferBytes > 0 &&
      !SetBufferSize(fd, SO_SNDBUFFORCE, SO_SNDBUF, config.sendBufferBytes)) {
    *err = SysError::Of(errno, "setsockopt", "setting the send buffer (SO_SNDBUFFORCE/SO_SNDBUF) to " +
                                                 std::to_string(config.sendBufferBytes) + " bytes");
    return false;
  }
  if (config.extendedAck && !SetIntOption(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1)) {
    *err = SysError::Of(errno, "setsockopt", "enabling NETLINK_EXT_ACK (kernel 4.12 or later)");
    return false;
  }
  if (config.capAck && !SetIntOption(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1)) {
    *err = SysError::Of(errno, "setsockopt", "enabling NETLINK_CAP_ACK (kernel 4.3 or later)");
    return false;
  }

  sockaddr_nl local;
  std::memset(&local, 0, sizeof(local));
  local.nl_family = AF_NETLINK;
  local.nl_pid = 0;  // the kernel picks a free port id
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    *err = SysError::Of(errno, "bind", "binding the NETLINK_XFRM socket");
    return false;
  }
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    *err = SysError::Of(errno, "getsockname", "reading the port id the kernel assigned");
    return false;
  }
  out->portId = local.nl_pid;

  for (uint32_t group : config.groups) {
    if (!SetIntOption(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, static_cast<int>(group))) {
      // EPERM: joining XFRM groups needs CAP_NET_ADMIN; EINVAL: no such group.
      *err = SysError::Of(errno, "setsockopt",
                          "joining XFRM multicast group " + std::to_string(group) +
                              " (NETLINK_ADD_MEMBERSHIP)");
      return false;
    }
  }

  if (!GetIntOption(fd, SOL_SOCKET, SO_RCVBUF, &out->receiveBufferBytes) ||
      !GetIntOption(fd, SOL_SOCKET, SO_SNDBUF, &out->sendBufferBytes)) {
    *err = SysError::Of(errno, "getsockopt", "reading the effective socket buffer sizes");
    return false;
  }
  return true;
}

}  // namespace

bool OpenXfrmSocket(const XfrmSocketConfig& config, OpenedXfrmSocket* out, SysError* err) {
  const int fd = CreateXfrmSocketIn(config.netnsPath, err);
  if (fd < 0) return false;
  if (!Configure(fd, config, out, err)) {
    close(fd);
    return false;
  }
  out->fd = fd;
  return true;
}

}  // namespace ipsecop
