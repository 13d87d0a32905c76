// The in-memory control channel: every end of an InMemoryNetwork shares one mutex and condition
// variable; frames are encoded and decoded exactly as on ZeroMQ. On a manual clock the network is
// a small discrete-event scheduler: an end that waits marks itself idle; when every end is idle,
// the clock jumps to the earliest deadline among them (see channel.h).
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "ends.h"
#include "lockstep/common/error.h"
#include "lockstep/control/codec.h"

namespace lockstep::control {

using Frame = std::vector<std::byte>;

struct InMemoryNetwork::State {
  explicit State(Clock& c) : clock(c), manual(dynamic_cast<ManualClock*>(&c)) {
    if (c.manual() && manual == nullptr) {
      throw InvalidInput("an in-memory network runs on the real clock or a ManualClock");
    }
  }

  // One per listening or connecting end. On a manual clock an end is idle while the thread that
  // used it last waits (on it, or on another end: one thread may drive several) and no delivery
  // has woken that wait; a new end is busy until a thread uses it, so an end handed to a thread
  // that has not started yet holds time still.
  struct End {
    std::optional<std::thread::id> user;
    bool woken = false;  // a delivery arrived while its thread waited on it
    Clock::TimePoint deadline;
  };
  struct Listener : End {
    std::string address;
    std::deque<std::pair<std::string, Frame>> inbox;  // (sender, frame)
  };
  struct Peer : End {
    std::string id;
    std::string address;  // the listener it talks to
    std::deque<Frame> inbox;
  };

  Clock& clock;
  ManualClock* manual;  // null: the clock moves by itself
  int subscription = -1;
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, Listener*> listeners;  // by address
  std::map<std::string, Peer*> peers;          // by id
  std::map<std::thread::id, End*> waiting;     // thread -> the end it waits on
  uint64_t next_peer = 0;

  ~State() {
    if (subscription >= 0) manual->Unsubscribe(subscription);
  }

  void Wake(End& end) {
    end.woken = true;
    changed.notify_all();
  }

  bool Idle(const End& e) const {
    if (!e.user) return false;
    auto it = waiting.find(*e.user);
    return it != waiting.end() && !(it->second == &e && e.woken);
  }

  bool AllIdle() const {
    for (const auto& [address, l] : listeners) {
      if (!Idle(*l)) return false;
    }
    for (const auto& [id, p] : peers) {
      if (!Idle(*p)) return false;
    }
    return true;
  }

  Clock::TimePoint EarliestDeadline() const {
    Clock::TimePoint t = Clock::TimePoint::max();
    for (const auto& [thread, end] : waiting) t = std::min(t, end->deadline);
    return t;
  }

  // Waits (the lock held) until `ready()` or `deadline` has passed on the clock; returns ready().
  template <typename Ready>
  bool Wait(std::unique_lock<std::mutex>& lock, End& self, Clock::TimePoint deadline,
            const Ready& ready) {
    const std::thread::id me = std::this_thread::get_id();
    self.user = me;
    if (manual == nullptr) {
      while (!ready()) {
        if (clock.Now() >= deadline) return false;
        changed.wait_until(lock, deadline);
      }
      return true;
    }
    self.deadline = deadline;
    waiting[me] = &self;
    struct Leave {
      State& s;
      std::thread::id me;
      ~Leave() { s.waiting.erase(me); }
    } leave{*this, me};
    while (true) {
      self.woken = false;
      if (ready()) return true;
      if (clock.Now() >= deadline) return false;
      if (AllIdle()) {
        // Nobody can act before the earliest deadline: time jumps there. The clock's listener
        // (below) takes the lock to notify, so it is released meanwhile.
        const Clock::TimePoint next = EarliestDeadline();
        lock.unlock();
        manual->AdvanceTo(next);
        lock.lock();
      } else {
        changed.wait(lock);
      }
    }
  }

  void Deliver(const std::string& address, const std::string& from, Frame frame) {
    auto it = listeners.find(address);
    if (it == listeners.end()) return;  // nobody listens (any more): lost, as on a dead socket
    it->second->inbox.emplace_back(from, std::move(frame));
    Wake(*it->second);
  }
};

namespace {

using State = InMemoryNetwork::State;

class MemChannel : public ControlChannel {
 public:
  MemChannel(std::shared_ptr<State> network, const std::string& address)
      : network_(std::move(network)) {
    self_.address = address;
    std::lock_guard lock(network_->mutex);
    if (!network_->listeners.emplace(address, &self_).second) {
      throw InvalidInput("control address '" + address + "': cannot bind (already in use)");
    }
  }
  ~MemChannel() override {
    std::lock_guard lock(network_->mutex);
    network_->listeners.erase(self_.address);
    network_->changed.notify_all();  // a waiter may now be the last one not idle
  }

  const std::string& address() const override { return self_.address; }

  std::optional<Incoming> Receive(Millis timeout) override {
    std::unique_lock lock(network_->mutex);
    const Clock::TimePoint deadline = network_->clock.Now() + timeout;
    if (!network_->Wait(lock, self_, deadline, [&] { return !self_.inbox.empty(); })) {
      return std::nullopt;
    }
    auto [peer, frame] = std::move(self_.inbox.front());
    self_.inbox.pop_front();
    lock.unlock();
    Incoming in;
    in.peer = std::move(peer);
    try {
      in.message = Decode(frame.data(), frame.size(), "worker");
    } catch (const Error& e) {
      in.error = e.what();
    }
    return in;
  }

  bool Send(const std::string& peer, const ControlMessage& message) override {
    Frame frame = Encode(message);
    std::lock_guard lock(network_->mutex);
    self_.user = std::this_thread::get_id();
    auto it = network_->peers.find(peer);
    if (it == network_->peers.end() || it->second->address != self_.address) return false;
    it->second->inbox.push_back(std::move(frame));
    network_->Wake(*it->second);
    return true;
  }

  bool Backlogged(const std::string& peer) const override {
    std::lock_guard lock(network_->mutex);
    auto it = network_->peers.find(peer);
    return it != network_->peers.end() && it->second->inbox.size() > kPeerQueue;
  }

  // What waits for a peer sits in the peer's own queue, which outlives this end: closing loses
  // nothing.
  bool Drain(Millis) override { return true; }

 private:
  std::shared_ptr<State> network_;
  State::Listener self_;
};

class MemOutbox : public ControlConnection::Outbox {
 public:
  MemOutbox(std::shared_ptr<State> network, std::string address, std::string id)
      : network_(std::move(network)), address_(std::move(address)), id_(std::move(id)) {}
  void Post(const ControlMessage& message) override {
    Frame frame = Encode(message);
    std::lock_guard lock(network_->mutex);
    network_->Deliver(address_, id_, std::move(frame));
  }

 private:
  std::shared_ptr<State> network_;
  std::string address_, id_;
};

class MemConnection : public ControlConnection {
 public:
  MemConnection(std::shared_ptr<State> network, const std::string& address)
      : network_(std::move(network)) {
    self_.address = address;
    std::lock_guard lock(network_->mutex);
    self_.id = "mem-peer-" + std::to_string(network_->next_peer++);
    network_->peers[self_.id] = &self_;
  }
  ~MemConnection() override {
    std::lock_guard lock(network_->mutex);
    network_->peers.erase(self_.id);
    network_->changed.notify_all();
  }

  void Send(const ControlMessage& message) override {
    Frame frame = Encode(message);
    std::lock_guard lock(network_->mutex);
    self_.user = std::this_thread::get_id();
    network_->Deliver(self_.address, self_.id, std::move(frame));
  }

  std::unique_ptr<Outbox> MakeOutbox() override {
    return std::make_unique<MemOutbox>(network_, self_.address, self_.id);
  }

  std::optional<ControlMessage> Receive(Millis timeout) override {
    std::unique_lock lock(network_->mutex);
    const Clock::TimePoint deadline = network_->clock.Now() + timeout;
    if (!network_->Wait(lock, self_, deadline, [&] { return !self_.inbox.empty(); })) {
      return std::nullopt;
    }
    Frame frame = std::move(self_.inbox.front());
    self_.inbox.pop_front();
    lock.unlock();
    return Decode(frame.data(), frame.size(), "coordinator at " + self_.address);
  }

 private:
  std::shared_ptr<State> network_;
  State::Peer self_;
};

}  // namespace

InMemoryNetwork::InMemoryNetwork(Clock& clock) : state_(std::make_shared<State>(clock)) {
  if (state_->manual != nullptr) {
    State* s = state_.get();
    state_->subscription = state_->manual->Subscribe([s] {
      std::lock_guard lock(s->mutex);
      s->changed.notify_all();
    });
  }
}

InMemoryNetwork::~InMemoryNetwork() = default;

Clock& InMemoryNetwork::clock() const { return state_->clock; }

std::unique_ptr<ControlChannel> ListenInMemory(const std::shared_ptr<State>& network,
                                               const std::string& address) {
  return std::make_unique<MemChannel>(network, address);
}

std::unique_ptr<ControlConnection> ConnectInMemory(const std::shared_ptr<State>& network,
                                                   const std::string& address) {
  return std::make_unique<MemConnection>(network, address);
}

}  // namespace lockstep::control
