// The JavaScript object that owns one NETLINK_XFRM socket: receive through a libuv poll handle,
// send with a queue that waits for writability, close. No netlink parsing happens here; every
// datagram goes to JavaScript as it came from the kernel.
#ifndef IPSECOP_XFRM_SOCKET_H
#define IPSECOP_XFRM_SOCKET_H

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <vector>

#include "sys_error.h"

namespace ipsecop {

class XfrmSocket : public Napi::ObjectWrap<XfrmSocket> {
 public:
  static Napi::Function Define(Napi::Env env);

  // new XfrmSocket(config, onDatagram(buffer), onError(error)) opens the socket or throws.
  explicit XfrmSocket(const Napi::CallbackInfo& info);
  ~XfrmSocket() override;

 private:
  struct PendingSend {
    std::vector<uint8_t> datagram;  // copied: the caller may reuse its buffer
    Napi::FunctionReference done;   // done(error | null)
  };

  // JavaScript methods.
  Napi::Value Send(const Napi::CallbackInfo& info);
  void StartReading(const Napi::CallbackInfo& info);
  void StopReading(const Napi::CallbackInfo& info);
  void RefHandle(const Napi::CallbackInfo& info);
  void UnrefHandle(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value GetPortId(const Napi::CallbackInfo& info);
  Napi::Value GetNetnsCookie(const Napi::CallbackInfo& info);
  Napi::Value GetReceiveBufferBytes(const Napi::CallbackInfo& info);
  Napi::Value GetSendBufferBytes(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  // libuv side.
  // The libuv handle, with what must outlive this object until libuv is done with the handle.
  struct PollHandle {
    uv_poll_t poll;  // first member: libuv hands callbacks &poll; poll.data is the owner or null
    // Holds the environment's teardown (and so the unloading of this addon) until the handle's
    // close callback, which lives in this addon, has run.
    napi_async_cleanup_hook_handle envCleanup = nullptr;
  };

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnEnvCleanup(napi_async_cleanup_hook_handle hook, void* arg);
  static void OnHandleClosed(uv_handle_t* handle);
  int UpdatePoll();
  void OnPollError(int status);
  enum class Received { kDatagram, kNothing, kStopped };
  void Drain();
  Received ReceiveOne();
  Received OnReceiveError(int err);
  void ReportOverflowIfPending();
  void FlushSendQueue();
  void ReportError(const SysError& error, bool fatal);
  void Dispatch(const Napi::FunctionReference& fn, std::initializer_list<napi_value> args);
  void Shutdown(bool notifyJs);

  int fd_ = -1;
  uint32_t portId_ = 0;
  int receiveBufferBytes_ = 0;
  int sendBufferBytes_ = 0;
  PollHandle* poll_ = nullptr;  // heap: freed by its close callback, which may run after us
  int pollEvents_ = 0;
  bool reading_ = false;
  bool overflowPending_ = false;  // ENOBUFS seen, reported once the queue is read empty
  std::vector<uint8_t> receiveBuffer_;
  std::deque<PendingSend> sendQueue_;
  Napi::FunctionReference onDatagram_;
  Napi::FunctionReference onError_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
};

}  // namespace ipsecop

#endif
