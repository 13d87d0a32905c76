#include "lockstep/coordinator/batcher.h"

#include <gtest/gtest.h>

#include <map>

#include "lockstep/common/error.h"

namespace lockstep::coordinator {

using control::SlotResult;
using control::SlotWork;
using control::Step;

namespace {

// A fake sampling chip: token = request * 10 + sample_index, logits = {position}.
std::vector<SlotResult> Answer(const Step& step) {
  std::vector<SlotResult> out;
  for (const SlotWork& w : step.work) {
    out.push_back({w.slot,
                   w.request,
                   static_cast<int32_t>(w.request * 10 + w.sample_index),
                   {static_cast<float>(w.position)}});
  }
  return out;
}

TEST(Batcher, FifoAdmissionSlotReuseAndNoneLost) {
  BatcherOptions two;
  two.slots = 2;
  Batcher b(two);
  for (uint64_t id = 1; id <= 5; ++id)
    b.Submit({id, {1, 2, 3}, static_cast<int64_t>(id % 3 + 1), {}});
  std::map<uint64_t, Finished> done;
  std::vector<uint64_t> admitted;  // requests in the order they first ran
  std::map<int32_t, uint64_t> slot_of;
  int steps = 0;
  while (std::optional<Step> step = b.Next()) {
    ASSERT_LE(step->work.size(), 2u);
    EXPECT_EQ(step->index, steps);
    for (const SlotWork& w : step->work) {
      if (w.reset) {
        admitted.push_back(w.request);
        EXPECT_EQ(w.position, 0);
        EXPECT_EQ(w.tokens, (std::vector<int32_t>{1, 2, 3}));
        EXPECT_EQ(w.sample_index, 0);
        slot_of[w.slot] = w.request;
      } else {
        // Decode: the last sampled token at the next position, in the same slot.
        EXPECT_EQ(slot_of[w.slot], w.request);
        EXPECT_EQ(w.tokens.size(), 1u);
        EXPECT_EQ(w.tokens[0], static_cast<int32_t>(w.request * 10 + w.sample_index - 1));
        EXPECT_EQ(w.position, 3 + w.sample_index - 1);
      }
    }
    for (Finished& f : b.Complete(Answer(*step))) {
      EXPECT_TRUE(done.emplace(f.id, std::move(f)).second) << "finished twice";
    }
    ASSERT_LT(++steps, 100);
  }
  EXPECT_EQ(admitted, (std::vector<uint64_t>{1, 2, 3, 4, 5}));  // FIFO
  ASSERT_EQ(done.size(), 5u);
  for (const auto& [id, f] : done) {
    const int64_t n = static_cast<int64_t>(id % 3 + 1);
    ASSERT_EQ(static_cast<int64_t>(f.tokens.size()), n);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(f.tokens[static_cast<size_t>(i)], static_cast<int32_t>(id * 10 + i));
      EXPECT_EQ(f.logits[static_cast<size_t>(i)], (std::vector<float>{i == 0 ? 0.0f : 2.0f + i}));
    }
  }
  EXPECT_TRUE(b.idle());
}

TEST(Batcher, ZeroTokensFinishesAtOnceAndErrorsAreNamed) {
  BatcherOptions one;
  one.slots = 1;
  one.max_positions = 8;
  Batcher b(one);
  b.Submit({7, {1}, 0, {}});
  EXPECT_FALSE(b.idle());
  const std::vector<Finished> done = b.TakeDone();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].tokens.empty());
  EXPECT_FALSE(b.Next().has_value());
  EXPECT_THROW(b.Submit({8, {}, 1, {}}), Error);
  EXPECT_THROW(b.Submit({8, {1, 2, 3, 4, 5}, 4, {}}), Error);  // 9 positions > 8
  b.Submit({8, {1}, 2, {}});
  EXPECT_THROW(b.Submit({8, {1}, 2, {}}), Error);  // id in use
  const std::optional<Step> step = b.Next();
  ASSERT_TRUE(step.has_value());
  EXPECT_THROW(b.Next(), Error);        // the step is not complete
  EXPECT_THROW(b.Complete({}), Error);  // a result is missing
  BatcherOptions none;
  none.slots = 0;
  EXPECT_THROW(Batcher{none}, Error);
}

}  // namespace
}  // namespace lockstep::coordinator
