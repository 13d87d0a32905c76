#include "modulo_timeline.h"

#include <gtest/gtest.h>

#include "modulo.h"

namespace lockstep::schedule {
namespace {

TEST(ModuloTimeline, TakesTheEarliestGapThatEveryCopyFindsFree) {
  ModuloTimeline t(100);
  EXPECT_EQ(t.Reserve(10, 20), 10);    // [10, 30)
  EXPECT_EQ(t.Reserve(15, 10), 30);    // after it
  EXPECT_EQ(t.Reserve(110, 20), 140);  // folded: [110, 130) is [10, 30) again, [130, 140) too
  EXPECT_EQ(t.Reserve(90, 25), 160);   // [90, 115) would wrap onto [10, 30): next gap is 60..85
  // The copies of everything taken, shifted by multiples of 100, never meet.
  const std::vector<modulo::Interval> taken = {
      {10, 30, 0}, {30, 40, 1}, {140, 160, 2}, {160, 185, 3}};
  EXPECT_EQ(modulo::LargestOverlap(taken, 100).amount, 0);
}

TEST(ModuloTimeline, WrapsAroundThePeriodAndRefusesWhatCannotFit) {
  ModuloTimeline t(100);
  EXPECT_EQ(t.Reserve(80, 40), 80);  // [80, 100) and [0, 20)
  EXPECT_EQ(t.Reserve(0, 10), 20);
  EXPECT_EQ(t.Reserve(205, 10), 230);  // 200..230 taken
  EXPECT_EQ(t.Reserve(0, 101), -1);    // longer than the period
  EXPECT_EQ(t.Reserve(0, 50), -1);     // 40..80 is the only gap left and holds 40
  EXPECT_EQ(t.Reserve(0, 40), 40);
  EXPECT_EQ(t.Reserve(7, 0), 7);  // nothing to take
  ModuloTimeline unbounded;
  EXPECT_EQ(unbounded.Reserve(5, 1000), 5);
  EXPECT_EQ(unbounded.Reserve(5, 10), 1005);
}

}  // namespace
}  // namespace lockstep::schedule
