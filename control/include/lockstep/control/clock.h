// The time the control plane reads. Everything above the transport that waits, times out or
// measures — the coordinator's heartbeats, stall and ready timeouts, failover timings, a worker's
// heartbeat timer, the control channels' deadlines — reads a Clock given in its options, never
// std::chrono::steady_clock directly, so tests run on a ManualClock: time moves only when the test
// (or the in-memory channel, when every party waits: see channel.h) moves it, and a test of a
// 3-second heartbeat timeout takes microseconds and never depends on the machine's load.
//
// Time read here is for liveness and reports only; it never shapes a schedule or an output.
// Thread-safety: both clocks may be read and advanced from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace lockstep::control {

using Millis = std::chrono::milliseconds;

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;
  virtual ~Clock() = default;
  // Never goes backwards.
  virtual TimePoint Now() const = 0;
  // True for a clock that moves only when told (ManualClock): waits on it cannot sleep in real
  // time; the in-memory channel advances it instead (channel.h).
  virtual bool manual() const { return false; }
};

// std::chrono::steady_clock. Lives as long as the process.
Clock& RealClock();

// A clock that stands still until Advance / AdvanceTo. Listeners (the in-memory network) are told
// after every move, so a party that waits for a deadline on this clock wakes when it passes.
class ManualClock : public Clock {
 public:
  // Starts at an arbitrary fixed point (not zero, so "long ago" arithmetic stays positive).
  ManualClock();
  TimePoint Now() const override;
  bool manual() const override { return true; }
  void Advance(Duration by);
  // Moves to `when` if it is later than now; otherwise nothing happens.
  void AdvanceTo(TimePoint when);
  // `listener` is called after every move, on the thread that moved the clock, without the
  // clock's lock held; the id unsubscribes it. A listener must be unsubscribed before it dies,
  // and the clock not moved while that happens.
  int Subscribe(std::function<void()> listener);
  void Unsubscribe(int id);

 private:
  mutable std::mutex mutex_;
  TimePoint now_;
  int next_id_ = 0;
  std::vector<std::pair<int, std::function<void()>>> listeners_;
};

}  // namespace lockstep::control
