#include <gtest/gtest.h>

#include <map>

#include "lockstep/coordinator/batcher.h"

namespace lockstep::coordinator {

using control::SlotResult;
using control::SlotWork;
using control::Step;

namespace {

// A fake sampling chip whose answer depends only on what a real one's would: the request, the
// sample index and the KV position after the step's tokens (not on how they got there).
std::vector<SlotResult> Answer(const Step& step) {
  std::vector<SlotResult> out;
  for (const SlotWork& w : step.work) {
    const int64_t end = w.position + static_cast<int64_t>(w.tokens.size());
    out.push_back({w.slot,
                   w.request,
                   static_cast<int32_t>(w.request * 100 + w.sample_index),
                   {static_cast<float>(end)}});
  }
  return out;
}

// Runs 5 requests over 2 slots; before the steps in `rewind_at` complete, the step is lost and
// the batcher rewound (a failover). Returns the finished requests by id.
std::map<uint64_t, Finished> RunWithRewinds(const std::vector<int64_t>& rewind_at,
                                            int64_t* replays) {
  Batcher b({.slots = 2, .max_positions = 0, .keep_logits = true});
  for (uint64_t id = 1; id <= 5; ++id) {
    b.Submit({id, {1, 2, static_cast<int32_t>(id)}, static_cast<int64_t>(id % 3 + 2), {}});
  }
  std::map<uint64_t, Finished> done;
  std::map<uint64_t, std::vector<int32_t>> generated;  // what each request has so far
  std::map<uint64_t, std::vector<int32_t>> prompt;
  size_t next_rewind = 0;
  int guard = 0;
  while (std::optional<Step> step = b.Next()) {
    EXPECT_LT(++guard, 200);
    if (guard >= 200) break;
    for (const SlotWork& w : step->work) {
      if (w.reset && w.position == 0 && generated[w.request].empty()) prompt[w.request] = w.tokens;
      if (w.reset && !generated[w.request].empty()) {
        // A replay: the prompt, then every token generated so far, from position 0.
        std::vector<int32_t> want = prompt[w.request];
        want.insert(want.end(), generated[w.request].begin(), generated[w.request].end());
        EXPECT_EQ(w.tokens, want);
        EXPECT_EQ(w.position, 0);
        EXPECT_EQ(w.sample_index, static_cast<int64_t>(generated[w.request].size()));
        ++*replays;
      }
    }
    if (next_rewind < rewind_at.size() && step->index == rewind_at[next_rewind]) {
      ++next_rewind;
      b.Rewind();
      continue;
    }
    const std::vector<SlotResult> results = Answer(*step);
    for (const SlotResult& r : results) generated[r.request].push_back(r.token);
    for (Finished& f : b.Complete(results)) {
      EXPECT_TRUE(done.emplace(f.id, std::move(f)).second) << "finished twice";
    }
  }
  EXPECT_TRUE(b.idle());
  return done;
}

TEST(BatcherRewind, ReplaysPromptAndTokensAndEndsIdenticalToAFaultFreeRun) {
  int64_t none = 0;
  const std::map<uint64_t, Finished> clean = RunWithRewinds({}, &none);
  EXPECT_EQ(none, 0);
  ASSERT_EQ(clean.size(), 5u);
  // Lost steps: a prefill (nothing generated yet), decode steps, two in a row.
  for (const std::vector<int64_t>& at :
       {std::vector<int64_t>{0}, {2}, {3, 4}, {1, 5, 9}, {6, 7, 8}}) {
    int64_t replays = 0;
    const std::map<uint64_t, Finished> faulty = RunWithRewinds(at, &replays);
    ASSERT_EQ(faulty.size(), clean.size());
    for (const auto& [id, f] : clean) {
      EXPECT_EQ(faulty.at(id).tokens, f.tokens) << "request " << id;
      EXPECT_EQ(faulty.at(id).logits, f.logits) << "request " << id;
    }
    if (at != std::vector<int64_t>{0}) {
      EXPECT_GT(replays, 0);
    }
  }
}

TEST(BatcherRewind, WithoutAStepInFlightKeepsWaitingRequestsWaiting) {
  Batcher b({.slots = 1, .max_positions = 0, .keep_logits = false});
  b.Submit({1, {5}, 2, {}});
  b.Submit({2, {6}, 1, {}});
  b.Rewind();  // nothing ran yet: nothing to replay
  std::optional<Step> s = b.Next();
  ASSERT_TRUE(s.has_value());
  ASSERT_EQ(s->work.size(), 1u);
  EXPECT_EQ(s->work[0].request, 1u);
  EXPECT_EQ(s->work[0].tokens, (std::vector<int32_t>{5}));
  b.Complete(Answer(*s));
  EXPECT_EQ(b.waiting(), 1u);
  b.Rewind();
  s = b.Next();
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->work[0].reset);
  EXPECT_EQ(s->work[0].tokens, (std::vector<int32_t>{5, 100}));
  EXPECT_EQ(b.waiting(), 1u);
}

}  // namespace
}  // namespace lockstep::coordinator
