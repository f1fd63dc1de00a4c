// A failed system call, described well enough for the JavaScript side to build an error that
// says what failed (syscall + errno) and on what (context, e.g. the namespace path).
#ifndef IPSECOP_SYS_ERROR_H
#define IPSECOP_SYS_ERROR_H

#include <string>

namespace ipsecop {

struct SysError {
  int errnum = 0;           // positive errno value
  std::string syscall;      // e.g. "setns", "bind"
  std::string context;      // human words: what we were doing when it failed

  static SysError Of(int errnum, const char* syscall, std::string context) {
    SysError e;
    e.errnum = errnum;
    e.syscall = syscall;
    e.context = std::move(context);
    return e;
  }
};

}  // namespace ipsecop

#endif
