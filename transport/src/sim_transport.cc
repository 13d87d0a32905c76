// The `sim` backend: links are shared in-process queues; time is virtual. Arrival times depend
// only on the send times and sizes on each link direction, never on thread interleaving, so a run
// is reproducible bit for bit.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>

#include "backends.h"
#include "lockstep/common/error.h"

namespace lockstep::transport {
namespace {

using Clock = std::chrono::steady_clock;

struct SimLink {
  LinkSpec spec;
  std::mutex mu;
  std::condition_variable cv;
  // Index 0 is the lower (chip, port) end; queue[i] holds frames sent by end i.
  std::deque<RawFrame> queue[2];
  int64_t free_at_ns[2] = {0, 0};  // virtual time the direction from end i is next free
  bool open[2] = {false, false};
  bool shut[2] = {false, false};
};

__extension__ using Uint128 = unsigned __int128;

// ceil(bytes * 1e9 / bytes_per_second), exact in 128-bit integers.
int64_t TransferNs(uint64_t bytes, int64_t bytes_per_second) {
  Uint128 num = static_cast<Uint128>(bytes) * 1'000'000'000u;
  auto bps = static_cast<Uint128>(bytes_per_second);
  return static_cast<int64_t>((num + bps - 1) / bps);
}

class SimEndpoint : public Endpoint {
 public:
  // A direction with a known bound holds exactly the messages it promises (QueueBound), else
  // queue_capacity.
  SimEndpoint(std::shared_ptr<SimLink> link, PortRef local, const TransportOptions& options)
      : Endpoint(link->spec, local, options.max_payload_bytes, ChecksumsPayloads(options)),
        link_(std::move(link)),
        side_(local == std::min(link_->spec.a, link_->spec.b) ? 0 : 1),
        capacity_(Capacity(BoundFrom(link_->spec, local), options)) {}

  ~SimEndpoint() override { Shutdown(Millis(0)); }

  void SendFrame(RawFrame frame, Millis timeout) override {
    std::unique_lock lock(link_->mu);
    std::deque<RawFrame>& q = link_->queue[side_];
    if (!link_->cv.wait_for(lock, timeout, [&] {
          return q.size() < capacity_ || link_->shut[1 - side_] || link_->shut[side_];
        })) {
      throw Error(ErrorCode::kUnavailable, name() + ": " + ToString(remote()) +
                                               " did not drain its buffer of " +
                                               std::to_string(capacity_) + " messages within " +
                                               std::to_string(timeout.count()) + " ms");
    }
    if (link_->shut[side_]) throw Error(ErrorCode::kDisconnected, name() + ": endpoint shut down");
    if (link_->shut[1 - side_]) {
      throw Error(ErrorCode::kDisconnected,
                  name() + ": peer " + ToString(remote()) + " shut its end down");
    }
    const LinkSpec& spec = link_->spec;
    int64_t start = std::max(frame.send_time_ns, link_->free_at_ns[side_]);
    int64_t done = start + TransferNs(frame.payload.size(), spec.bytes_per_second);
    link_->free_at_ns[side_] = done;
    frame.arrival_time_ns = done + spec.latency_ns;
    q.push_back(std::move(frame));
    link_->cv.notify_all();
  }

  std::optional<RawFrame> ReceiveFrame(Millis timeout) override {
    std::unique_lock lock(link_->mu);
    std::deque<RawFrame>& q = link_->queue[1 - side_];
    if (!link_->cv.wait_for(lock, timeout, [&] { return !q.empty() || link_->shut[1 - side_]; })) {
      return std::nullopt;
    }
    if (q.empty()) {
      // Everything the peer sent has been received and it is gone. A Close marker would have
      // been the last frame, so this peer vanished without closing.
      throw Error(ErrorCode::kDisconnected,
                  name() + ": peer " + ToString(remote()) + " went away without closing the link");
    }
    RawFrame frame = std::move(q.front());
    q.pop_front();
    link_->cv.notify_all();
    return frame;
  }

  void Shutdown(Millis) override {
    std::lock_guard lock(link_->mu);
    link_->shut[side_] = true;
    link_->cv.notify_all();
  }

 private:
  static size_t Capacity(const QueueBound& bound, const TransportOptions& options) {
    if (!bound.known()) return static_cast<size_t>(options.queue_capacity);
    return static_cast<size_t>(std::max<int64_t>(bound.messages, 1));
  }

  std::shared_ptr<SimLink> link_;
  int side_;
  size_t capacity_;
};

class SimTransport : public Transport {
 public:
  explicit SimTransport(const TransportOptions& options) : Transport(options) {}

  std::vector<std::unique_ptr<Endpoint>> OpenChip(uint32_t chip, const std::vector<LinkSpec>& links,
                                                  Millis connect_timeout) override {
    std::vector<std::shared_ptr<SimLink>> shared;
    std::vector<std::unique_ptr<Endpoint>> endpoints;
    for (const LinkSpec& spec : links) {
      PortRef local = LocalEnd(spec, chip);
      CheckLinkSpec(spec, options());
      if (spec.bytes_per_second <= 0 || spec.latency_ns < 0) {
        throw InvalidInput(LinkName(spec) + ": bytes_per_second " +
                           std::to_string(spec.bytes_per_second) + " and latency_ns " +
                           std::to_string(spec.latency_ns) + " (valid: > 0 and >= 0)");
      }
      std::shared_ptr<SimLink> link = Register(spec, local);
      shared.push_back(link);
      endpoints.push_back(std::make_unique<SimEndpoint>(link, local, options()));
    }
    // Like the socket backends, wait until every peer has opened its end.
    auto deadline = Clock::now() + connect_timeout;
    for (size_t i = 0; i < links.size(); ++i) {
      SimLink& link = *shared[i];
      int other = endpoints[i]->local() == std::min(link.spec.a, link.spec.b) ? 1 : 0;
      std::unique_lock lock(link.mu);
      if (!link.cv.wait_until(lock, deadline, [&] { return link.open[other]; })) {
        lock.unlock();
        // Withdraw this chip's ends so a later attempt can open them again.
        for (size_t k = 0; k < links.size(); ++k) {
          std::lock_guard withdraw(shared[k]->mu);
          shared[k]->open[endpoints[k]->local() == std::min(links[k].a, links[k].b) ? 0 : 1] =
              false;
        }
        throw Error(ErrorCode::kUnavailable,
                    PeerTimeoutMessage(links[i], endpoints[i]->remote(), connect_timeout));
      }
    }
    return endpoints;
  }

 private:
  std::shared_ptr<SimLink> Register(const LinkSpec& spec, PortRef local) {
    PortRef lo = std::min(spec.a, spec.b);
    PortRef hi = std::max(spec.a, spec.b);
    std::shared_ptr<SimLink> link;
    {
      std::lock_guard lock(mu_);
      auto& slot = links_[{lo, hi}];
      if (!slot) {
        slot = std::make_shared<SimLink>();
        slot->spec = spec;
      }
      link = slot;
    }
    std::lock_guard lock(link->mu);
    if (link->spec.latency_ns != spec.latency_ns ||
        link->spec.bytes_per_second != spec.bytes_per_second) {
      throw InvalidInput(LinkName(spec) + ": the two ends disagree on latency or bandwidth");
    }
    if (BoundFrom(link->spec, spec.a) != BoundFrom(spec, spec.a) ||
        BoundFrom(link->spec, spec.b) != BoundFrom(spec, spec.b)) {
      throw InvalidInput(LinkName(spec) + ": the two ends disagree on the link's queue bounds");
    }
    int side = local == lo ? 0 : 1;
    if (link->open[side])
      throw InvalidInput(LinkName(spec) + ": " + ToString(local) + " is already open");
    link->open[side] = true;
    link->cv.notify_all();
    return link;
  }

  std::mutex mu_;
  std::map<std::pair<PortRef, PortRef>, std::shared_ptr<SimLink>> links_;
};

}  // namespace

std::unique_ptr<Transport> CreateSimTransport(const TransportOptions& options) {
  return std::make_unique<SimTransport>(options);
}

}  // namespace lockstep::transport
