// LagHistogram: how late instructions started against their scheduled starts in a paced or
// virtual-time run (worker::ChipRunner::Run records one per chip; the run's end message carries
// its buckets; the coordinator merges the chips'). A plain value; not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace lockstep::control {

// How late instructions started against their scheduled starts (ns; an early start counts as
// 0): exact count and maximum, percentiles to within 1/8 of a power of two (log buckets), so
// histograms of many chips merge into the run's.
class LagHistogram {
 public:
  void Add(int64_t lag_ns);
  void Merge(const LagHistogram& other);
  int64_t count() const { return count_; }
  int64_t max_ns() const { return max_; }
  // The smallest bucket bound at or above `q` (0..1) of the lags; 0 when none or all on time.
  int64_t Percentile(double q) const;
  // Bucket counts: [0] on time, then 8 per power of two from 1 ns (what a report carries).
  const std::vector<int64_t>& buckets() const { return buckets_; }
  static LagHistogram FromBuckets(std::vector<int64_t> buckets, int64_t max_ns);

 private:
  std::vector<int64_t> buckets_;
  int64_t count_ = 0;
  int64_t max_ = 0;
};

}  // namespace lockstep::control
