// Batcher::Cancel: a dropped request (its client gone, its stop reached) frees its slot for the
// next waiting request at once, keeps the tokens it had, and disturbs no other request.
#include <gtest/gtest.h>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/batcher.h"

namespace lockstep::coordinator {
namespace {

using control::SlotResult;
using control::SlotWork;
using control::Step;

std::vector<SlotResult> Answer(const Step& step) {
  std::vector<SlotResult> out;
  for (const SlotWork& w : step.work) {
    out.push_back({w.slot, w.request, static_cast<int32_t>(w.request * 10 + w.sample_index), {}});
  }
  return out;
}

TEST(BatcherCancel, FreesTheSlotForTheNextWaitingRequestAndKeepsTokens) {
  Batcher b({.slots = 1, .max_positions = 0, .keep_logits = false});
  b.Submit({1, {5}, 4, {}});
  b.Submit({2, {6}, 2, {}});
  b.Submit({3, {7}, 2, {}});
  std::optional<Step> s = b.Next();
  ASSERT_TRUE(s && s->work.size() == 1 && s->work[0].request == 1);
  EXPECT_TRUE(b.Complete(Answer(*s)).empty());
  // Between steps: request 1 leaves its slot with its one token; 3 leaves the queue.
  EXPECT_TRUE(b.Cancel(1));
  EXPECT_TRUE(b.Cancel(3));
  EXPECT_FALSE(b.Cancel(1));
  EXPECT_FALSE(b.Cancel(99));
  std::vector<Finished> done = b.TakeDone();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].id, 1u);
  EXPECT_EQ(done[0].tokens, std::vector<int32_t>{10});
  EXPECT_EQ(done[1].id, 3u);
  EXPECT_TRUE(done[1].tokens.empty());
  // The next step gives the freed slot to request 2, fresh (reset, its prompt).
  s = b.Next();
  ASSERT_TRUE(s && s->work.size() == 1);
  EXPECT_EQ(s->work[0].request, 2u);
  EXPECT_TRUE(s->work[0].reset);
  EXPECT_EQ(s->work[0].tokens, std::vector<int32_t>{6});
  EXPECT_THROW(b.Cancel(2), lockstep::Error);  // a step is pending
  EXPECT_TRUE(b.Complete(Answer(*s)).empty());
  s = b.Next();
  ASSERT_TRUE(s);
  std::vector<Finished> last = b.Complete(Answer(*s));
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].tokens, (std::vector<int32_t>{20, 21}));
  EXPECT_TRUE(b.idle());
}

}  // namespace
}  // namespace lockstep::coordinator
