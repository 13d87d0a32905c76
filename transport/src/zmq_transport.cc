// The ZeroMQ backends (inproc, ipc, tcp): one PAIR socket per link end. On ipc/tcp a message is a
// two-part ZeroMQ message (header frame, payload frame); the payload buffer is given to ZeroMQ
// with a free callback on send and handed to the caller in place on receive, so tensors are not
// copied by Lockstep. On inproc (threads of one process, sockets of one private context) the
// frame itself travels: one ZeroMQ message that owns the sender's RawFrame (see InprocFrame).
// Bounded buffers are ZeroMQ's high-water marks (counted in whole messages), per direction from
// its QueueBound (transport.h QueueDepthFor): with the direction's largest tensor known, the
// receive mark bounds the receiving end in bytes.
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "backends.h"
#include "deadline.h"
#include "lockstep/common/error.h"
#include "lockstep/transport/crc32c.h"
#include "lockstep/transport/frame.h"

namespace lockstep::transport {
namespace {

using Clock = std::chrono::steady_clock;

std::string ZmqError() { return zmq_strerror(zmq_errno()); }

// Keeps a received payload frame alive while the caller holds the Payload.
class ZmqMsgOwner : public Payload::Owner {
 public:
  ZmqMsgOwner() { zmq_msg_init(&msg); }
  ~ZmqMsgOwner() override { zmq_msg_close(&msg); }
  zmq_msg_t msg;
};

void FreeOwner(void* /*data*/, void* hint) { delete static_cast<Payload::Owner*>(hint); }

// inproc: the sender's frame (encoded header bytes and payload) handed over whole, as the data of
// a one-part ZeroMQ message that owns it, so a frame costs one ZeroMQ message instead of two and
// no copy of the header. The receiver moves the frame out; ZeroMQ deletes the object when the
// message is closed, received or dropped unreceived (a socket closed with messages queued). The
// header bytes are still the Cap'n Proto header every backend carries, decoded and checked by
// Endpoint::Receive as on ipc/tcp. A message is taken for one only if its size is right, it
// carries the magic, and `self` is its own address, which only an object handed to ZeroMQ
// without a copy can satisfy (inproc sockets live in the transport's private context, so nothing
// else can reach them; the check keeps a stray message from being read as an object anyway).
struct InprocFrame {
  static constexpr uint64_t kMagic = 0x4C6B7374'46726D31ull;  // "LkstFrm1"
  uint64_t magic = kMagic;
  const InprocFrame* self = this;
  RawFrame frame;
};

void FreeInprocFrame(void* data, void* /*hint*/) { delete static_cast<InprocFrame*>(data); }

// ipc/tcp, over a direction without a known bound (message.h QueueBound): a payload of at least
// kSegmentFrom bytes is sent as segments of about kSegmentTarget
// bytes (at most kMaxSendSegments), each its own ZeroMQ message (proto/frame.capnp, frame.h
// SegmentTag). ZeroMQ delivers a multipart message only once all of it arrived, but separate
// messages one by one: the receiving thread copies and checksums segment k while the I/O thread
// still receives k+1, and ZeroMQ's receive buffers are segment-sized, so they are recycled by the
// allocator instead of a fresh multi-MiB buffer (page faults) for every tensor.
constexpr size_t kSegmentFrom = size_t{2} << 20;
constexpr size_t kSegmentTarget = size_t{1} << 20;
// A segment that does not follow its predecessor within this long (or the receive timeout, if
// longer) fails the receive: the sender sends the segments of a tensor back to back.
constexpr Millis kSegmentWait{10000};

// The payload's owner, shared by the ZeroMQ messages of its segments; freed with the last.
struct SharedOwner {
  std::unique_ptr<Payload::Owner> owner;
  std::atomic<uint32_t> refs;
};

void FreeShared(void* /*data*/, void* hint) {
  auto* shared = static_cast<SharedOwner*>(hint);
  if (shared->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete shared;
}

// Copies `n` bytes and returns the CRC32C continued over them, block by block, so each block is
// checksummed while it is in cache.
uint32_t CopyWithCrc(std::byte* dst, const std::byte* src, size_t n, uint32_t crc) {
  constexpr size_t kBlock = size_t{64} << 10;
  for (size_t off = 0; off < n; off += kBlock) {
    const size_t len = std::min(kBlock, n - off);
    std::memcpy(dst + off, src + off, len);
    crc = Crc32c(std::span<const std::byte>(dst + off, len), crc);
  }
  return crc;
}

void SetInt(void* socket, int option, int value, const std::string& what) {
  if (zmq_setsockopt(socket, option, &value, sizeof value) != 0) {
    throw Error(ErrorCode::kInternal,
                what + ": zmq_setsockopt(" + std::to_string(option) + "): " + ZmqError());
  }
}

// Watches one socket's connection events (ipc, tcp) so that a peer process that vanishes is
// reported as kDisconnected at once instead of as a receive timeout. ZeroMQ reconnects silently,
// so its monitor is the only place a lost connection shows. A PAIR socket has at most one live
// peer, but a stranger may still open a connection that fails its handshake (a wrong CURVE key,
// a port scanner): such a connection emits HANDSHAKE_FAILED_* before its DISCONNECTED. Events of
// one connection arrive in order, so counting failed handshakes tells those apart from the loss
// of the peer whose handshake succeeded.
class Monitor {
 public:
  Monitor(void* ctx, void* socket, const std::string& what) {
    static std::atomic<uint64_t> next_id{0};
    const std::string address = "inproc://lockstep-monitor-" + std::to_string(next_id++);
    constexpr int kEvents = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(socket, address.c_str(), kEvents) != 0) {
      throw Error(ErrorCode::kInternal, what + ": zmq_socket_monitor: " + ZmqError());
    }
    socket_ = zmq_socket(ctx, ZMQ_PAIR);
    const int zero = 0;
    zmq_setsockopt(socket_, ZMQ_LINGER, &zero, sizeof zero);
    if (socket_ == nullptr || zmq_connect(socket_, address.c_str()) != 0) {
      std::string why = ZmqError();
      zmq_socket_monitor(socket, nullptr, 0);
      if (socket_ != nullptr) zmq_close(socket_);
      throw Error(ErrorCode::kInternal, what + ": cannot connect the socket monitor: " + why);
    }
  }
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;
  // The watched socket must stop its monitor (zmq_socket_monitor(s, nullptr, 0)) or be closed
  // first.
  ~Monitor() { zmq_close(socket_); }

  void* socket() const { return socket_; }

  // Called once the hello exchange is done: connections that came and went while the link was
  // being set up (a connect that reached a listener being torn down) are forgotten; the count of
  // live connections stays, so the peer's connection is the one watched from here on.
  void Arm() {
    PeerGone();
    gone_ = false;
    armed_ = true;
  }

  // Whether PeerGone already saw the loss (no ZeroMQ call).
  bool Gone() const { return gone_ && armed_; }

  // Takes every queued event; returns true once the peer's established connection was lost
  // after Arm.
  bool PeerGone() {
    while (!(gone_ && armed_)) {
      zmq_msg_t event;
      zmq_msg_init(&event);
      if (zmq_msg_recv(&event, socket_, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&event);
        break;
      }
      uint16_t id = 0;
      if (zmq_msg_size(&event) >= 2) std::memcpy(&id, zmq_msg_data(&event), 2);
      bool more = zmq_msg_more(&event) != 0;
      zmq_msg_close(&event);
      while (more) {  // the second frame names the endpoint address; not needed
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, socket_, 0) < 0) more = false;
        more = more && zmq_msg_more(&part) != 0;
        zmq_msg_close(&part);
      }
      switch (id) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
          ++live_;
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
          ++failed_;
          ++handshake_failures_;
          break;
        case ZMQ_EVENT_DISCONNECTED:
          if (failed_ > 0) {
            --failed_;
          } else if (live_ > 0 && --live_ == 0) {
            gone_ = true;
          }
          break;
        default:
          break;
      }
    }
    return gone_ && armed_;
  }

  // Connections that failed their handshake so far (a wrong CURVE key on either end).
  int HandshakeFailures() {
    PeerGone();
    return handshake_failures_;
  }

 private:
  void* socket_ = nullptr;
  int handshake_failures_ = 0;
  bool armed_ = false;
  int live_ = 0;
  int failed_ = 0;
  bool gone_ = false;
};

// Owns the ZeroMQ context; endpoints share it so it is terminated after the last socket closes.
//
// It also owns the sockets of closed ipc/tcp endpoints until their peer has taken everything:
// libzmq (4.3) drops the data still in the receiver's kernel buffer when the sender's connection
// closes while the receiver's pipe is at its high-water mark (ipc reports the hang-up while input
// is stopped, and the engine never reads the rest). ZMQ_LINGER does not help: it only waits for
// the bytes to reach the kernel. So a closed endpoint's socket stays open here until the peer
// answers the end-of-stream marker with its own (Endpoint does that as soon as it reads the
// marker), disconnects, or the Close timeout passes. This thread is the only user of those
// sockets once they are handed over.
class Context {
 public:
  Context() : ctx(zmq_ctx_new()) {}
  // Waits for the lingering sockets (each at most until its Close deadline).
  ~Context() {
    if (thread_.joinable()) thread_.join();
    zmq_ctx_term(ctx);
  }

  // Takes `socket` (and its monitor) and closes it once the peer acknowledged the close, went
  // away, or `deadline` passed.
  void Linger(void* socket, std::unique_ptr<Monitor> monitor, Clock::time_point deadline) {
    std::lock_guard lock(mu_);
    incoming_.push_back({socket, std::move(monitor), deadline});
    if (!running_) {
      // A previous thread that ran out of sockets has left its loop (it cleared running_ last).
      if (thread_.joinable()) thread_.join();
      running_ = true;
      thread_ = std::thread([this] { Run(); });
    }
  }

  void* const ctx;

 private:
  struct Lingering {
    void* socket;
    std::unique_ptr<Monitor> monitor;
    Clock::time_point deadline;
  };

  static void CloseNow(Lingering& l) {
    zmq_socket_monitor(l.socket, nullptr, 0);
    const int zero = 0;
    zmq_setsockopt(l.socket, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(l.socket);
    l.monitor.reset();
  }

  // Reads and discards what the peer still sent; true once its end-of-stream marker came.
  static bool PeerClosed(void* socket) {
    for (;;) {
      zmq_msg_t part;
      zmq_msg_init(&part);
      if (zmq_msg_recv(&part, socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return false;
      }
      bool close = false;
      size_t size = zmq_msg_size(&part);
      if (size >= 16 && size <= kMaxHeaderBytes && size % 8 == 0) {
        try {
          std::span<const std::byte> bytes(static_cast<const std::byte*>(zmq_msg_data(&part)),
                                           size);
          close = DecodeFrameHeader(bytes, "", 0).kind == FrameKind::kClose;
        } catch (const Error&) {
          // a payload frame or garbage: discarded like everything after Close
        }
      }
      zmq_msg_close(&part);
      if (close) return true;
    }
  }

  void Run() {
    std::vector<Lingering> open;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        for (auto& l : incoming_) open.push_back(std::move(l));
        incoming_.clear();
        if (open.empty()) {
          running_ = false;  // the next Linger starts a new thread
          return;
        }
      }
      std::vector<zmq_pollitem_t> items;
      for (const Lingering& l : open) {
        items.push_back({l.socket, 0, ZMQ_POLLIN, 0});
        items.push_back({l.monitor->socket(), 0, ZMQ_POLLIN, 0});
      }
      zmq_poll(items.data(), static_cast<int>(items.size()), 20);
      const auto now = Clock::now();
      std::vector<Lingering> still;
      for (size_t i = 0; i < open.size(); ++i) {
        Lingering& l = open[i];
        bool done = now >= l.deadline;
        if (!done && (items[2 * i].revents & ZMQ_POLLIN) != 0) done = PeerClosed(l.socket);
        if (!done && (items[2 * i + 1].revents & ZMQ_POLLIN) != 0) done = l.monitor->PeerGone();
        if (done) {
          CloseNow(l);
        } else {
          still.push_back(std::move(l));
        }
      }
      open = std::move(still);
    }
  }

  std::mutex mu_;
  std::vector<Lingering> incoming_;
  bool running_ = false;
  std::thread thread_;
};

class ZmqEndpoint : public Endpoint {
 public:
  // inproc: frames travel whole (InprocFrame), no monitor, no segments; ipc/tcp: two-part
  // messages, a monitor for peer loss, large payloads as segments.
  ZmqEndpoint(std::shared_ptr<Context> context, void* socket, const LinkSpec& link, PortRef local,
              uint64_t max_payload_bytes, bool inproc, bool checksum_payloads)
      : Endpoint(link, local, max_payload_bytes, checksum_payloads),
        context_(std::move(context)),
        socket_(socket),
        inproc_(inproc),
        segment_sends_(!inproc && !BoundFrom(link, local).known()) {
    if (!inproc) {
      try {
        monitor_ = std::make_unique<Monitor>(context_->ctx, socket_, name());
      } catch (...) {
        zmq_close(socket_);
        throw;
      }
    }
  }

  ~ZmqEndpoint() override { Shutdown(Millis(0)); }

  void* socket() const { return socket_; }

  // From here on a lost connection is the peer vanishing (see Monitor::Arm).
  void ArmMonitor() {
    if (monitor_) monitor_->Arm();
  }

  // Why a peer may not have answered the hello: appended to the timeout message.
  std::string HandshakeNote() {
    const int failures = monitor_ ? monitor_->HandshakeFailures() : 0;
    if (failures == 0) return "";
    return " (" + std::to_string(failures) +
           " connection(s) on this link failed the CURVE handshake: the peer's key does not "
           "match)";
  }

  void SendFrame(RawFrame frame, Millis timeout) override {
    if (socket_ == nullptr) throw Error(ErrorCode::kDisconnected, name() + ": endpoint shut down");
    if (PeerGoneThrottled()) throw Disconnected();
    Deadline deadline{timeout, std::nullopt};
    if (inproc_) {
      auto* whole = new InprocFrame{.frame = std::move(frame)};
      zmq_msg_t message;
      if (zmq_msg_init_data(&message, whole, sizeof *whole, FreeInprocFrame, nullptr) != 0) {
        delete whole;
        throw Error(ErrorCode::kInternal, name() + ": zmq_msg_init_data: " + ZmqError());
      }
      SendBlocking(&message, deadline, 0);
      return;
    }
    zmq_msg_t header;
    zmq_msg_init_size(&header, frame.header.size());
    std::memcpy(zmq_msg_data(&header), frame.header.data(), frame.header.size());
    SendBlocking(&header, deadline, ZMQ_SNDMORE);
    const size_t size = frame.payload.size();
    if (segment_sends_ && size >= kSegmentFrom) {
      SendSegments(std::move(frame.payload), deadline);
      return;
    }
    zmq_msg_t payload;
    if (size == 0) {
      zmq_msg_init(&payload);
    } else {
      std::byte* data = frame.payload.data();
      std::unique_ptr<Payload::Owner> owner = frame.payload.Release();
      Payload::Owner* raw = owner.release();
      if (zmq_msg_init_data(&payload, data, size, FreeOwner, raw) != 0) {
        delete raw;
        throw Error(ErrorCode::kInternal, name() + ": zmq_msg_init_data: " + ZmqError());
      }
    }
    SendRest(&payload, 0);
  }

  std::optional<RawFrame> ReceiveFrame(Millis timeout) override {
    if (socket_ == nullptr) throw Error(ErrorCode::kDisconnected, name() + ": endpoint shut down");
    zmq_msg_t header;
    zmq_msg_init(&header);
    Deadline deadline{timeout, std::nullopt};
    if (!ReceiveBlocking(&header, deadline)) {
      zmq_msg_close(&header);
      return std::nullopt;
    }
    if (inproc_) return TakeInprocFrame(header);
    RawFrame frame;
    auto* h = static_cast<const std::byte*>(zmq_msg_data(&header));
    // Cap the copy: an oversized header is rejected by the decoder from its size alone.
    size_t hsize = std::min(zmq_msg_size(&header), kMaxHeaderBytes + 8);
    frame.header.assign(h, h + hsize);
    if (zmq_msg_size(&header) > hsize) frame.header.resize(kMaxHeaderBytes + 16);
    bool more = zmq_msg_more(&header) != 0;
    zmq_msg_close(&header);
    if (!more) return frame;  // no payload frame: the decoder reports the length mismatch
    auto owner = std::make_unique<ZmqMsgOwner>();
    if (zmq_msg_recv(&owner->msg, socket_, 0) < 0) {
      throw Error(ErrorCode::kDisconnected, name() + ": receive failed: " + ZmqError());
    }
    if (zmq_msg_more(&owner->msg) != 0) {
      // [header][segment tag 0][segment 0]: a segmented payload (or garbage with extra frames).
      auto part = std::make_unique<ZmqMsgOwner>();
      if (zmq_msg_recv(&part->msg, socket_, 0) < 0) {
        throw Error(ErrorCode::kDisconnected, name() + ": receive failed: " + ZmqError());
      }
      int parts = 3;
      for (bool extra = zmq_msg_more(&part->msg) != 0; extra; ++parts) extra = Drain();
      if (parts > 3) {
        throw Error(ErrorCode::kProtocol, name() + ": " + StepOf(frame.header) +
                                              ": received a message of " + std::to_string(parts) +
                                              " frames (expected 2, or 3 for a segmented payload)");
      }
      ReceiveSegments(frame, owner->msg, part->msg, timeout);
      return frame;
    }
    auto* data = static_cast<std::byte*>(zmq_msg_data(&owner->msg));
    size_t size = zmq_msg_size(&owner->msg);
    frame.payload = Payload(data, size, std::move(owner));
    return frame;
  }

  void Shutdown(Millis timeout) override {
    if (socket_ == nullptr) return;
    if (monitor_ && timeout.count() > 0 && !monitor_->PeerGone()) {
      // ipc/tcp: stays open until the peer took everything (see Context).
      context_->Linger(socket_, std::move(monitor_), Clock::now() + timeout);
      socket_ = nullptr;
      return;
    }
    if (monitor_) zmq_socket_monitor(socket_, nullptr, 0);
    int linger = static_cast<int>(timeout.count());
    zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(socket_);
    socket_ = nullptr;
    monitor_.reset();
  }

 private:
  // How long a blocked receive or send goes without looking at the monitor: the delay before a
  // vanished peer is reported.
  static constexpr Millis kMonitorSlice{50};
  static constexpr Millis kSendMonitorInterval{10};
  static constexpr uint32_t kSendMonitorEvery = 8;

  void SetTimeout(int option, Millis timeout, int& current) {
    int ms = static_cast<int>(timeout.count());
    if (ms != current) {
      SetInt(socket_, option, ms, name());
      current = ms;
    }
  }

  bool PeerGone() { return monitor_ && monitor_->PeerGone(); }

  // The frame of a one-part inproc message (InprocFrame), moved out; closes `message`. Anything
  // that is not one is kProtocol.
  RawFrame TakeInprocFrame(zmq_msg_t& message) {
    const size_t size = zmq_msg_size(&message);
    const bool more = zmq_msg_more(&message) != 0;
    auto* whole = static_cast<InprocFrame*>(zmq_msg_data(&message));
    uint64_t magic = 0;
    const InprocFrame* self = nullptr;
    if (size == sizeof(InprocFrame)) {
      std::memcpy(&magic, zmq_msg_data(&message), sizeof magic);
      std::memcpy(&self, static_cast<const std::byte*>(zmq_msg_data(&message)) + sizeof magic,
                  sizeof self);
    }
    if (more || magic != InprocFrame::kMagic || self != whole) {
      zmq_msg_close(&message);
      if (more) {
        while (Drain()) {
        }
      }
      throw Error(ErrorCode::kProtocol, name() + ": received a " + std::to_string(size) +
                                            "-byte message that is not a Lockstep inproc frame");
    }
    RawFrame frame = std::move(whole->frame);
    zmq_msg_close(&message);
    return frame;
  }

  // Sends the first part of a message (or a one-part message, `flags` 0) as raw ZeroMQ does: a
  // blocking send, which takes no system call while the link direction has room, in slices of at
  // most kMonitorSlice when there is a monitor to look at in between (a full direction whose peer
  // vanished). (Not a ZMQ_DONTWAIT try plus zmq_poll: on a full link that cost ZeroMQ extra
  // poll() calls per message.) Closes `part` and throws on failure.
  void SendBlocking(zmq_msg_t* part, Deadline& deadline, int flags) {
    const Millis timeout = deadline.timeout;
    for (;;) {
      const Millis left = deadline.Left();
      const Millis wait = monitor_ ? std::min(left, kMonitorSlice) : left;
      SetTimeout(ZMQ_SNDTIMEO, wait, send_timeout_);
      if (zmq_msg_send(part, socket_, flags) >= 0) return;
      const int err = zmq_errno();
      if (err != EAGAIN && err != EINTR) {
        zmq_msg_close(part);
        throw Error(ErrorCode::kDisconnected, name() + ": send failed: " + zmq_strerror(err));
      }
      deadline.Start(left - wait);
      if (PeerGone()) {
        zmq_msg_close(part);
        throw Disconnected();
      }
      if (left.count() == 0) {
        zmq_msg_close(part);
        throw Error(ErrorCode::kUnavailable,
                    name() + ": " + ToString(remote()) + " did not take the message within " +
                        std::to_string(timeout.count()) + " ms (its buffer is full or it is down)");
      }
    }
  }

  // Sends a later part of a message whose first part went through: ZeroMQ accepts the rest of a
  // message without waiting for room; it refuses it only when the peer's pipe went away in
  // between (the peer closed its end). Never a blocking send here: that would wait forever for a
  // pipe that is gone. Closes `part` and throws on failure.
  void SendRest(zmq_msg_t* part, int flags) {
    if (zmq_msg_send(part, socket_, flags | ZMQ_DONTWAIT) < 0) {
      int err = zmq_errno();
      zmq_msg_close(part);
      throw Error(ErrorCode::kDisconnected,
                  name() + ": " + ToString(remote()) + " closed its end during the send" +
                      (err == EAGAIN ? std::string() : std::string(": ") + zmq_strerror(err)));
    }
  }

  // The payload of a message whose header part went through, as segments (kSegmentFrom): tag 0
  // and segment 0 complete the first ZeroMQ message, each further segment is [tag k][segment k].
  // The segments point into the payload (no copy); its owner goes with the last of them.
  void SendSegments(Payload payload, Deadline& deadline) {
    const size_t size = payload.size();
    const size_t wanted =
        std::min<size_t>(kMaxSendSegments, (size + kSegmentTarget - 1) / kSegmentTarget);
    const size_t piece = ((size + wanted - 1) / wanted + 4095) / 4096 * 4096;
    const auto count = static_cast<uint32_t>((size + piece - 1) / piece);
    std::byte* data = payload.data();
    auto* shared = new SharedOwner{payload.Release(), {count}};
    uint32_t handed = 0;  // segments whose reference a zmq_msg_t holds (or already dropped)
    try {
      for (uint32_t k = 0; k < count; ++k) {
        std::vector<std::byte> tag_bytes = EncodeSegmentTag({k, count, size});
        zmq_msg_t tag;
        zmq_msg_init_size(&tag, tag_bytes.size());
        std::memcpy(zmq_msg_data(&tag), tag_bytes.data(), tag_bytes.size());
        if (k == 0) {
          SendRest(&tag, ZMQ_SNDMORE);
        } else {
          SendBlocking(&tag, deadline, ZMQ_SNDMORE);
        }
        const size_t off = size_t{k} * piece;
        zmq_msg_t part;
        ++handed;
        if (zmq_msg_init_data(&part, data + off, std::min(piece, size - off), FreeShared, shared) !=
            0) {
          FreeShared(nullptr, shared);
          throw Error(ErrorCode::kInternal, name() + ": zmq_msg_init_data: " + ZmqError());
        }
        SendRest(&part, 0);
      }
    } catch (...) {
      for (; handed < count; ++handed) FreeShared(nullptr, shared);
      throw;
    }
  }

  // Waits for the next part as raw ZeroMQ does: one blocking receive (no poll set to build), in
  // slices of at most kMonitorSlice when there is a monitor to look at in between. A queued
  // message is taken without a system call. (No ZMQ_DONTWAIT probe first: a probe that finds
  // nothing costs ZeroMQ two poll() calls before the real wait.) Messages that arrived before the
  // peer vanished are delivered first: the loss is reported only when nothing is left to read.
  // False after `deadline`.
  bool ReceiveBlocking(zmq_msg_t* part, Deadline& deadline) {
    for (;;) {
      const Millis left = deadline.Left();
      const Millis wait = monitor_ ? std::min(left, kMonitorSlice) : left;
      SetTimeout(ZMQ_RCVTIMEO, wait, receive_timeout_);
      if (zmq_msg_recv(part, socket_, 0) >= 0) return true;
      if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) {
        std::string why = ZmqError();
        zmq_msg_close(part);
        throw Error(ErrorCode::kDisconnected, name() + ": receive failed: " + why);
      }
      deadline.Start(left - wait);
      if (PeerGone()) {
        if (zmq_msg_recv(part, socket_, ZMQ_DONTWAIT) >= 0) return true;
        zmq_msg_close(part);
        throw Disconnected();
      }
      if (left.count() == 0) return false;
    }
  }

  // "step 12" from a header frame, for errors found below the header decoder.
  std::string StepOf(const std::vector<std::byte>& header) const {
    try {
      return "step " + std::to_string(DecodeFrameHeader(header, name(), UINT64_MAX).message.step);
    } catch (const Error&) {
      return "a frame with a garbled header";
    }
  }

  // Assembles a segmented payload into `frame`: `tag0` and `segment0` came with the header; the
  // other segments follow as [tag k][segment k] messages. Each segment is copied into the
  // tensor's buffer and, if the header says the payload is checked, checksummed while in cache;
  // the CRC goes to frame.payload_crc32c for Receive to compare with the header's. Any irregularity
  // (a garbled tag, a segment out of order, missing, too long or short, a tag that disagrees with
  // the first) is kProtocol naming the link and step; a segment that does not come is kUnavailable.
  void ReceiveSegments(RawFrame& frame, zmq_msg_t& tag0, zmq_msg_t& segment0, Millis timeout) {
    auto fail = [&](ErrorCode code, uint32_t index, uint32_t count, const std::string& why) {
      return Error(code, name() + ": " + StepOf(frame.header) + ": segment " +
                             std::to_string(index) + " of " + std::to_string(count) + ": " + why);
    };
    auto bytes = [](zmq_msg_t& m) {
      return std::span<const std::byte>(static_cast<const std::byte*>(zmq_msg_data(&m)),
                                        zmq_msg_size(&m));
    };
    const std::string context = name() + ": " + StepOf(frame.header);
    const SegmentTag first = DecodeSegmentTag(bytes(tag0), context, max_payload_bytes());
    if (first.index != 0) {
      throw fail(ErrorCode::kProtocol, first.index, first.count,
                 "came first (segment 0 was expected)");
    }
    // An unchecked payload (the header says so) is only copied; a garbled header is refused by
    // Receive whatever the payload.
    bool checked = true;
    try {
      checked = DecodeFrameHeader(frame.header, name(), UINT64_MAX).payload_checked;
    } catch (const Error&) {
    }
    Payload out = Payload::Uninitialized(first.total_bytes);
    size_t filled = 0;
    uint32_t crc = 0;
    auto take = [&](uint32_t index, std::span<const std::byte> segment) {
      if (segment.empty() || segment.size() > out.size() - filled) {
        throw fail(ErrorCode::kProtocol, index, first.count,
                   std::to_string(segment.size()) + " bytes, but " +
                       std::to_string(out.size() - filled) + " of the " +
                       std::to_string(out.size()) + " payload bytes remain");
      }
      if (checked) {
        crc = CopyWithCrc(out.data() + filled, segment.data(), segment.size(), crc);
      } else {
        std::memcpy(out.data() + filled, segment.data(), segment.size());
      }
      filled += segment.size();
    };
    take(0, bytes(segment0));
    const Millis wait = std::max(timeout, kSegmentWait);
    for (uint32_t k = 1; k < first.count; ++k) {
      ZmqMsgOwner tag;
      Deadline deadline{wait, std::nullopt};
      if (!ReceiveBlocking(&tag.msg, deadline)) {
        throw fail(
            ErrorCode::kUnavailable, k, first.count,
            "did not arrive within " + std::to_string(wait.count()) + " ms of the one before");
      }
      if (zmq_msg_more(&tag.msg) == 0) {
        throw fail(ErrorCode::kProtocol, k, first.count,
                   "missing: received a single-frame message of " +
                       std::to_string(zmq_msg_size(&tag.msg)) + " bytes instead");
      }
      SegmentTag got;
      try {
        got = DecodeSegmentTag(bytes(tag.msg), context, max_payload_bytes());
      } catch (const Error& e) {
        while (Drain()) {
        }
        throw fail(ErrorCode::kProtocol, k, first.count,
                   std::string("missing (the next message is not a segment: ") + e.what() + ")");
      }
      ZmqMsgOwner segment;
      if (zmq_msg_recv(&segment.msg, socket_, 0) < 0) {
        throw Error(ErrorCode::kDisconnected, name() + ": receive failed: " + ZmqError());
      }
      if (zmq_msg_more(&segment.msg) != 0) {
        while (Drain()) {
        }
        throw fail(ErrorCode::kProtocol, k, first.count, "has more than two frames");
      }
      if (got.index != k || got.count != first.count || got.total_bytes != first.total_bytes) {
        throw fail(ErrorCode::kProtocol, k, first.count,
                   "received segment " + std::to_string(got.index) + " of " +
                       std::to_string(got.count) + " of a " + std::to_string(got.total_bytes) +
                       "-byte payload instead (a segment was lost, repeated or reordered)");
      }
      take(k, bytes(segment.msg));
    }
    if (filled != out.size()) {
      throw fail(ErrorCode::kProtocol, first.count - 1, first.count,
                 "the segments hold " + std::to_string(filled) + " of " +
                     std::to_string(out.size()) + " payload bytes (truncated)");
    }
    frame.payload = std::move(out);
    if (checked) frame.payload_crc32c = crc;
  }

  // PeerGone for the send path, reading the monitor at most every kSendMonitorInterval (and the
  // clock every kSendMonitorEvery sends): a read that finds no event costs a poll() system call
  // inside ZeroMQ, as much as the rest of a small send. A loss already seen is reported at once; a
  // peer that stopped reading fills the link direction, and the blocked send then reads the monitor
  // every kMonitorSlice.
  bool PeerGoneThrottled() {
    if (!monitor_) return false;
    if (monitor_->Gone()) return true;
    // The clock is read every kSendMonitorEvery sends only (see Deadline).
    if (++sends_since_clock_ < kSendMonitorEvery) return false;
    sends_since_clock_ = 0;
    const auto now = Clock::now();
    if (now < next_send_monitor_read_) return false;
    next_send_monitor_read_ = now + kSendMonitorInterval;
    return monitor_->PeerGone();
  }

  Error Disconnected() const {
    return Error(ErrorCode::kDisconnected,
                 name() + ": peer chip " + std::to_string(remote().chip) + " disconnected");
  }

  // Receives and discards one extra part; returns whether more follow.
  bool Drain() {
    zmq_msg_t extra;
    zmq_msg_init(&extra);
    zmq_msg_recv(&extra, socket_, 0);
    bool more = zmq_msg_more(&extra) != 0;
    zmq_msg_close(&extra);
    return more;
  }

  std::shared_ptr<Context> context_;
  void* socket_;
  std::unique_ptr<Monitor> monitor_;
  int receive_timeout_ = -2;
  int send_timeout_ = -2;
  Clock::time_point next_send_monitor_read_{};
  uint32_t sends_since_clock_ = 0;
  const bool inproc_;  // frames travel whole (InprocFrame); else two parts
  // ipc/tcp, a direction without a known bound: large payloads leave as segments. A bounded
  // direction's receive queue is sized for its largest tensor, which therefore travels whole.
  const bool segment_sends_;
};

// Answers ZeroMQ's authentication requests (ZAP, RFC 27) for CURVE server sockets: accepts a
// client whose public key belongs to a known peer, refuses and logs anything else.
class ZapHandler {
 public:
  ZapHandler(void* ctx, std::set<std::string> allowed_z85,
             std::function<void(std::string_view)> log)
      : allowed_(std::move(allowed_z85)), log_(std::move(log)) {
    socket_ = zmq_socket(ctx, ZMQ_REP);
    if (zmq_bind(socket_, "inproc://zeromq.zap.01") != 0) {
      std::string why = ZmqError();
      zmq_close(socket_);
      throw Error(ErrorCode::kInternal, "transport: cannot bind the ZAP handler: " + why);
    }
    thread_ = std::thread([this] { Run(); });
  }

  ~ZapHandler() {
    stop_ = true;
    thread_.join();
    zmq_close(socket_);
  }

 private:
  static std::string Part(void* socket, bool& more) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    zmq_msg_recv(&m, socket, 0);
    std::string s(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
    more = zmq_msg_more(&m) != 0;
    zmq_msg_close(&m);
    return s;
  }

  void Run() {
    while (!stop_) {
      zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&item, 1, 50) <= 0) continue;
      std::vector<std::string> parts;
      bool more = true;
      while (more) parts.push_back(Part(socket_, more));
      // version, request id, domain, address, identity, mechanism, credentials...
      std::string status = "400";
      std::string text = "malformed ZAP request";
      if (parts.size() >= 7 && parts[5] == "CURVE" && parts[6].size() == 32) {
        char z85[41];
        zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(parts[6].data()), 32);
        if (allowed_.count(z85) != 0) {
          status = "200";
          text = "OK";
        } else {
          text = "unknown public key";
          if (log_) {
            log_("transport: refused a CURVE connection from " + parts[3] +
                 " with unknown public key " + z85);
          }
        }
      } else if (log_) {
        log_("transport: refused a connection without CURVE credentials");
      }
      std::string id = parts.size() > 1 ? parts[1] : "";
      const std::string reply[] = {"1.0", id, status, text, "", ""};
      for (int i = 0; i < 6; ++i) {
        zmq_send(socket_, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
      }
    }
  }

  void* socket_;
  std::set<std::string> allowed_;
  std::function<void(std::string_view)> log_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class ZmqTransport : public Transport {
 public:
  explicit ZmqTransport(const TransportOptions& options)
      : Transport(options), context_(std::make_shared<Context>()) {
    if (options.curve.enabled) {
      if (options.backend != "tcp") {
        throw InvalidInput("transport options: CURVE is only for the tcp backend, not '" +
                           options.backend + "'");
      }
      std::set<std::string> allowed;
      for (const auto& [chip, key] : options.curve.peer_public_keys) allowed.insert(key);
      zap_ = std::make_unique<ZapHandler>(context_->ctx, std::move(allowed), options.log);
    }
  }

  std::vector<std::unique_ptr<Endpoint>> OpenChip(uint32_t chip, const std::vector<LinkSpec>& links,
                                                  Millis connect_timeout) override {
    const TransportOptions& opt = options();
    // Every address is checked before the first socket opens, so a bad port rule or ipc path
    // fails the whole call cleanly.
    for (const LinkSpec& link : links) {
      PortRef local = LocalEnd(link, chip);
      PortRef remote = local == link.a ? link.b : link.a;
      CheckLinkSpec(link, opt);
      Address(link, std::min(local, remote));
    }
    std::vector<std::unique_ptr<ZmqEndpoint>> endpoints;
    std::vector<bool> binds;
    for (const LinkSpec& link : links) {
      PortRef local = LocalEnd(link, chip);
      PortRef remote = local == link.a ? link.b : link.a;
      bool bind = local < remote;
      void* socket = zmq_socket(context_->ctx, ZMQ_PAIR);
      if (socket == nullptr) {
        throw Error(ErrorCode::kInternal, LinkName(link) + ": zmq_socket: " + ZmqError());
      }
      const bool inproc = opt.backend == "inproc";
      endpoints.push_back(std::make_unique<ZmqEndpoint>(
          context_, socket, link, local, opt.max_payload_bytes, inproc, ChecksumsPayloads(opt)));
      binds.push_back(bind);
      Configure(socket, link, remote, bind);
      std::string address = Address(link, bind ? local : remote);
      int rc = bind ? zmq_bind(socket, address.c_str()) : zmq_connect(socket, address.c_str());
      if (rc != 0) {
        throw Error(bind ? ErrorCode::kUnavailable : ErrorCode::kInvalidInput,
                    LinkName(link) + ": cannot " + (bind ? "bind " : "connect to ") + address +
                        ": " + ZmqError());
      }
    }
    Handshake(endpoints, binds, connect_timeout);
    for (auto& e : endpoints) e->ArmMonitor();
    std::vector<std::unique_ptr<Endpoint>> out;
    for (auto& e : endpoints) out.push_back(std::move(e));
    return out;
  }

  ~ZmqTransport() override { zap_.reset(); }

 private:
  void Configure(void* socket, const LinkSpec& link, PortRef remote, bool bind) {
    const TransportOptions& opt = options();
    const std::string what = LinkName(link);
    // The marks of each direction (transport.h QueueDepthFor): the send mark keeps the promise
    // that Send does not block below the bound's messages (or queue_capacity); the receive mark
    // bounds the receiving end in bytes when the largest tensor is known. (ZeroMQ pipes report
    // reads back to the writer in batches of about mark / 2, and an inproc peer that connects
    // before the bind gets one pipe, not two, so a pipe can look full with half its mark unread.
    // ipc/tcp directions without a bound count segments, kMaxSendSegments per large tensor.)
    const QueueBound& out = BoundFrom(link, remote == link.a ? link.b : link.a);
    const QueueBound& in = BoundFrom(link, remote);
    SetInt(socket, ZMQ_SNDHWM, QueueDepthFor(out, opt).send, what);
    SetInt(socket, ZMQ_RCVHWM, QueueDepthFor(in, opt).receive, what);
    SetInt(socket, ZMQ_LINGER, 0, what);
    // Peers start in any order; retry a connect to a not-yet-bound end quickly.
    SetInt(socket, ZMQ_RECONNECT_IVL, 10, what);
    SetInt(socket, ZMQ_RECONNECT_IVL_MAX, 200, what);
    if (opt.backend != "inproc") {
      // A peer cannot make us allocate more than the largest legal frame: its direction's
      // largest tensor when the bound is known.
      const uint64_t largest = in.known()
                                   ? std::min<uint64_t>(static_cast<uint64_t>(in.max_message_bytes),
                                                        opt.max_payload_bytes)
                                   : opt.max_payload_bytes;
      int64_t max = static_cast<int64_t>(std::max<uint64_t>(largest, 1 << 16));
      zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &max, sizeof max);
    }
    if (!opt.curve.enabled) return;
    const CurveOptions& curve = opt.curve;
    if (curve.public_key.size() != 40 || curve.secret_key.size() != 40) {
      throw InvalidInput(what + ": CURVE keys must be 40-character Z85 strings");
    }
    if (bind) {
      SetInt(socket, ZMQ_CURVE_SERVER, 1, what);
      zmq_setsockopt(socket, ZMQ_ZAP_DOMAIN, "lockstep", 8);
      if (zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, curve.secret_key.c_str(), 40) != 0) {
        throw InvalidInput(what + ": invalid CURVE secret key: " + ZmqError());
      }
    } else {
      auto it = curve.peer_public_keys.find(remote.chip);
      if (it == curve.peer_public_keys.end()) {
        throw InvalidInput(what + ": no CURVE public key for peer chip " +
                           std::to_string(remote.chip));
      }
      if (zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, it->second.c_str(), 40) != 0 ||
          zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, curve.public_key.c_str(), 40) != 0 ||
          zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, curve.secret_key.c_str(), 40) != 0) {
        throw InvalidInput(what + ": invalid CURVE key: " + ZmqError());
      }
    }
  }

  // The tcp port the binding end `binder` of `link` listens on (transport.h: tcp_ports, else
  // tcp_base_port + chip * tcp_ports_per_chip + port); InvalidInput when it is not a valid port.
  int64_t TcpPort(const LinkSpec& link, PortRef binder) const {
    const TransportOptions& opt = options();
    auto listed = opt.tcp_ports.find(binder);
    if (listed != opt.tcp_ports.end()) {
      if (listed->second < 1 || listed->second > 65535) {
        throw InvalidInput(LinkName(link) + ": tcp_ports[" + ToString(binder) + "] is " +
                           std::to_string(listed->second) + " (valid: 1..65535)");
      }
      return listed->second;
    }
    const int64_t per_chip = opt.tcp_ports_per_chip;
    if (per_chip < 1 || opt.tcp_base_port < 1 || opt.tcp_base_port > 65535) {
      throw InvalidInput("transport options: tcp_base_port " + std::to_string(opt.tcp_base_port) +
                         " and tcp_ports_per_chip " + std::to_string(per_chip) +
                         " (valid: a port 1..65535 and at least 1)");
    }
    const std::string unlisted = " and " + ToString(binder) + " is not listed in tcp_ports";
    if (binder.port >= per_chip) {
      throw InvalidInput(LinkName(link) + ": tcp port rule tcp_base_port + chip * " +
                         std::to_string(per_chip) + " + port needs port < " +
                         std::to_string(per_chip) + ", not " + std::to_string(binder.port) +
                         unlisted + " (raise tcp_ports_per_chip or list the end in tcp_ports)");
    }
    const int64_t port = int64_t{opt.tcp_base_port} + int64_t{binder.chip} * per_chip + binder.port;
    if (port > 65535) {
      const int64_t last_chip = (65535 - opt.tcp_base_port - (per_chip - 1)) / per_chip;
      throw InvalidInput(
          LinkName(link) + ": tcp port of " + ToString(binder) + " would be " +
          std::to_string(opt.tcp_base_port) + " + " + std::to_string(binder.chip) + " * " +
          std::to_string(per_chip) + " + " + std::to_string(binder.port) + " = " +
          std::to_string(port) + " (> 65535)" + unlisted + "; the rule fits chips 0.." +
          std::to_string(std::max<int64_t>(last_chip, -1)) + ": set tcp_ports[" + ToString(binder) +
          "] to a free port of its host, or lower tcp_base_port / tcp_ports_per_chip");
    }
    return port;
  }

  // The address the binding end `binder` of `link` listens on.
  std::string Address(const LinkSpec& link, PortRef binder) {
    const TransportOptions& opt = options();
    PortRef lo = std::min(link.a, link.b);
    PortRef hi = std::max(link.a, link.b);
    std::string id = std::to_string(lo.chip) + "." + std::to_string(lo.port) + "-" +
                     std::to_string(hi.chip) + "." + std::to_string(hi.port);
    if (opt.backend == "inproc") return "inproc://lockstep-link-" + id;
    if (opt.backend == "ipc") {
      std::string path = opt.ipc_dir + "/lockstep-" + id + ".sock";
      if (path.size() > 100) {
        throw InvalidInput(LinkName(link) + ": ipc socket path '" + path + "' is " +
                           std::to_string(path.size()) +
                           " characters (at most 100; choose a shorter ipc_dir)");
      }
      return "ipc://" + path;
    }
    const int64_t port = TcpPort(link, binder);
    auto host = opt.tcp_hosts.find(binder.chip);
    return "tcp://" + (host == opt.tcp_hosts.end() ? std::string("127.0.0.1") : host->second) +
           ":" + std::to_string(port);
  }

  static RawFrame Hello(const ZmqEndpoint& e) {
    FrameHeader h;
    h.kind = FrameKind::kHello;
    h.message.src = e.local();
    h.message.dst = e.remote();
    RawFrame frame;
    frame.header = EncodeFrameHeader(h);
    return frame;
  }

  // Connecting ends say hello first; binding ends answer once they heard it. Both check that the
  // peer is the chip and port the link names, so miswired links fail here and not mid-run.
  void Handshake(std::vector<std::unique_ptr<ZmqEndpoint>>& endpoints,
                 const std::vector<bool>& binds, Millis timeout) {
    auto deadline = Clock::now() + timeout;
    std::vector<size_t> pending;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      if (!binds[i]) {
        // A hello that is not taken within the timeout means the peer never connected (inproc
        // blocks the send until the binding end exists): report it as such, naming the peer.
        try {
          endpoints[i]->SendFrame(Hello(*endpoints[i]), timeout);
        } catch (const Error& e) {
          if (e.code() != ErrorCode::kUnavailable) throw;
          throw Error(ErrorCode::kUnavailable,
                      PeerTimeoutMessage(endpoints[i]->link(), endpoints[i]->remote(), timeout) +
                          endpoints[i]->HandshakeNote());
        }
      }
      pending.push_back(i);
    }
    while (!pending.empty()) {
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() <= 0) {
        ZmqEndpoint& e = *endpoints[pending.front()];
        throw Error(ErrorCode::kUnavailable,
                    PeerTimeoutMessage(e.link(), e.remote(), timeout) + e.HandshakeNote());
      }
      std::vector<zmq_pollitem_t> items;
      for (size_t i : pending) items.push_back({endpoints[i]->socket(), 0, ZMQ_POLLIN, 0});
      int n =
          zmq_poll(items.data(), static_cast<int>(items.size()), std::min<long>(left.count(), 100));
      if (n < 0) throw Error(ErrorCode::kInternal, "transport: zmq_poll: " + ZmqError());
      std::vector<size_t> still;
      for (size_t k = 0; k < pending.size(); ++k) {
        size_t i = pending[k];
        if ((items[k].revents & ZMQ_POLLIN) == 0) {
          still.push_back(i);
          continue;
        }
        ZmqEndpoint& e = *endpoints[i];
        std::optional<RawFrame> frame = e.ReceiveFrame(Millis(0));
        if (!frame) {
          still.push_back(i);
          continue;
        }
        const std::string context = e.name() + ": at " + ToString(e.local()) + " during hello";
        FrameHeader h = DecodeFrameHeader(frame->header, context, 0);
        if (h.kind != FrameKind::kHello || h.message.src != e.remote() ||
            h.message.dst != e.local()) {
          throw Error(ErrorCode::kProtocol, context + ": peer introduced itself as " +
                                                ToString(h.message.src) + " -> " +
                                                ToString(h.message.dst));
        }
        if (binds[i]) e.SendFrame(Hello(e), timeout);
      }
      pending = std::move(still);
    }
  }

  std::shared_ptr<Context> context_;
  std::unique_ptr<ZapHandler> zap_;
};

}  // namespace

std::unique_ptr<Transport> CreateZmqTransport(const TransportOptions& options) {
  return std::make_unique<ZmqTransport>(options);
}

}  // namespace lockstep::transport
