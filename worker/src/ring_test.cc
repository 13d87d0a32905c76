#include "ring.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "lockstep/common/error.h"

namespace lockstep::worker::ring {
namespace {

// Every rank's chunk partials of one row-parallel product: values of very different magnitudes,
// so adding them in another order than the canonical tree changes the bits.
std::vector<model::Partial> Partials(int g, int64_t per_rank, int64_t rows, int64_t outputs,
                                     uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-12, 12);
  std::vector<model::Partial> out(static_cast<size_t>(g));
  for (int r = 0; r < g; ++r) {
    model::Partial& p = out[static_cast<size_t>(r)];
    p.rows = rows;
    p.out_count = outputs;
    p.first_chunk = r * per_rank;
    p.chunks = per_rank;
    p.values.resize(static_cast<size_t>(rows * outputs * per_rank));
    for (float& v : p.values) v = std::ldexp(mantissa(rng), exponent(rng));
  }
  return out;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Segment `seg` of outputs [b, e) around a ring of g as the runtime runs it: the rank after the
// segment's owner starts with its own node sums, every next rank merges its own, the owner
// finishes. Checks every message's nodes are what the receiver expects (RankCover).
std::vector<float> AroundTheRing(const std::vector<model::Partial>& parts, int seg, int64_t total,
                                 int64_t b, int64_t e, const std::vector<float>& bias) {
  const int g = static_cast<int>(parts.size());
  const int64_t per_rank = total / g;
  // Reduce-scatter step s: rank r sends ScatterSegment(r, s); the first sender of `seg` sends it
  // at step 0, so it is rank seg + 1.
  int sender = (seg + 1) % g;
  EXPECT_EQ(ScatterSegment(sender, 0, g), seg);
  NodeSums message = FromPartial(parts[static_cast<size_t>(sender)], total, b, e);
  for (int s = 0; s < g - 1; ++s) {
    EXPECT_EQ(message.nodes, RankCover(total, per_rank, ScatterRanks(sender, s, g)));
    const int receiver = (sender + 1) % g;
    message = Merge(message, FromPartial(parts[static_cast<size_t>(receiver)], total, b, e), total);
    sender = receiver;
    if (s + 1 < g - 1) {
      EXPECT_EQ(ScatterSegment(sender, s + 1, g), seg);
    }
  }
  EXPECT_EQ(sender, seg);  // the owner holds every chunk now
  return Finish(message, total, bias, b);
}

TEST(Ring, EverySegmentHasTheCanonicalBits) {
  for (int g : {3, 4, 5, 8, 16}) {
    for (int64_t per_rank : {1, 2, 3, 4}) {
      const int64_t total = g * per_rank, rows = 3, outputs = 2 * g + 1;
      const std::vector<model::Partial> parts =
          Partials(g, per_rank, rows, outputs, static_cast<uint64_t>(g * 100 + per_rank));
      std::vector<float> bias(static_cast<size_t>(outputs));
      for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.25f * static_cast<float>(i) - 1.0f;
      for (int seg = 0; seg < g; ++seg) {
        const int64_t b = outputs * seg / g, e = outputs * (seg + 1) / g;
        std::vector<float> want(static_cast<size_t>(rows * (e - b)));
        model::CombineRowParallel(parts, total, b, e, bias, want.data());
        EXPECT_TRUE(SameBits(AroundTheRing(parts, seg, total, b, e, bias), want))
            << "g " << g << " chunks per rank " << per_rank << " segment " << seg;
      }
    }
  }
}

// The test above would catch a running sum: adding the ranks' sums in ring order differs from
// the canonical tree for these values.
TEST(Ring, ARunningSumWouldChangeTheBits) {
  const int g = 5;
  const std::vector<model::Partial> parts = Partials(g, 3, 3, 11, 7);
  std::vector<float> want(33), naive(33, 0.0f);
  model::CombineRowParallel(parts, 15, 0, 11, {}, want.data());
  for (int k = 0; k < g; ++k) {  // ring order from rank 2, each rank's own chunks summed first
    const model::Partial& p = parts[static_cast<size_t>((2 + k) % g)];
    for (size_t i = 0; i < naive.size(); ++i) {
      naive[i] += model::TreeSum(std::span<const float>(p.values).subspan(i * 3, 3));
    }
  }
  EXPECT_FALSE(SameBits(naive, want));
}

TEST(Ring, MergeRefusesOverlapsAndFinishRefusesGaps) {
  const std::vector<model::Partial> parts = Partials(4, 2, 1, 4, 3);
  const NodeSums a = FromPartial(parts[1], 8, 0, 4);
  EXPECT_THROW(Merge(a, a, 8), Error);
  EXPECT_THROW(Finish(Merge(a, FromPartial(parts[2], 8, 0, 4), 8), 8, {}, 0), Error);
  NodeSums short_rows = FromPartial(parts[2], 8, 0, 3);
  EXPECT_THROW(Merge(a, short_rows, 8), Error);
}

TEST(Ring, SegmentsAndRanks) {
  // Reduce-scatter: rank j ends owning segment j; all-gather: every segment reaches every rank.
  const int g = 6;
  for (int r = 0; r < g; ++r) {
    EXPECT_EQ(ScatterSegment((r + 1) % g, 0, g), r);
    EXPECT_EQ(ScatterSegment(r, g - 2, g), (r + 1) % g);  // the last one it sends on
    std::vector<bool> seen(g, false);
    seen[static_cast<size_t>(r)] = true;
    for (int s = 0; s < g - 1; ++s)
      seen[static_cast<size_t>(GatherSegment((r + g - 1) % g, s, g))] = true;
    for (bool x : seen) EXPECT_TRUE(x) << "rank " << r;
  }
  EXPECT_EQ(ScatterRanks(1, 2, 4), (std::vector<int>{3, 0, 1}));
  // Ranks 3, 0, 1 of 4 with 2 chunks each: chunks 0-3 and 6-7, as the largest nodes.
  const std::vector<int> ranks = {3, 0, 1};
  EXPECT_EQ(RankCover(8, 2, ranks), (std::vector<model::TreeNode>{{0, 4}, {6, 8}}));
}

TEST(Ring, EmbeddingRowsArePickedFromTheirOwners) {
  const int tp = 3;
  const int64_t vocab = 10, hidden = 4;
  const std::vector<int32_t> tokens = {0, 4, 9, 3};  // owners 0, 1, 2, 0 (slices 0-2, 3-5, 6-9)
  std::vector<model::Partial> by_rank(tp);
  for (int r = 0; r < tp; ++r) {
    model::Partial& p = by_rank[static_cast<size_t>(r)];
    p.kind = model::PartialKind::kEmbedding;
    p.rows = 4;
    p.out_count = hidden;
    p.values.resize(16);
    for (size_t i = 0; i < 16; ++i) p.values[i] = static_cast<float>(100 * r + static_cast<int>(i));
  }
  std::vector<float> want(8), got(8, -1.0f);
  model::CombineEmbedding(by_rank, tokens, vocab, 1, 3, want.data());
  for (int r : {2, 0, 1})
    PickOwnRows(by_rank[static_cast<size_t>(r)], tokens, vocab, tp, r, 1, 3, got);
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace lockstep::worker::ring
