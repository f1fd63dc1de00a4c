#include "netns.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ipsecop {
namespace {

// The calling thread's own namespace. thread-self, not self: setns moves one thread only, and
// the thread we must return to is this one.
constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";

// Closes a descriptor when the scope ends, whichever way it ends.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// While alive after Enter() succeeded, the calling thread is in the target namespace. The
// destructor returns it home, so no early return can leave the thread behind.
class NetnsVisit {
 public:
  explicit NetnsVisit(int homeFd) : homeFd_(homeFd) {}
  ~NetnsVisit() {
    if (entered_) ReturnHomeOrAbort();
  }
  NetnsVisit(const NetnsVisit&) = delete;
  NetnsVisit& operator=(const NetnsVisit&) = delete;

  bool Enter(int targetFd) {
    if (setns(targetFd, CLONE_NEWNET) != 0) return false;
    entered_ = true;
    return true;
  }

 private:
  void ReturnHomeOrAbort() {
    if (setns(homeFd_, CLONE_NEWNET) == 0) {
      entered_ = false;
      return;
    }
    const int e = errno;
    std::fprintf(stderr,
                 "ipsec-operator: FATAL: could not return the thread to its own network namespace "
                 "after creating a socket in another one (setns: %s). Aborting: "
                 "continuing would run the program in the wrong network namespace.\n",
                 std::strerror(e));
    std::abort();
  }

  int homeFd_;
  bool entered_ = false;
};

}  // namespace

int CreateXfrmSocketIn(const std::string& netnsPath, SysError* err) {
  return CreateSocketIn(netnsPath, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_XFRM,
                        "a NETLINK_XFRM socket", err);
}

int CreateSocketIn(const std::string& netnsPath, int domain, int type, int protocol, const std::string& what,
                   SysError* err) {
  if (netnsPath.empty()) {
    const int fd = socket(domain, type, protocol);
    if (fd < 0) *err = SysError::Of(errno, "socket", "creating " + what);
    return fd;
  }

  ScopedFd home(open(kThreadNetns, O_RDONLY | O_CLOEXEC));
  if (home.get() < 0) {
    *err = SysError::Of(errno, "open",
                        std::string("opening the calling thread's network namespace ") + kThreadNetns);
    return -1;
  }
  ScopedFd target(open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) {
    *err = SysError::Of(errno, "open", "opening network namespace " + netnsPath);
    return -1;
  }

  int fd = -1;
  int socketErrno = 0;
  {
    NetnsVisit visit(home.get());
    if (!visit.Enter(target.get())) {
      // EINVAL here means the file is not a network namespace.
      *err = SysError::Of(errno, "setns", "entering network namespace " + netnsPath);
      return -1;
    }
    fd = socket(domain, type, protocol);
    if (fd < 0) socketErrno = errno;
  }  // back home here (or aborted)

  if (fd < 0) {
    *err = SysError::Of(socketErrno, "socket", "creating " + what + " in network namespace " + netnsPath);
  }
  return fd;
}

}  // namespace ipsecop
