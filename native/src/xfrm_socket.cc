#include "xfrm_socket.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "xfrm_fd.h"

namespace ipsecop {
namespace {

// Room for the largest dump chunk the kernel builds (it caps them near 32 KiB, sized from the
// buffer we read with), so dumps arrive in few datagrams. Larger datagrams grow the buffer.
constexpr size_t kInitialReceiveBytes = 64 * 1024;

// Datagrams handled per readiness callback. The poll is level-triggered, so what is left is read
// on the next loop turn; the cap keeps a flood of events from starving timers and I/O.
constexpr int kReceiveBudget = 1024;

Napi::Error MakeError(Napi::Env env, const SysError& e) {
  std::string message = e.context + ": " + e.syscall + " failed: " + std::strerror(e.errnum);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, e.errnum));
  error.Set("syscall", Napi::String::New(env, e.syscall));
  return error;
}

bool IsWouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// Whether this environment still runs JavaScript. While Node tears an environment down (process
// exit, worker termination) it runs the libuv loop again to close its own handles, so our poll
// callback can fire when calling into JavaScript is forbidden. N-API then refuses every call that
// needs the engine (node-addon-api would turn that refusal into a fatal error). Allocating an
// empty Buffer is such a call, and cheap.
bool JavaScriptCanRun(napi_env env) {
  void* data = nullptr;
  napi_value probe = nullptr;
  if (napi_create_buffer(env, 0, &data, &probe) == napi_ok) return true;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value ignored = nullptr;
    napi_get_and_clear_last_exception(env, &ignored);
  }
  return false;
}

// sendto the kernel (nl_pid 0), retrying only interruptions. Returns 0 or an errno.
int SendDatagram(int fd, const uint8_t* data, size_t length) {
  sockaddr_nl kernel;
  std::memset(&kernel, 0, sizeof(kernel));
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    const ssize_t n = sendto(fd, data, length, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&kernel),
                             sizeof(kernel));
    if (n >= 0) return 0;  // datagrams are written whole or not at all
    if (errno != EINTR) return errno;
  }
}

}  // namespace

Napi::Function XfrmSocket::Define(Napi::Env env) {
  return DefineClass(
      env, "XfrmSocket",
      {
          InstanceMethod<&XfrmSocket::Send>("send"),
          InstanceMethod<&XfrmSocket::StartReading>("startReading"),
          InstanceMethod<&XfrmSocket::StopReading>("stopReading"),
          InstanceMethod<&XfrmSocket::RefHandle>("ref"),
          InstanceMethod<&XfrmSocket::UnrefHandle>("unref"),
          InstanceMethod<&XfrmSocket::Close>("close"),
          InstanceAccessor<&XfrmSocket::GetPortId>("portId"),
          InstanceAccessor<&XfrmSocket::GetNetnsCookie>("netnsCookie"),
          InstanceAccessor<&XfrmSocket::GetReceiveBufferBytes>("receiveBufferBytes"),
          InstanceAccessor<&XfrmSocket::GetSendBufferBytes>("sendBufferBytes"),
          InstanceAccessor<&XfrmSocket::GetClosed>("closed"),
      });
}

XfrmSocket::XfrmSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<XfrmSocket>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "XfrmSocket(config, onDatagram, onError): bad arguments")
        .ThrowAsJavaScriptException();
    return;
  }
  Napi::Object options = info[0].As<Napi::Object>();
  XfrmSocketConfig config;
  Napi::Value netns = options.Get("netnsPath");
  if (netns.IsString()) config.netnsPath = netns.As<Napi::String>().Utf8Value();
  Napi::Value groups = options.Get("groups");
  if (groups.IsArray()) {
    Napi::Array list = groups.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      config.groups.push_back(list.Get(i).As<Napi::Number>().Uint32Value());
    }
  }
  Napi::Value rcv = options.Get("receiveBufferBytes");
  if (rcv.IsNumber()) config.receiveBufferBytes = rcv.As<Napi::Number>().Int32Value();
  Napi::Value snd = options.Get("sendBufferBytes");
  if (snd.IsNumber()) config.sendBufferBytes = snd.As<Napi::Number>().Int32Value();
  Napi::Value extAck = options.Get("extendedAck");
  if (extAck.IsBoolean()) config.extendedAck = extAck.As<Napi::Boolean>().Value();
  Napi::Value capAck = options.Get("capAck");
  if (capAck.IsBoolean()) config.capAck = capAck.As<Napi::Boolean>().Value();

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "XfrmSocket: no libuv event loop for this environment")
        .ThrowAsJavaScriptException();
    return;
  }

  OpenedXfrmSocket opened;
  SysError error;
  if (!OpenXfrmSocket(config, &opened, &error)) {
    MakeError(env, error).ThrowAsJavaScriptException();
    return;
  }

  poll_ = new PollHandle;
  const int rc = uv_poll_init(loop, &poll_->poll, opened.fd);
  if (rc != 0) {
    delete poll_;
    poll_ = nullptr;
    close(opened.fd);
    MakeError(env, SysError::Of(-rc, "uv_poll_init", "watching the NETLINK_XFRM socket"))
        .ThrowAsJavaScriptException();
    return;
  }
  poll_->poll.data = this;

  fd_ = opened.fd;
  portId_ = opened.portId;
  receiveBufferBytes_ = opened.receiveBufferBytes;
  sendBufferBytes_ = opened.sendBufferBytes;
  receiveBuffer_.resize(kInitialReceiveBytes);
  onDatagram_ = Napi::Persistent(info[1].As<Napi::Function>());
  onError_ = Napi::Persistent(info[2].As<Napi::Function>());
  asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "IpsecOperatorXfrmSocket", info.This().As<Napi::Object>());
  napi_add_async_cleanup_hook(env, &XfrmSocket::OnEnvCleanup, poll_, &poll_->envCleanup);
  // An open socket stays reachable, like a net.Socket: it must not vanish (and close) under a
  // caller that only kept a listener. close() drops this reference.
  Ref();
}

XfrmSocket::~XfrmSocket() { Shutdown(false); }

void XfrmSocket::OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  // The environment (process or worker) is going away with the socket open: release the fd and
  // the handle without calling into JavaScript. The hook is removed in OnHandleClosed.
  auto* handle = static_cast<PollHandle*>(arg);
  auto* self = static_cast<XfrmSocket*>(handle->poll.data);
  if (self != nullptr) self->Shutdown(false);
}

void XfrmSocket::OnHandleClosed(uv_handle_t* handle) {
  auto* owned = reinterpret_cast<PollHandle*>(handle);
  if (owned->envCleanup != nullptr) napi_remove_async_cleanup_hook(owned->envCleanup);
  delete owned;
}

Napi::Value XfrmSocket::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsFunction() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "send(datagram: Uint8Array, done: Function)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (fd_ < 0) {
    MakeError(env, SysError::Of(EBADF, "sendto", "sending on a closed NETLINK_XFRM socket"))
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array datagram = info[0].As<Napi::Uint8Array>();
  const uint8_t* data = datagram.Data();
  const size_t length = datagram.ByteLength();

  // Earlier datagrams still waiting for writability go first: order is part of the protocol.
  if (sendQueue_.empty()) {
    const int err = SendDatagram(fd_, data, length);
    if (err == 0) return Napi::Boolean::New(env, true);
    if (!IsWouldBlock(err)) {
      MakeError(env, SysError::Of(err, "sendto",
                                  "sending a " + std::to_string(length) + "-byte datagram to the kernel"))
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  sendQueue_.push_back(PendingSend{std::vector<uint8_t>(data, data + length),
                                   Napi::Persistent(info[1].As<Napi::Function>())});
  const int rc = UpdatePoll();
  if (rc != 0) {
    sendQueue_.pop_back();
    MakeError(env, SysError::Of(-rc, "uv_poll_start", "waiting for the NETLINK_XFRM socket to become writable"))
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, false);  // done() is called once written or failed
}

void XfrmSocket::StartReading(const Napi::CallbackInfo& info) {
  if (fd_ < 0 || reading_) return;
  reading_ = true;
  const int rc = UpdatePoll();
  if (rc != 0) {
    reading_ = false;
    MakeError(info.Env(), SysError::Of(-rc, "uv_poll_start", "watching the NETLINK_XFRM socket for datagrams"))
        .ThrowAsJavaScriptException();
  }
}

void XfrmSocket::StopReading(const Napi::CallbackInfo&) {
  if (fd_ < 0 || !reading_) return;
  reading_ = false;
  UpdatePoll();  // stopping cannot fail
}

void XfrmSocket::RefHandle(const Napi::CallbackInfo&) {
  if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&poll_->poll));
}

void XfrmSocket::UnrefHandle(const Napi::CallbackInfo&) {
  if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&poll_->poll));
}

void XfrmSocket::Close(const Napi::CallbackInfo&) { Shutdown(true); }

Napi::Value XfrmSocket::GetPortId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), portId_);
}
// SO_NETNS_COOKIE (Linux 5.14): a 64-bit number the kernel gives each network namespace once
// per boot and never reuses, unlike the namespace's inode, which a namespace created after
// another one was freed can get again. The ownership ledger records it to tell "this
// namespace" from "a namespace that had this name or inode before". undefined where the kernel
// lacks the option.
Napi::Value XfrmSocket::GetNetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  if (fd_ < 0 || getsockopt(fd_, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length) != 0 ||
      length != sizeof(cookie)) {
    return env.Undefined();
  }
  return Napi::BigInt::New(env, cookie);
}
Napi::Value XfrmSocket::GetReceiveBufferBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), receiveBufferBytes_);
}
Napi::Value XfrmSocket::GetSendBufferBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), sendBufferBytes_);
}
Napi::Value XfrmSocket::GetClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), fd_ < 0);
}

// Watch for exactly what we need: readable while someone reads, writable while sends wait.
// Returns 0 or a libuv error.
int XfrmSocket::UpdatePoll() {
  if (poll_ == nullptr) return 0;
  const int events = (reading_ ? UV_READABLE : 0) | (sendQueue_.empty() ? 0 : UV_WRITABLE);
  if (events == pollEvents_) return 0;
  const int rc = events == 0 ? uv_poll_stop(&poll_->poll) : uv_poll_start(&poll_->poll, events, &XfrmSocket::OnPoll);
  if (rc == 0) pollEvents_ = events;
  return rc;
}

void XfrmSocket::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<XfrmSocket*>(handle->data);
  if (self == nullptr || self->fd_ < 0) return;  // closed while the event was in flight
  Napi::HandleScope scope(self->Env());
  if (!JavaScriptCanRun(self->Env())) {
    self->Shutdown(false);  // nobody is left to deliver to
    return;
  }
  if (status < 0) {
    self->OnPollError(status);
    return;
  }
  if ((events & UV_WRITABLE) != 0) self->FlushSendQueue();
  if ((events & UV_READABLE) != 0) self->Drain();
}

// libuv reports EPOLLERR as UV_EBADF and stops the handle. On a netlink socket EPOLLERR means a
// pending socket error, in practice ENOBUFS after the receive queue overflowed. SO_ERROR fetches
// and clears it; then we watch again. Only a failing getsockopt (the fd really is bad) or an
// error other than ENOBUFS stops reading.
void XfrmSocket::OnPollError(int status) {
  pollEvents_ = 0;  // libuv stopped the handle
  int pending = 0;
  socklen_t len = sizeof(pending);
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &pending, &len) != 0) {
    const int err = errno;
    ReportError(SysError::Of(err, "getsockopt",
                             "fetching the pending error of the NETLINK_XFRM socket after poll reported " +
                                 std::string(uv_err_name(status))),
                true);
    return;
  }
  if (pending == ENOBUFS) {
    overflowPending_ = true;
  } else if (pending != 0) {
    ReportError(SysError::Of(pending, "recvmsg", "receiving from the NETLINK_XFRM socket"), true);
  }
  if (fd_ < 0) return;
  const int rc = UpdatePoll();
  if (rc != 0) {
    reading_ = false;
    ReportError(SysError::Of(-rc, "uv_poll_start", "watching the NETLINK_XFRM socket again after an error"), true);
    return;
  }
  if (reading_) Drain();
}

void XfrmSocket::Drain() {
  for (int i = 0; i < kReceiveBudget; i++) {
    if (!reading_ || fd_ < 0) return;
    Napi::HandleScope scope(Env());
    switch (ReceiveOne()) {
      case Received::kDatagram:
        continue;
      case Received::kNothing:
        ReportOverflowIfPending();
        return;
      case Received::kStopped:
        return;
    }
  }
}

// After an overflow the kernel drops every further message for this socket until its queue has
// been read empty (the socket is "congested"). What is still queued arrived before the first
// drop, so it is delivered first and ENOBUFS after it, once the queue is empty: the stream stays
// in order, and a handler that reacts by sending a dump request gets the reply.
void XfrmSocket::ReportOverflowIfPending() {
  if (!overflowPending_) return;
  overflowPending_ = false;
  ReportError(SysError::Of(ENOBUFS, "recvmsg", "receiving from the NETLINK_XFRM socket"), false);
}

// Reads one datagram and hands it to JavaScript.
XfrmSocket::Received XfrmSocket::ReceiveOne() {
  // Peek at the size first (MSG_TRUNC makes netlink report the full length) so a datagram larger
  // than our buffer grows the buffer instead of being cut.
  const ssize_t size = recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
  if (size < 0) return OnReceiveError(errno);
  if (static_cast<size_t>(size) > receiveBuffer_.size()) {
    receiveBuffer_.resize((static_cast<size_t>(size) + 4095) & ~static_cast<size_t>(4095));
  }

  sockaddr_nl sender;
  std::memset(&sender, 0, sizeof(sender));
  iovec iov{receiveBuffer_.data(), receiveBuffer_.size()};
  msghdr msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.msg_name = &sender;
  msg.msg_namelen = sizeof(sender);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT);
  // An overflow between peek and read shows up here; the peeked datagram stays queued.
  if (n < 0) return OnReceiveError(errno);
  if ((msg.msg_flags & MSG_TRUNC) != 0) {
    ReportError(SysError::Of(EMSGSIZE, "recvmsg",
                             "receiving a datagram larger than the peeked size (it was cut and dropped)"),
                false);
    return Received::kDatagram;
  }
  // Only the kernel speaks XFRM to us; another process that found our port id does not get to
  // inject replies or events.
  if (sender.nl_pid != 0) return Received::kDatagram;

  Napi::Buffer<uint8_t> datagram = Napi::Buffer<uint8_t>::Copy(Env(), receiveBuffer_.data(), static_cast<size_t>(n));
  Dispatch(onDatagram_, {datagram});
  return Received::kDatagram;
}

XfrmSocket::Received XfrmSocket::OnReceiveError(int err) {
  if (err == EINTR) return Received::kDatagram;  // try again
  if (IsWouldBlock(err)) return Received::kNothing;
  if (err == ENOBUFS) {
    // Reading the error cleared it; keep draining and report it once the queue is empty.
    overflowPending_ = true;
    return Received::kDatagram;
  }
  ReportError(SysError::Of(err, "recvmsg", "receiving from the NETLINK_XFRM socket"), true);
  return Received::kStopped;
}

void XfrmSocket::FlushSendQueue() {
  while (!sendQueue_.empty() && fd_ >= 0) {
    PendingSend& next = sendQueue_.front();
    const int err = SendDatagram(fd_, next.datagram.data(), next.datagram.size());
    if (IsWouldBlock(err)) break;  // still full: wait for the next writable event
    Napi::HandleScope scope(Env());
    Napi::FunctionReference done = std::move(next.done);
    const size_t length = next.datagram.size();
    sendQueue_.pop_front();
    if (err == 0) {
      Dispatch(done, {Env().Null()});
    } else {
      Dispatch(done, {MakeError(Env(), SysError::Of(err, "sendto",
                                                    "sending a " + std::to_string(length) +
                                                        "-byte datagram to the kernel"))
                          .Value()});
    }
  }
  if (fd_ >= 0) UpdatePoll();
}

void XfrmSocket::ReportError(const SysError& error, bool fatal) {
  if (fatal) {
    // Not an overflow: something we cannot read past. Stop watching rather than spin on it.
    reading_ = false;
    UpdatePoll();
  }
  Napi::Error err = MakeError(Env(), error);
  err.Set("fatal", Napi::Boolean::New(Env(), fatal));
  Dispatch(onError_, {err.Value()});
}

// Calls into JavaScript from a libuv callback (with the async context, so promise jobs and
// nextTicks run afterwards). A callback that throws becomes an uncaught exception, as it would
// for any Node event listener. A callback that ended the environment (process.exit() in a
// worker) leaves the socket shut down; callers see fd_ < 0 and stop.
void XfrmSocket::Dispatch(const Napi::FunctionReference& fn, std::initializer_list<napi_value> args) {
  if (fn.IsEmpty()) return;
  napi_env env = Env();
  napi_value result = nullptr;
  const napi_status status =
      napi_make_callback(env, asyncContext_ ? static_cast<napi_async_context>(*asyncContext_) : nullptr, Value(),
                         fn.Value(), args.size(), args.begin(), &result);
  if (status == napi_ok) return;
  napi_value exception = nullptr;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_get_and_clear_last_exception(env, &exception);
  }
  if (!JavaScriptCanRun(env)) {
    Shutdown(false);
    return;
  }
  if (exception != nullptr) napi_fatal_exception(env, exception);
}

void XfrmSocket::Shutdown(bool notifyJs) {
  if (fd_ < 0) return;
  if (poll_ != nullptr) {
    // uv_close stops the watch at once (the fd leaves epoll), so closing the fd right after is
    // safe; the handle memory is freed in the close callback.
    poll_->poll.data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_->poll), &XfrmSocket::OnHandleClosed);
    poll_ = nullptr;
  }
  close(fd_);
  fd_ = -1;
  reading_ = false;
  pollEvents_ = 0;

  std::deque<PendingSend> abandoned;
  abandoned.swap(sendQueue_);
  if (notifyJs) {
    Napi::Env env = Env();
    for (PendingSend& pending : abandoned) {
      Napi::HandleScope scope(env);
      Napi::Error err = MakeError(env, SysError::Of(ECANCELED, "sendto",
                                                    "closing the NETLINK_XFRM socket before a queued datagram was written"));
      pending.done.Call({err.Value()});
      if (env.IsExceptionPending()) env.GetAndClearPendingException();  // close() itself must not throw
    }
    onDatagram_.Reset();
    onError_.Reset();
    asyncContext_.reset();
    Unref();  // the socket may be collected now
  }
}

}  // namespace ipsecop
