#include "lockstep/control/clock.h"

namespace lockstep::control {
namespace {

class SteadyClock : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

Clock& RealClock() {
  static SteadyClock clock;
  return clock;
}

ManualClock::ManualClock() : now_(TimePoint{} + std::chrono::hours(24)) {}

Clock::TimePoint ManualClock::Now() const {
  std::lock_guard lock(mutex_);
  return now_;
}

void ManualClock::Advance(Duration by) { AdvanceTo(Now() + by); }

void ManualClock::AdvanceTo(TimePoint when) {
  std::vector<std::pair<int, std::function<void()>>> listeners;
  {
    std::lock_guard lock(mutex_);
    if (when <= now_) return;
    now_ = when;
    listeners = listeners_;
  }
  for (const auto& [id, listener] : listeners) listener();
}

int ManualClock::Subscribe(std::function<void()> listener) {
  std::lock_guard lock(mutex_);
  listeners_.emplace_back(next_id_, std::move(listener));
  return next_id_++;
}

void ManualClock::Unsubscribe(int id) {
  std::lock_guard lock(mutex_);
  std::erase_if(listeners_, [&](const auto& l) { return l.first == id; });
}

}  // namespace lockstep::control
