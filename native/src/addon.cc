// Module entry: exports the XfrmSocket class. See xfrm_socket.h.
#include <napi.h>

#include "file_lock.h"
#include "udp_encap.h"
#include "xfrm_socket.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("XfrmSocket", ipsecop::XfrmSocket::Define(env));
  exports.Set("UdpEncapSocket", ipsecop::UdpEncapSocket::Define(env));
  ipsecop::DefineFileLock(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(xfrm_netlink, Init)
