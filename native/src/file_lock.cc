// flock(2) on a descriptor that JavaScript opened (FileHandle.fd).
//
// Why flock(LOCK_EX | LOCK_NB) and not a PID file or a POSIX record lock:
// - The lock belongs to the open file description. The kernel releases it when the last
//   descriptor of that description is closed, which includes the holder being killed, OOM-killed
//   or exiting: nothing to clean up, nothing to judge "stale". A PID cannot tell a dead holder
//   from a live one across PID namespaces, nor from ourselves when we are PID 1 again.
// - It is keyed on the inode, so processes in different PID (or mount) namespaces that see the
//   same file contend for the same lock.
// - Unlike classic fcntl(F_SETLK) locks it is not dropped when *any* descriptor of the file is
//   closed by the same process, and it is not per-process: a second open() in the same process
//   conflicts, as a second engine in one process should.
// - Descriptors opened by Node carry O_CLOEXEC, so child processes (ip, iptables) never inherit
//   and prolong the lock; a fork()ed child without exec would share it, which Node never does.
// - util-linux flock(1) takes the same lock, so an operator can hold or inspect it by hand.
// OFD locks (F_OFD_SETLK) have the same lifetime and would work as well; flock is the simpler
// whole-file call and what flock(1) speaks. (On NFS the kernel emulates flock with a byte-range
// lock; the state directory is meant to be node-local.)
//
// Non-blocking only: a blocking flock would stall Node's event loop. The caller retries with
// backoff (src/ownership/lock.ts).
#include "file_lock.h"

#include <sys/file.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ipsecop {
namespace {

// flock(fd, operation), retrying interruptions. Returns 0 or a positive errno.
int FlockRetrying(int fd, int operation) {
  for (;;) {
    if (flock(fd, operation) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

bool ReadFd(const Napi::CallbackInfo& info, const char* function, int* fd) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, std::string(function) + ": expected a file descriptor (number)").ThrowAsJavaScriptException();
    return false;
  }
  const double value = info[0].As<Napi::Number>().DoubleValue();
  if (!(value >= 0 && value <= 2147483647.0) || value != static_cast<double>(static_cast<int>(value))) {
    Napi::TypeError::New(env, std::string(function) + ": not a file descriptor").ThrowAsJavaScriptException();
    return false;
  }
  *fd = static_cast<int>(value);
  return true;
}

// tryLockExclusive(fd) → 0 when this open file description now holds the exclusive lock (or
// already did), else the errno: EWOULDBLOCK (== EAGAIN on Linux) when another holds it, EBADF,
// ENOLCK, EINVAL... Never blocks.
Napi::Value TryLockExclusive(const Napi::CallbackInfo& info) {
  int fd = -1;
  if (!ReadFd(info, "tryLockExclusive", &fd)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), FlockRetrying(fd, LOCK_EX | LOCK_NB));
}

// unlock(fd) → 0 or the errno. Closing the descriptor releases the lock too; this is for
// releasing while keeping the descriptor.
Napi::Value Unlock(const Napi::CallbackInfo& info) {
  int fd = -1;
  if (!ReadFd(info, "unlock", &fd)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), FlockRetrying(fd, LOCK_UN));
}

}  // namespace

void DefineFileLock(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockExclusive", Napi::Function::New(env, TryLockExclusive, "tryLockExclusive"));
  exports.Set("unlock", Napi::Function::New(env, Unlock, "unlock"));
}

}  // namespace ipsecop
