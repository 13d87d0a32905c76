// Wrap-around geometry of a modulo schedule: the validator checks with it that a body's
// reservations, folded modulo the slot stride, do not meet (so no two copies do). Pure
// arithmetic on intervals, no bookkeeping.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace lockstep::schedule::modulo {

struct Interval {
  int64_t start = 0;
  int64_t end = 0;
  int32_t id = 0;  // the caller's name for it (an instruction index)
};

struct Overlap {
  int64_t amount = 0;  // 0 = none: the intervals and all their copies shifted by k x period
                       // (k != 0) are pairwise disjoint
  int32_t first = -1;  // the two intervals that collide (ids)
  int32_t second = -1;
};

// The largest collision among `intervals` (disjoint within one period's body, each on one
// resource) repeated every `period`. An interval longer than the period collides with itself.
inline Overlap LargestOverlap(const std::vector<Interval>& intervals, int64_t period) {
  Overlap worst;
  std::vector<std::pair<int64_t, const Interval*>> folded;
  folded.reserve(intervals.size());
  for (const Interval& x : intervals) {
    if (x.end <= x.start) continue;
    if (x.end - x.start > period && x.end - x.start - period > worst.amount) {
      worst = {x.end - x.start - period, x.id, x.id};
    }
    folded.push_back({x.start % period, &x});
  }
  std::sort(folded.begin(), folded.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second->id < b.second->id;
  });
  for (size_t i = 0; i < folded.size(); ++i) {
    const auto& [at, x] = folded[i];
    const bool wraps = i + 1 == folded.size();
    const auto& next = wraps ? folded.front() : folded[i + 1];
    if (wraps && folded.size() == 1) break;
    const int64_t next_at = next.first + (wraps ? period : 0);
    const int64_t over = at + (x->end - x->start) - next_at;
    if (over > worst.amount) worst = {over, x->id, next.second->id};
  }
  return worst;
}

}  // namespace lockstep::schedule::modulo
