// A resource's reservation table folded modulo a period: an interval [t, t + d) taken in one copy
// is taken at t + k x period in every copy, so copies of a pass scheduled against it never meet
// on the resource. With a period longer than the pass it is a plain first-fit timeline.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

namespace lockstep::schedule {

class ModuloTimeline {
 public:
  explicit ModuloTimeline(int64_t period = kUnbounded) : period_(period) {}

  // A period no pass reaches: the table does not fold.
  static constexpr int64_t kUnbounded = int64_t{1} << 60;

  // Takes the earliest [t, t + duration) with t >= ready whose fold meets no taken interval and
  // returns t; -1 when none exists (duration > period, or no folded gap is long enough). A zero
  // duration takes nothing and returns `ready`.
  int64_t Reserve(int64_t ready, int64_t duration) {
    if (duration <= 0) return ready;
    if (duration > period_) return -1;
    const int64_t r = ready % period_;
    const int64_t base = ready - r;
    // Walk the taken intervals in folded order from r, unfolded over up to three rounds.
    int64_t t = r;
    auto it = busy_.upper_bound(r);
    if (it != busy_.begin() && std::prev(it)->second > r) --it;
    int64_t round = 0;
    while (t - r < period_) {
      if (it == busy_.end()) {
        ++round;
        it = busy_.begin();
        if (it == busy_.end() || round > 2) break;
      }
      const int64_t s = it->first + round * period_;
      const int64_t e = it->second + round * period_;
      if (s >= t + duration) break;  // the gap before this interval is long enough
      if (e > t) t = e;
      ++it;
    }
    if (t - r >= period_) return -1;
    Take(t % period_, duration);
    return base + t;
  }

  int64_t period() const { return period_; }

 private:
  void Take(int64_t at, int64_t duration) {
    if (at + duration <= period_) {
      busy_.emplace(at, at + duration);
    } else {
      busy_.emplace(at, period_);
      busy_.emplace(0, at + duration - period_);
    }
  }

  int64_t period_;
  std::map<int64_t, int64_t> busy_;  // folded start -> end, disjoint, within [0, period)
};

}  // namespace lockstep::schedule
