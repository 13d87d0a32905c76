#include "lockstep/control/lag_histogram.h"

#include <gtest/gtest.h>

#include <vector>

namespace lockstep::control {
namespace {

TEST(LagHistogram, PercentilesWithinABucketAndMerges) {
  LagHistogram a;
  EXPECT_EQ(a.Percentile(0.5), 0);
  for (int i = 0; i < 90; ++i) a.Add(0);
  for (int64_t v : {1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 100000}) a.Add(v);
  EXPECT_EQ(a.count(), 100);
  EXPECT_EQ(a.max_ns(), 100000);
  EXPECT_EQ(a.Percentile(0.5), 0);  // most started on time
  const int64_t p95 = a.Percentile(0.95);
  EXPECT_GE(p95, 5000);
  EXPECT_LE(p95, 5000 + 5000 / 8 + 1);  // within 1/8 of the value
  EXPECT_EQ(a.Percentile(1.0), 100000);
  a.Add(-5);  // early counts as on time
  EXPECT_EQ(a.count(), 101);
  LagHistogram b = LagHistogram::FromBuckets(a.buckets(), a.max_ns());
  b.Merge(a);
  EXPECT_EQ(b.count(), 202);
  EXPECT_EQ(b.Percentile(0.95), a.Percentile(0.95));
  for (int64_t v : std::vector<int64_t>{1, 2, 3, 5, 7, 8, 9, 1023, 1024, 1025, INT64_MAX}) {
    LagHistogram one;
    one.Add(v);
    EXPECT_GE(one.Percentile(0.5), v == INT64_MAX ? INT64_MAX : v) << v;
    EXPECT_LE(one.Percentile(0.5), v) << v;  // capped at the maximum seen
  }
}

}  // namespace
}  // namespace lockstep::control
