// An Endpoint wrapper whose waits end early when a flag is raised: failover must take a worker
// out of a step that waits on a link to a dead chip at once, not after the step timeout. A
// receive waits on the inner endpoint in short slices and checks the flag between them; a send
// checks it first. Raising the flag makes the next wait throw Error(kDisconnected, "... step
// abandoned"). Private to the worker library (the agent uses it). Thread-safety: as
// Endpoint; the flag may be raised from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>

#include "lockstep/common/error.h"
#include "lockstep/transport/endpoint.h"

namespace lockstep::worker {

class CancellableEndpoint : public transport::Endpoint {
 public:
  CancellableEndpoint(std::unique_ptr<transport::Endpoint> inner, const std::atomic<bool>& cancel)
      : Endpoint(inner->link(), inner->local(), inner->max_payload_bytes()),
        inner_(std::move(inner)),
        cancel_(cancel) {}

  void SendFrame(transport::RawFrame frame, transport::Millis timeout) override {
    Check();
    inner_->SendFrame(std::move(frame), timeout);
  }

  std::optional<transport::RawFrame> ReceiveFrame(transport::Millis timeout) override {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point deadline = Clock::now() + timeout;
    while (true) {
      Check();
      const auto left = std::chrono::duration_cast<transport::Millis>(deadline - Clock::now());
      const transport::Millis slice = std::clamp(left, transport::Millis(0), kSlice);
      if (std::optional<transport::RawFrame> f = inner_->ReceiveFrame(slice)) return f;
      if (Clock::now() >= deadline) return std::nullopt;
    }
  }

  void Shutdown(transport::Millis timeout) override { inner_->Shutdown(timeout); }

 private:
  static constexpr transport::Millis kSlice{20};
  void Check() const {
    if (cancel_.load()) throw Error(ErrorCode::kDisconnected, name() + ": step abandoned");
  }
  std::unique_ptr<transport::Endpoint> inner_;
  const std::atomic<bool>& cancel_;
};

}  // namespace lockstep::worker
