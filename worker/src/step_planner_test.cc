#include "step_planner.h"

#include <gtest/gtest.h>

#include "lockstep/common/error.h"

namespace lockstep::worker {
namespace {

Admission Entry(int64_t number, int64_t step, size_t prompt, int64_t max_new = 2) {
  Admission a;
  a.number = number;
  a.step = step;
  a.request = 100 + static_cast<uint64_t>(number);
  a.tokens.assign(prompt, 7);
  a.max_new = max_new;
  return a;
}

StepKind Prefill(int32_t slot, int32_t bucket, int64_t admission) {
  return {StepKind::kPrefill, slot, bucket, admission};
}

TEST(StepKind, RoundTripsAndRefusesGarbage) {
  for (const StepKind& k : {StepKind{}, StepKind{StepKind::kStop, 0, 0, 0}, Prefill(5, 3, 17),
                            Prefill(16383, 255, (int64_t{1} << 40) - 1)}) {
    EXPECT_NE(EncodeStepKind(k), 0u);
    EXPECT_EQ(DecodeStepKind(EncodeStepKind(k)), k);
  }
  EXPECT_EQ(DecodeStepKind(0), std::nullopt);
  EXPECT_THROW(DecodeStepKind(uint64_t{1} << 62 | 5), Error);  // a decode step with a slot
  EXPECT_THROW(DecodeStepKind(uint64_t{3} << 62 | 1), Error);  // a stop with an admission
  EXPECT_THROW(EncodeStepKind(Prefill(16384, 0, 0)), Error);
}

// A batch: the first admissions fill the slots one prefill step each, the rest wait for slots to
// free, the run stops once the closed log is drained; prompts go to the smallest bucket.
TEST(StepPlanner, FillsFreeSlotsInLogOrderThenStops) {
  StepPlanner p(2, {16, 64}, 1);
  for (int64_t n = 0; n < 3; ++n) EXPECT_EQ(p.Offer(Entry(n, 1, n == 1 ? 40 : 8)), std::nullopt);
  EXPECT_TRUE(p.Offer(Entry(3, 0, 8)).has_value());  // step 0 is never a prefill
  p.Close();
  EXPECT_EQ(p.next_step(), 1);  // step 0 is the empty decode step every chip knows
  EXPECT_EQ(p.Decide(), Prefill(0, 0, 0));
  EXPECT_EQ(p.Decide(), Prefill(1, 1, 1));  // 40 tokens: the 64 bucket
  EXPECT_EQ(p.Decide(), StepKind{});        // both slots busy: decode
  p.Free(1);
  EXPECT_EQ(p.Decide(), Prefill(1, 0, 2));  // the freed slot takes the next entry
  p.Free(0);
  EXPECT_EQ(p.Decide(), StepKind{});
  p.Free(1);
  EXPECT_EQ(p.Decide(), (StepKind{StepKind::kStop, 0, 0, 0}));
  EXPECT_EQ(p.next_step(), 7);
}

// Serving: with nothing to do and the log open the planner asks to wait; an admission naming a
// later step waits for it (empty decode steps meanwhile); one naming a decided step is refused
// and may come again later, and the entries behind it wait for it.
TEST(StepPlanner, NamedStepsAreNeverAppliedLate) {
  StepPlanner p(1, {16}, 2);
  EXPECT_EQ(p.Decide(), std::nullopt);
  EXPECT_EQ(p.next_step(), 2);
  EXPECT_EQ(p.Offer(Entry(0, 4, 3)), std::nullopt);
  EXPECT_EQ(p.Decide(), StepKind{});        // step 2: decode, nothing runs yet
  EXPECT_EQ(p.Decide(), StepKind{});        // step 3
  EXPECT_EQ(p.Decide(), Prefill(0, 0, 0));  // step 4, as named
  const std::optional<std::string> late = p.Offer(Entry(1, 3, 3));
  ASSERT_TRUE(late.has_value());
  EXPECT_NE(late->find("names step 3, already decided (steps up to 4)"), std::string::npos)
      << *late;
  EXPECT_TRUE(p.Offer(Entry(2, 9, 3)).has_value());  // 1 is next in the log
  EXPECT_EQ(p.Offer(Entry(1, 6, 3)), std::nullopt);
  EXPECT_EQ(p.Decide(), StepKind{});  // step 5: the slot is busy
  p.Free(0);
  EXPECT_EQ(p.Decide(), Prefill(0, 0, 1));  // step 6
  p.Free(0);
  EXPECT_THROW(p.Free(0), Error);  // freed twice
}

TEST(StepPlanner, RefusesWhatNoProgramTakes) {
  StepPlanner p(1, {16}, 1);
  EXPECT_NE(
      p.Offer(Entry(0, 1, 17))->find("17 tokens to prefill; the prefill programs take 1 to 16"),
      std::string::npos);
  EXPECT_TRUE(p.Offer(Entry(0, 1, 0)).has_value());
  EXPECT_TRUE(p.Offer(Entry(0, 1, 4, 0)).has_value());
  EXPECT_THROW(p.Free(0), Error);  // nothing occupies it
  EXPECT_THROW(StepPlanner(0, {16}, 1), Error);
}

}  // namespace
}  // namespace lockstep::worker
