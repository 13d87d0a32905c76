#include "lockstep/control/lag_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "lockstep/common/error.h"

namespace lockstep::control {
namespace {

constexpr int kSub = 8;  // buckets per power of two

size_t BucketOf(int64_t lag) {
  if (lag <= 0) return 0;
  const auto v = static_cast<uint64_t>(lag);
  const int e = 63 - std::countl_zero(v);
  const uint64_t sub = e >= 3 ? (v >> (e - 3)) & 7 : (v << (3 - e)) & 7;
  return 1 + static_cast<size_t>(e) * kSub + static_cast<size_t>(sub);
}

// The largest lag bucket `b` holds (b >= 1).
int64_t UpperBound(size_t b) {
  const size_t e = (b - 1) / kSub, sub = (b - 1) % kSub;
  if (e < 3) return static_cast<int64_t>(((kSub + sub + 1) << e) / kSub);
  if (e - 3 >= 59) return INT64_MAX;
  return static_cast<int64_t>(((kSub + sub + 1) << (e - 3)) - 1);
}

}  // namespace

void LagHistogram::Add(int64_t lag_ns) {
  const size_t b = BucketOf(lag_ns);
  if (buckets_.size() <= b) buckets_.resize(b + 1, 0);
  ++buckets_[b];
  ++count_;
  max_ = std::max(max_, lag_ns);
}

void LagHistogram::Merge(const LagHistogram& o) {
  if (buckets_.size() < o.buckets_.size()) buckets_.resize(o.buckets_.size(), 0);
  for (size_t b = 0; b < o.buckets_.size(); ++b) buckets_[b] += o.buckets_[b];
  count_ += o.count_;
  max_ = std::max(max_, o.max_);
}

int64_t LagHistogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  const auto want =
      static_cast<int64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_)));
  int64_t seen = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    seen += buckets_[b];
    if (seen >= std::max<int64_t>(1, want)) return b == 0 ? 0 : std::min(UpperBound(b), max_);
  }
  return max_;
}

LagHistogram LagHistogram::FromBuckets(std::vector<int64_t> buckets, int64_t max_ns) {
  LagHistogram h;
  for (int64_t n : buckets) {
    if (n < 0) throw InvalidInput("lag histogram: a negative count");
    h.count_ += n;
  }
  h.buckets_ = std::move(buckets);
  h.max_ = max_ns;
  return h;
}

}  // namespace lockstep::control
