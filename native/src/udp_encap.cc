#include "udp_encap.h"

#include <arpa/inet.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "netns.h"
#include "sys_error.h"

namespace ipsecop {
namespace {

// Smaller than the kernel's minimum on purpose: it rounds up to SOCK_MIN_RCVBUF.
constexpr int kReceiveBufferBytes = 1;

Napi::Error MakeError(Napi::Env env, const SysError& e) {
  std::string message = e.context + ": " + e.syscall + " failed: " + std::strerror(e.errnum);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, e.errnum));
  error.Set("syscall", Napi::String::New(env, e.syscall));
  return error;
}

// The local end, in either family, as bind(2) and getsockname(2) take it.
struct Endpoint {
  sockaddr_storage storage;
  socklen_t length = 0;
  int family = AF_UNSPEC;
};

bool ParseEndpoint(const std::string& address, int port, Endpoint* out) {
  std::memset(&out->storage, 0, sizeof(out->storage));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->storage);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    out->length = sizeof(sockaddr_in);
    out->family = AF_INET;
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
  if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    out->length = sizeof(sockaddr_in6);
    out->family = AF_INET6;
    return true;
  }
  return false;
}

std::string Describe(const std::string& address, int port) {
  const bool v6 = address.find(':') != std::string::npos;
  return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

// Configures and binds `fd`. Returns true, or false with `*err` filled in.
bool Configure(int fd, const Endpoint& local, int encapType, const std::string& where, SysError* err) {
  const int one = 1;
  // An AF_INET6 socket would otherwise also claim the port for IPv4 (v4-mapped) when bound to
  // the any-address, and whether v4-mapped ESP-in-UDP is decapsulated depends on the kernel.
  if (local.family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    *err = SysError::Of(errno, "setsockopt", "setting IPV6_V6ONLY on the UDP socket for " + where);
    return false;
  }
  // Best effort: a larger buffer only costs memory.
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kReceiveBufferBytes, sizeof(kReceiveBufferBytes));
  if (setsockopt(fd, IPPROTO_UDP, UDP_ENCAP, &encapType, sizeof(encapType)) != 0) {
    *err = SysError::Of(errno, "setsockopt", "setting UDP_ENCAP on the UDP socket for " + where);
    return false;
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&local.storage), local.length) != 0) {
    *err = SysError::Of(errno, "bind", "binding the UDP encapsulation socket to " + where);
    return false;
  }
  return true;
}

// What the socket is bound to, printable. Empty if the kernel will not say (it always does).
void BoundEndpoint(int fd, std::string* address, int* port) {
  sockaddr_storage storage;
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return;
  char text[INET6_ADDRSTRLEN] = {0};
  if (storage.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    *port = ntohs(v4->sin_port);
  } else if (storage.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    *port = ntohs(v6->sin6_port);
  }
  *address = text;
}

}  // namespace

Napi::Function UdpEncapSocket::Define(Napi::Env env) {
  return DefineClass(env, "UdpEncapSocket",
                     {
                         InstanceMethod<&UdpEncapSocket::Close>("close"),
                         InstanceAccessor<&UdpEncapSocket::GetClosed>("closed"),
                         InstanceAccessor<&UdpEncapSocket::GetAddress>("address"),
                         InstanceAccessor<&UdpEncapSocket::GetPort>("port"),
                         InstanceAccessor<&UdpEncapSocket::GetEncapsulation>("encapsulation"),
                     });
}

UdpEncapSocket::UdpEncapSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpEncapSocket>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "UdpEncapSocket: expected a config object").ThrowAsJavaScriptException();
    return;
  }
  Napi::Object config = info[0].As<Napi::Object>();
  Napi::Value netnsValue = config.Get("netnsPath");
  Napi::Value addressValue = config.Get("address");
  Napi::Value portValue = config.Get("port");
  Napi::Value encapValue = config.Get("encapsulation");
  if (!addressValue.IsString() || !portValue.IsNumber() || !encapValue.IsString() ||
      !(netnsValue.IsUndefined() || netnsValue.IsString())) {
    Napi::TypeError::New(env, "UdpEncapSocket: config needs address (string), port (number), encapsulation (string)")
        .ThrowAsJavaScriptException();
    return;
  }
  const std::string netnsPath = netnsValue.IsString() ? netnsValue.As<Napi::String>().Utf8Value() : "";
  const std::string address = addressValue.As<Napi::String>().Utf8Value();
  const double portNumber = portValue.As<Napi::Number>().DoubleValue();
  const std::string encapName = encapValue.As<Napi::String>().Utf8Value();

  // The names are the ones iproute2 and the CRD use; the numbers come from <linux/udp.h>.
  int encapType = 0;
  if (encapName == "espinudp") {
    encapType = UDP_ENCAP_ESPINUDP;
  } else if (encapName == "espinudp-nonike") {
    encapType = UDP_ENCAP_ESPINUDP_NON_IKE;
  } else {
    Napi::TypeError::New(env, "UdpEncapSocket: encapsulation must be espinudp or espinudp-nonike, got " + encapName)
        .ThrowAsJavaScriptException();
    return;
  }
  if (!(portNumber >= 1 && portNumber <= 65535) || portNumber != static_cast<double>(static_cast<int>(portNumber))) {
    Napi::RangeError::New(env, "UdpEncapSocket: port must be an integer from 1 to 65535").ThrowAsJavaScriptException();
    return;
  }
  const int port = static_cast<int>(portNumber);
  Endpoint local;
  if (!ParseEndpoint(address, port, &local)) {
    Napi::TypeError::New(env, "UdpEncapSocket: " + address + " is not an IPv4 or IPv6 address").ThrowAsJavaScriptException();
    return;
  }

  const std::string where = Describe(address, port) + (netnsPath.empty() ? "" : " in network namespace " + netnsPath);
  SysError err;
  const int fd = CreateSocketIn(netnsPath, local.family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP,
                                "a UDP socket", &err);
  if (fd < 0) {
    MakeError(env, err).ThrowAsJavaScriptException();
    return;
  }
  if (!Configure(fd, local, encapType, where, &err)) {
    close(fd);
    MakeError(env, err).ThrowAsJavaScriptException();
    return;
  }
  fd_ = fd;
  address_ = address;
  port_ = port;
  BoundEndpoint(fd_, &address_, &port_);
}

UdpEncapSocket::~UdpEncapSocket() {
  // A socket the program forgot to close goes with its object; the kernel then stops
  // decapsulating on that port.
  if (fd_ >= 0) close(fd_);
}

void UdpEncapSocket::Close(const Napi::CallbackInfo&) {
  if (fd_ < 0) return;
  close(fd_);
  fd_ = -1;
}

Napi::Value UdpEncapSocket::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }

Napi::Value UdpEncapSocket::GetAddress(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), address_);
}

Napi::Value UdpEncapSocket::GetPort(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }

Napi::Value UdpEncapSocket::GetEncapsulation(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (fd_ < 0) return env.Null();
  int type = 0;
  socklen_t length = sizeof(type);
  if (getsockopt(fd_, IPPROTO_UDP, UDP_ENCAP, &type, &length) != 0) {
    MakeError(env, SysError::Of(errno, "getsockopt", "reading UDP_ENCAP of the socket on " + Describe(address_, port_)))
        .ThrowAsJavaScriptException();
    return env.Null();
  }
  if (type == UDP_ENCAP_ESPINUDP) return Napi::String::New(env, "espinudp");
  if (type == UDP_ENCAP_ESPINUDP_NON_IKE) return Napi::String::New(env, "espinudp-nonike");
  if (type == 0) return Napi::String::New(env, "none");
  return Napi::String::New(env, "type " + std::to_string(type));
}

}  // namespace ipsecop
