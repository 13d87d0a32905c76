// The ZeroMQ control channel: a ROUTER socket for the listening end, a DEALER per connection.
// ZeroMQ stays in this file.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <deque>
#include <map>
#include <thread>
#include <zmq.hpp>

#include "ends.h"
#include "lockstep/common/error.h"
#include "lockstep/control/codec.h"

namespace lockstep::control {
namespace {

zmq::message_t ToFrame(const ControlMessage& message) {
  std::vector<std::byte> bytes = Encode(message);
  return zmq::message_t(bytes.data(), bytes.size());
}

// Linger bounds how long closing waits to flush (a shutdown or an error report to a peer that is
// still there); a peer that is gone never holds it longer.
void Quiet(zmq::socket_t& socket, int linger_ms) {
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::sndhwm, 0);  // shard chunks queue up; memory is bounded by the shards
  socket.set(zmq::sockopt::rcvhwm, 0);
  socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxControlBytes));
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

Millis Left(const Clock& clock, Clock::TimePoint deadline) {
  return std::max(Millis(0), std::chrono::duration_cast<Millis>(deadline - clock.Now()));
}

class ZmqChannel : public ControlChannel {
 public:
  ZmqChannel(const std::string& address, Clock& clock) : clock_(clock) {
    Quiet(socket_, 500);
    socket_.set(zmq::sockopt::sndhwm, kPeerQueue);
    socket_.set(zmq::sockopt::router_mandatory, 1);
    // A peer that reconnects (its connection dropped under load) keeps its routing id
    // (ZmqConnection sets one): the new connection takes the id over, so the peer stays known.
    socket_.set(zmq::sockopt::router_handover, 1);
    try {
      socket_.bind(address);
    } catch (const zmq::error_t& e) {
      throw InvalidInput("control address '" + address + "': cannot bind (" + e.what() +
                         "); want ipc://PATH or tcp://HOST:PORT");
    }
    address_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  const std::string& address() const override { return address_; }

  std::optional<Incoming> Receive(Millis timeout) override {
    const Clock::TimePoint deadline = clock_.Now() + timeout;
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    while (true) {
      Flush();
      // A backlog drains as peers read: come back soon to hand them more.
      const Millis wait =
          backlog_.empty() ? Left(clock_, deadline) : std::min(Left(clock_, deadline), Millis(1));
      if (Poll(&item, 1, wait) > 0) break;
      if (clock_.Now() >= deadline) return std::nullopt;
    }
    zmq::message_t identity, body;
    if (!socket_.recv(identity, zmq::recv_flags::none)) return std::nullopt;
    Incoming in;
    in.peer = identity.to_string();
    bool more = identity.more();
    int frames = 0;
    while (more) {
      zmq::message_t frame;
      (void)socket_.recv(frame, zmq::recv_flags::none);
      more = frame.more();
      if (frames++ == 0) body = std::move(frame);
    }
    if (frames != 1) {
      in.error = "malformed control message: " + std::to_string(frames) + " frames (want 1)";
      return in;
    }
    try {
      in.message = Decode(static_cast<const std::byte*>(body.data()), body.size(), "worker");
    } catch (const Error& e) {
      in.error = e.what();
    }
    return in;
  }

  bool Send(const std::string& peer, const ControlMessage& message) override {
    zmq::message_t frame = ToFrame(message);
    if (auto queued = backlog_.find(peer); queued != backlog_.end()) {
      queued->second.push_back(std::move(frame));
      return true;
    }
    switch (TrySend(peer, frame)) {
      case Outcome::kSent:
        return true;
      case Outcome::kFull:
        backlog_[peer].push_back(std::move(frame));
        return true;
      case Outcome::kGone:
        break;
    }
    return false;
  }

  bool Backlogged(const std::string& peer) const override { return backlog_.count(peer) != 0; }

  bool Drain(Millis timeout) override {
    const Clock::TimePoint deadline = clock_.Now() + timeout;
    Flush();
    while (!backlog_.empty() && clock_.Now() < deadline) {
      std::this_thread::sleep_for(Millis(1));
      Flush();
    }
    return backlog_.empty();
  }

 private:
  enum class Outcome { kSent, kFull, kGone };
  // Hands `frame` to ZeroMQ without waiting; kFull leaves it untouched.
  Outcome TrySend(const std::string& peer, zmq::message_t& frame) {
    try {
      if (!socket_.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return Outcome::kFull;
      }
      // The pipe took the routing frame, so it takes the body: the high-water mark counts
      // whole messages.
      (void)socket_.send(frame, zmq::send_flags::none);
      return Outcome::kSent;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return Outcome::kGone;
      throw Error(ErrorCode::kInternal, std::string("control socket: ") + e.what());
    }
  }

  void Flush() {
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      std::deque<zmq::message_t>& queue = it->second;
      while (!queue.empty()) {
        if (TrySend(it->first, queue.front()) == Outcome::kFull) break;
        // Sent, or the peer is gone (its liveness check names it): either way not ours now.
        queue.pop_front();
      }
      it = queue.empty() ? backlog_.erase(it) : std::next(it);
    }
  }

  Clock& clock_;
  zmq::context_t context_{1};
  zmq::socket_t socket_{context_, zmq::socket_type::router};
  std::string address_;
  // Per peer, the messages its full pipe did not take yet, oldest first. A peer with a backlog
  // gets everything newer appended behind it, so each peer still sees the send order.
  std::map<std::string, std::deque<zmq::message_t>> backlog_;
};

class PairOutbox : public ControlConnection::Outbox {
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

class ZmqConnection : public ControlConnection {
 public:
  ZmqConnection(const std::string& address, Clock& clock) : clock_(clock), address_(address) {
    Quiet(socket_, 500);
    // What the listener sends waits in its own backlog, not here: a worker buffers a few
    // messages (shard chunks) ahead of what it has read, never a whole shard.
    socket_.set(zmq::sockopt::rcvhwm, kPeerQueue);
    Quiet(inbox_, 0);
    // An explicit routing id, the same over reconnects. Without one the ROUTER gives every new
    // connection a fresh id, and a worker whose connection dropped after its register looked like
    // a stranger (its next heartbeat got a shutdown: issue #7's sanitized 64-process flake).
    static std::atomic<uint64_t> sockets{0};
    char host[64] = {};
    gethostname(host, sizeof(host) - 1);
    socket_.set(zmq::sockopt::routing_id, std::string(host) + "/" + std::to_string(getpid()) + "/" +
                                              std::to_string(sockets++));
    try {
      socket_.connect(address);
    } catch (const zmq::error_t& e) {
      throw InvalidInput("coordinator address '" + address + "': " + e.what() +
                         " (want ipc://PATH or tcp://HOST:PORT)");
    }
    // One inproc name per socket: the context is private, so the name only has to be unique here.
    inbox_.bind(kInbox);
  }

  void Send(const ControlMessage& message) override {
    socket_.send(ToFrame(message), zmq::send_flags::none);
  }

  std::unique_ptr<Outbox> MakeOutbox() override {
    return std::make_unique<PairOutbox>(context_, kInbox);
  }

  std::optional<ControlMessage> Receive(Millis timeout) override {
    const Clock::TimePoint deadline = clock_.Now() + timeout;
    while (true) {
      zmq::pollitem_t items[2] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                                  {inbox_.handle(), 0, ZMQ_POLLIN, 0}};
      if (Poll(items, 2, Left(clock_, deadline)) == 0) {
        if (clock_.Now() >= deadline) return std::nullopt;
        continue;
      }
      if (items[1].revents & ZMQ_POLLIN) {
        zmq::message_t frame;
        while (inbox_.recv(frame, zmq::recv_flags::dontwait)) {
          socket_.send(frame, zmq::send_flags::none);
        }
      }
      if (items[0].revents & ZMQ_POLLIN) {
        zmq::message_t body;
        (void)socket_.recv(body, zmq::recv_flags::none);
        return Decode(static_cast<const std::byte*>(body.data()), body.size(),
                      "coordinator at " + address_);
      }
    }
  }

 private:
  static constexpr const char* kInbox = "inproc://outbox";
  Clock& clock_;
  std::string address_;
  zmq::context_t context_{1};
  zmq::socket_t socket_{context_, zmq::socket_type::dealer};
  zmq::socket_t inbox_{context_, zmq::socket_type::pair};
};

}  // namespace

std::unique_ptr<ControlChannel> ListenZmq(const std::string& address, Clock& clock) {
  return std::make_unique<ZmqChannel>(address, clock);
}

std::unique_ptr<ControlConnection> ConnectZmq(const std::string& address, Clock& clock) {
  return std::make_unique<ZmqConnection>(address, clock);
}

}  // namespace lockstep::control
