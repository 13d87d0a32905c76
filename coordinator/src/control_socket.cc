#include "control_socket.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <deque>
#include <map>
#include <thread>
#include <zmq.hpp>

#include "wire.h"

namespace lockstep::coordinator {
namespace {

zmq::message_t ToFrame(const ControlMessage& message) {
  std::vector<std::byte> bytes = wire::Encode(message);
  return zmq::message_t(bytes.data(), bytes.size());
}

// Linger bounds how long closing waits to flush (a shutdown or an error report to a peer that is
// still there); a peer that is gone never holds it longer.
void Quiet(zmq::socket_t& socket, int linger_ms) {
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::sndhwm, 0);  // shard chunks queue up; memory is bounded by the shards
  socket.set(zmq::sockopt::rcvhwm, 0);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(wire::kMaxControlBytes));
}

// zmq::poll, with a signal (EINTR) counted as "nothing yet": the caller's wait loop goes round
// and sees whatever the signal handler set (lockstep run's SIGINT/SIGTERM).
int Poll(zmq::pollitem_t* items, size_t count, Millis timeout) {
  try {
    return zmq::poll(items, count, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    throw;
  }
}

}  // namespace

struct RouterSocket::Impl {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::router};
  // Per peer, the messages its full pipe did not take yet, oldest first. A peer with a backlog
  // gets everything newer appended behind it, so each peer still sees the send order.
  std::map<std::string, std::deque<zmq::message_t>> backlog;

  enum class Outcome { kSent, kFull, kGone };
  // Hands `frame` to ZeroMQ without waiting; kFull leaves it untouched.
  Outcome TrySend(const std::string& peer, zmq::message_t& frame) {
    try {
      if (!socket.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return Outcome::kFull;
      }
      // The pipe took the routing frame, so it takes the body: the high-water mark counts
      // whole messages.
      (void)socket.send(frame, zmq::send_flags::none);
      return Outcome::kSent;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return Outcome::kGone;
      throw Error(ErrorCode::kInternal, std::string("control socket: ") + e.what());
    }
  }

  void Flush() {
    for (auto it = backlog.begin(); it != backlog.end();) {
      std::deque<zmq::message_t>& queue = it->second;
      while (!queue.empty()) {
        if (TrySend(it->first, queue.front()) == Outcome::kFull) break;
        // Sent, or the peer is gone (its liveness check names it): either way not ours now.
        queue.pop_front();
      }
      it = queue.empty() ? backlog.erase(it) : std::next(it);
    }
  }
};

RouterSocket::RouterSocket(const std::string& address) : impl_(std::make_unique<Impl>()) {
  Quiet(impl_->socket, 500);
  impl_->socket.set(zmq::sockopt::sndhwm, kPeerQueue);
  impl_->socket.set(zmq::sockopt::router_mandatory, 1);
  // A worker that reconnects (its connection dropped under load) keeps its routing id
  // (DealerSocket sets one): the new connection takes the id over, so the worker stays known.
  impl_->socket.set(zmq::sockopt::router_handover, 1);
  try {
    impl_->socket.bind(address);
  } catch (const zmq::error_t& e) {
    throw InvalidInput("control address '" + address + "': cannot bind (" + e.what() +
                       "); want ipc://PATH or tcp://HOST:PORT");
  }
  address_ = impl_->socket.get(zmq::sockopt::last_endpoint);
}

RouterSocket::~RouterSocket() = default;

std::optional<RouterSocket::Incoming> RouterSocket::Receive(Millis timeout) {
  impl_->Flush();
  // A backlog drains as peers read: come back soon to hand them more.
  if (!impl_->backlog.empty()) timeout = std::min(timeout, Millis(1));
  zmq::pollitem_t item{impl_->socket.handle(), 0, ZMQ_POLLIN, 0};
  if (Poll(&item, 1, timeout) == 0) return std::nullopt;
  zmq::message_t identity, body;
  if (!impl_->socket.recv(identity, zmq::recv_flags::none)) return std::nullopt;
  Incoming in;
  in.peer = identity.to_string();
  bool more = identity.more();
  int frames = 0;
  while (more) {
    zmq::message_t frame;
    (void)impl_->socket.recv(frame, zmq::recv_flags::none);
    more = frame.more();
    if (frames++ == 0) body = std::move(frame);
  }
  if (frames != 1) {
    in.error = "malformed control message: " + std::to_string(frames) + " frames (want 1)";
    return in;
  }
  try {
    in.message = wire::Decode(static_cast<const std::byte*>(body.data()), body.size(), "worker");
  } catch (const Error& e) {
    in.error = e.what();
  }
  return in;
}

bool RouterSocket::Send(const std::string& peer, const ControlMessage& message) {
  zmq::message_t frame = ToFrame(message);
  if (auto queued = impl_->backlog.find(peer); queued != impl_->backlog.end()) {
    queued->second.push_back(std::move(frame));
    return true;
  }
  switch (impl_->TrySend(peer, frame)) {
    case Impl::Outcome::kSent:
      return true;
    case Impl::Outcome::kFull:
      impl_->backlog[peer].push_back(std::move(frame));
      return true;
    case Impl::Outcome::kGone:
      break;
  }
  return false;
}

bool RouterSocket::Drain(Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  impl_->Flush();
  while (!impl_->backlog.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(Millis(1));
    impl_->Flush();
  }
  return impl_->backlog.empty();
}

bool RouterSocket::Backlogged(const std::string& peer) const {
  return impl_->backlog.count(peer) != 0;
}

namespace {

class PairOutbox : public DealerSocket::Outbox {
 public:
  PairOutbox(zmq::context_t& context, const std::string& address)
      : socket_(context, zmq::socket_type::pair) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndhwm, 0);
    socket_.connect(address);
  }
  void Post(const ControlMessage& message) override {
    socket_.send(ToFrame(message), zmq::send_flags::none);
  }

 private:
  zmq::socket_t socket_;
};

}  // namespace

struct DealerSocket::Impl {
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};
  zmq::socket_t inbox{context, zmq::socket_type::pair};
  std::string inbox_address;
  bool outbox_made = false;
};

DealerSocket::DealerSocket(const std::string& address)
    : impl_(std::make_unique<Impl>()), address_(address) {
  Quiet(impl_->socket, 500);
  // What the coordinator sends waits in its own backlog, not here: a worker buffers a few
  // messages (shard chunks) ahead of what it has read, never a whole shard.
  impl_->socket.set(zmq::sockopt::rcvhwm, RouterSocket::kPeerQueue);
  Quiet(impl_->inbox, 0);
  // An explicit routing id, the same over reconnects. Without one the ROUTER gives every new
  // connection a fresh id, and a worker whose connection dropped after its register looked like
  // a stranger (its next heartbeat got a shutdown: issue #7's sanitized 64-process flake).
  static std::atomic<uint64_t> sockets{0};
  char host[64] = {};
  gethostname(host, sizeof(host) - 1);
  impl_->socket.set(zmq::sockopt::routing_id, std::string(host) + "/" + std::to_string(getpid()) +
                                                  "/" + std::to_string(sockets++));
  try {
    impl_->socket.connect(address);
  } catch (const zmq::error_t& e) {
    throw InvalidInput("coordinator address '" + address + "': " + e.what() +
                       " (want ipc://PATH or tcp://HOST:PORT)");
  }
  // One inproc name per socket: the context is private, so the name only has to be unique here.
  impl_->inbox_address = "inproc://outbox";
  impl_->inbox.bind(impl_->inbox_address);
}

DealerSocket::~DealerSocket() = default;

void DealerSocket::Send(const ControlMessage& message) {
  impl_->socket.send(ToFrame(message), zmq::send_flags::none);
}

std::unique_ptr<DealerSocket::Outbox> DealerSocket::MakeOutbox() {
  return std::make_unique<PairOutbox>(impl_->context, impl_->inbox_address);
}

std::optional<ControlMessage> DealerSocket::Pump(Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    zmq::pollitem_t items[2] = {{impl_->socket.handle(), 0, ZMQ_POLLIN, 0},
                                {impl_->inbox.handle(), 0, ZMQ_POLLIN, 0}};
    const auto left =
        std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (Poll(items, 2, std::max(left, Millis(0))) == 0) return std::nullopt;
    if (items[1].revents & ZMQ_POLLIN) {
      zmq::message_t frame;
      while (impl_->inbox.recv(frame, zmq::recv_flags::dontwait)) {
        impl_->socket.send(frame, zmq::send_flags::none);
      }
    }
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t body;
      (void)impl_->socket.recv(body, zmq::recv_flags::none);
      return wire::Decode(static_cast<const std::byte*>(body.data()), body.size(),
                          "coordinator at " + address_);
    }
  }
}

}  // namespace lockstep::coordinator
