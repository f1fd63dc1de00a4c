// A UDP socket that hands ESP-in-UDP (RFC 3948) to the kernel's IPsec input path.
//
// Linux takes ESP out of UDP only for datagrams that arrive on a UDP socket whose UDP_ENCAP
// option is set: the socket's encap_rcv hook passes them to xfrm before anything is queued.
// So the socket only has to exist; nobody reads it. Non-ESP datagrams (IKE, with the non-ESP
// marker) would queue on it, so its receive buffer is shrunk to the kernel's minimum: they are
// dropped once it is full, and memory stays bounded.
//
// Bound to one address and port, never with SO_REUSEADDR: if another process (an IKE daemon)
// holds the port, bind fails with EADDRINUSE and the caller learns it instead of sharing it.
#ifndef IPSECOP_UDP_ENCAP_H
#define IPSECOP_UDP_ENCAP_H

#include <napi.h>

#include <string>

namespace ipsecop {

class UdpEncapSocket : public Napi::ObjectWrap<UdpEncapSocket> {
 public:
  static Napi::Function Define(Napi::Env env);

  // new UdpEncapSocket({ netnsPath?, address, port, encapsulation: 'espinudp' | 'espinudp-nonike' })
  // creates, configures and binds the socket, or throws an Error with errno and syscall.
  explicit UdpEncapSocket(const Napi::CallbackInfo& info);
  ~UdpEncapSocket() override;

 private:
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value GetAddress(const Napi::CallbackInfo& info);
  Napi::Value GetPort(const Napi::CallbackInfo& info);
  // What the kernel holds now (getsockopt UDP_ENCAP): 'espinudp', 'espinudp-nonike', 'none'.
  Napi::Value GetEncapsulation(const Napi::CallbackInfo& info);

  int fd_ = -1;
  std::string address_;  // as bound (getsockname), printable
  int port_ = 0;
};

}  // namespace ipsecop

#endif
