// Exclusive whole-file locks that the kernel drops when their holder dies.
//
// Used for the ownership ledger's lock file (src/ownership/lock.ts). The holder is the open file
// description, not a process id, so PID 1 in a container that was SIGKILLed leaves no lock
// behind, and a lock taken in one PID namespace is seen in every other on the same inode.
#ifndef IPSECOP_FILE_LOCK_H
#define IPSECOP_FILE_LOCK_H

#include <napi.h>

namespace ipsecop {

// Adds `tryLockExclusive(fd)` and `unlock(fd)` to the module's exports.
void DefineFileLock(Napi::Env env, Napi::Object exports);

}  // namespace ipsecop

#endif
