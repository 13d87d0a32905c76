#include "control_socket.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
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
};

RouterSocket::RouterSocket(const std::string& address) : impl_(std::make_unique<Impl>()) {
  Quiet(impl_->socket, 500);
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
  try {
    impl_->socket.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    impl_->socket.send(ToFrame(message), zmq::send_flags::none);
    return true;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;
    throw Error(ErrorCode::kInternal, std::string("control socket: ") + e.what());
  }
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
