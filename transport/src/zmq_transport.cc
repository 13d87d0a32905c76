// The ZeroMQ backends (inproc, ipc, tcp): one PAIR socket per link end. A message is a two-part
// ZeroMQ message (header frame, payload frame); the payload buffer is given to ZeroMQ with a free
// callback on send and handed to the caller in place on receive, so tensors are not copied by
// Lockstep. Bounded buffers are ZeroMQ's high-water marks (counted in whole messages).
#include <zmq.h>

#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "backends.h"
#include "lockstep/common/error.h"
#include "lockstep/transport/frame.h"

namespace lockstep::transport {
namespace {

using Clock = std::chrono::steady_clock;

std::string ZmqError() { return zmq_strerror(zmq_errno()); }

// Owns the ZeroMQ context; endpoints share it so it is terminated after the last socket closes.
struct Context {
  void* ctx = zmq_ctx_new();
  ~Context() { zmq_ctx_term(ctx); }
};

// Keeps a received payload frame alive while the caller holds the Payload.
class ZmqMsgOwner : public Payload::Owner {
 public:
  ZmqMsgOwner() { zmq_msg_init(&msg); }
  ~ZmqMsgOwner() override { zmq_msg_close(&msg); }
  zmq_msg_t msg;
};

void FreeOwner(void* /*data*/, void* hint) { delete static_cast<Payload::Owner*>(hint); }

void SetInt(void* socket, int option, int value, const std::string& what) {
  if (zmq_setsockopt(socket, option, &value, sizeof value) != 0) {
    throw Error(ErrorCode::kInternal,
                what + ": zmq_setsockopt(" + std::to_string(option) + "): " + ZmqError());
  }
}

class ZmqEndpoint : public Endpoint {
 public:
  ZmqEndpoint(std::shared_ptr<Context> context, void* socket, const LinkSpec& link, PortRef local,
              uint64_t max_payload_bytes)
      : Endpoint(link, local, max_payload_bytes), context_(std::move(context)), socket_(socket) {}

  ~ZmqEndpoint() override { Shutdown(Millis(0)); }

  void* socket() const { return socket_; }

  void SendFrame(RawFrame frame, Millis timeout) override {
    if (socket_ == nullptr) throw Error(ErrorCode::kDisconnected, name() + ": endpoint shut down");
    SetTimeout(ZMQ_SNDTIMEO, timeout, send_timeout_);
    zmq_msg_t header;
    zmq_msg_init_size(&header, frame.header.size());
    std::memcpy(zmq_msg_data(&header), frame.header.data(), frame.header.size());
    if (zmq_msg_send(&header, socket_, ZMQ_SNDMORE) < 0) {
      int err = zmq_errno();
      zmq_msg_close(&header);
      if (err == EAGAIN) {
        throw Error(ErrorCode::kUnavailable,
                    name() + ": " + ToString(remote()) + " did not take the message within " +
                        std::to_string(timeout.count()) + " ms (its buffer is full or it is down)");
      }
      throw Error(ErrorCode::kDisconnected, name() + ": send failed: " + zmq_strerror(err));
    }
    zmq_msg_t payload;
    size_t size = frame.payload.size();
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
    // The first part went through, so ZeroMQ accepts the rest of the message without blocking.
    if (zmq_msg_send(&payload, socket_, 0) < 0) {
      std::string why = ZmqError();
      zmq_msg_close(&payload);
      throw Error(ErrorCode::kDisconnected, name() + ": send failed: " + why);
    }
  }

  std::optional<RawFrame> ReceiveFrame(Millis timeout) override {
    if (socket_ == nullptr) throw Error(ErrorCode::kDisconnected, name() + ": endpoint shut down");
    RawFrame frame;
    zmq_msg_t header;
    zmq_msg_init(&header);
    // Take a queued message without a poll system call; wait only when there is none.
    if (zmq_msg_recv(&header, socket_, ZMQ_DONTWAIT) < 0) {
      zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
      int n = zmq_poll(&item, 1, static_cast<long>(timeout.count()));
      if (n < 0) {
        zmq_msg_close(&header);
        throw Error(ErrorCode::kDisconnected, name() + ": poll failed: " + ZmqError());
      }
      if (n == 0 || zmq_msg_recv(&header, socket_, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&header);
        return std::nullopt;
      }
    }
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
    int parts = 2;
    while (zmq_msg_more(&owner->msg) != 0 && Drain()) ++parts;
    if (parts > 2) {
      throw Error(ErrorCode::kProtocol, name() + ": received a message of " +
                                            std::to_string(parts) + " frames (expected 2)");
    }
    auto* data = static_cast<std::byte*>(zmq_msg_data(&owner->msg));
    size_t size = zmq_msg_size(&owner->msg);
    frame.payload = Payload(data, size, std::move(owner));
    return frame;
  }

  void Shutdown(Millis timeout) override {
    if (socket_ == nullptr) return;
    int linger = static_cast<int>(timeout.count());
    zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(socket_);
    socket_ = nullptr;
  }

 private:
  void SetTimeout(int option, Millis timeout, int& current) {
    int ms = static_cast<int>(timeout.count());
    if (ms != current) {
      SetInt(socket_, option, ms, name());
      current = ms;
    }
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
  int send_timeout_ = -2;
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
      endpoints.push_back(
          std::make_unique<ZmqEndpoint>(context_, socket, link, local, opt.max_payload_bytes));
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
    std::vector<std::unique_ptr<Endpoint>> out;
    for (auto& e : endpoints) out.push_back(std::move(e));
    return out;
  }

  ~ZmqTransport() override { zap_.reset(); }

 private:
  void Configure(void* socket, const LinkSpec& link, PortRef remote, bool bind) {
    const TransportOptions& opt = options();
    const std::string what = LinkName(link);
    // ZeroMQ pipes report reads back to the writer in batches of about hwm / 2 (and an inproc
    // peer that connects before the bind gets one pipe, not two), so a pipe can look full with
    // only hwm / 2 unread. 2 * capacity + 2 (the hello) keeps room for queue_capacity messages.
    const int hwm = 2 * opt.queue_capacity + 2;
    SetInt(socket, ZMQ_SNDHWM, hwm, what);
    SetInt(socket, ZMQ_RCVHWM, hwm, what);
    SetInt(socket, ZMQ_LINGER, 0, what);
    // Peers start in any order; retry a connect to a not-yet-bound end quickly.
    SetInt(socket, ZMQ_RECONNECT_IVL, 10, what);
    SetInt(socket, ZMQ_RECONNECT_IVL_MAX, 200, what);
    if (opt.backend != "inproc") {
      // A peer cannot make us allocate more than the largest legal frame.
      int64_t max = static_cast<int64_t>(std::max<uint64_t>(opt.max_payload_bytes, 1 << 16));
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
    if (binder.port >= 16) {
      throw InvalidInput(LinkName(link) + ": tcp backend supports ports 0..15, not " +
                         std::to_string(binder.port));
    }
    int64_t port = int64_t{opt.tcp_base_port} + int64_t{binder.chip} * 16 + binder.port;
    if (opt.tcp_base_port <= 0 || port > 65535) {
      throw InvalidInput(LinkName(link) + ": tcp port " + std::to_string(port) +
                         " out of range (tcp_base_port " + std::to_string(opt.tcp_base_port) +
                         " + chip * 16 + port must be <= 65535)");
    }
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
                      PeerTimeoutMessage(endpoints[i]->link(), endpoints[i]->remote(), timeout));
        }
      }
      pending.push_back(i);
    }
    while (!pending.empty()) {
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() <= 0) {
        const ZmqEndpoint& e = *endpoints[pending.front()];
        throw Error(ErrorCode::kUnavailable, PeerTimeoutMessage(e.link(), e.remote(), timeout));
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
