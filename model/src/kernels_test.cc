#include "lockstep/model/kernels.h"

#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <stdexcept>
#include <vector>

namespace lockstep::model {
namespace {

// The canonical order written out plainly from its definition in kernels.h.
float ReferenceTree(const std::vector<float>& p, size_t begin, size_t end) {
  const size_t n = end - begin;
  if (n == 0) return 0.0f;
  if (n == 1) return p[begin];
  size_t m = 1;
  while (m * 2 < n) m *= 2;  // largest power of two below n (n/2 when n is a power of two)
  return ReferenceTree(p, begin, begin + m) + ReferenceTree(p, begin + m, end);
}

float ReferenceDot(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> partials;
  for (size_t c = 0; c < a.size(); c += 64) {
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = c; i < std::min(a.size(), c + 64); ++i) lanes[(i - c) % 8] += a[i] * b[i];
    partials.push_back(((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                       ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])));
  }
  return ReferenceTree(partials, 0, partials.size());
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng) * (1.0f + static_cast<float>(rng() % 1000));  // mixed scales
  return v;
}

uint32_t Bits(float f) { return std::bit_cast<uint32_t>(f); }

TEST(Kernels, TreeSumFollowsTheCanonicalDefinition) {
  for (size_t n = 0; n <= 300; ++n) {
    std::vector<float> v = Random(n, static_cast<uint32_t>(n));
    ASSERT_EQ(Bits(TreeSum(v)), Bits(ReferenceTree(v, 0, n))) << n;
  }
}

TEST(Kernels, DotAndSumFollowTheCanonicalOrder) {
  for (size_t n : {1u, 7u, 8u, 63u, 64u, 65u, 100u, 128u, 192u, 1000u, 4097u}) {
    std::vector<float> a = Random(n, 1), b = Random(n, 2), ones(n, 1.0f);
    const float want = ReferenceDot(a, b);
    EXPECT_EQ(Bits(Dot(a.data(), b.data(), static_cast<int64_t>(n))), Bits(want)) << n;
    EXPECT_EQ(Bits(Sum(a.data(), static_cast<int64_t>(n))), Bits(ReferenceDot(a, ones))) << n;
  }
  // The order matters: a plain left-to-right sum of these terms rounds differently.
  std::vector<float> a = Random(4096, 3), b = Random(4096, 4);
  float naive = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) naive += a[i] * b[i];
  EXPECT_NE(Bits(naive), Bits(Dot(a.data(), b.data(), 4096)));
}

TEST(Kernels, TensorParallelSubtreesReproduceTheDot) {
  const int64_t n = 1024;  // 16 chunks
  std::vector<float> a = Random(n, 5), b = Random(n, 6);
  const float whole = Dot(a.data(), b.data(), n);
  for (int64_t shards : {1, 2, 4, 8, 16}) {
    const int64_t per = n / shards;
    std::vector<float> shard_results;
    for (int64_t s = 0; s < shards; ++s) {
      std::vector<float> partials(static_cast<size_t>(per / kReductionChunk));
      ChunkPartials(a.data() + s * per, b.data() + s * per, per, partials);
      shard_results.push_back(TreeSum(partials));  // each chip reduces its own subtree
    }
    EXPECT_EQ(Bits(TreeSum(shard_results)), Bits(whole)) << shards;  // the collective
  }
}

TEST(Kernels, MatMulRowsDoNotDependOnTheBatch) {
  // Row blocks of 8 and leftovers, chunk counts that are and are not powers of two, short tails.
  for (const auto& [in, out] : std::vector<std::pair<int64_t, int64_t>>{
           {200, 11}, {709, 19}, {64, 8}, {1, 9}, {1024, 16}, {2816 + 33, 24}}) {
    std::vector<float> x = Random(5 * in, 7), w = Random(out * in, 8), bias = Random(out, 9);
    std::vector<float> y5(5 * out), y1(out);
    MatMulTransposed(x.data(), 5, w.data(), out, in, bias.data(), y5.data());
    for (int64_t r = 0; r < 5; ++r) {
      MatMulTransposed(x.data() + r * in, 1, w.data(), out, in, bias.data(), y1.data());
      for (int64_t o = 0; o < out; ++o) {
        const float want = ReferenceDot({x.begin() + r * in, x.begin() + (r + 1) * in},
                                        {w.begin() + o * in, w.begin() + (o + 1) * in}) +
                           bias[o];
        ASSERT_EQ(Bits(y5[r * out + o]), Bits(want)) << in << "x" << out << " " << r << "," << o;
        ASSERT_EQ(Bits(y1[o]), Bits(want)) << in << "x" << out << " " << r << "," << o;
      }
    }
  }
}

TEST(Kernels, BlockedChunkPartialsAreTheChunkPartialsOfEachProduct) {
  // Row blocks of 8 and leftovers, whole and short last chunks, one chunk and many.
  for (const auto& [in, out] : std::vector<std::pair<int64_t, int64_t>>{
           {200, 11}, {709, 19}, {64, 8}, {1, 9}, {1408, 16}, {512, 24}}) {
    const int64_t rows = 3, chunks = (in + kReductionChunk - 1) / kReductionChunk;
    std::vector<float> x = Random(rows * in, 12), w = Random(out * in, 13);
    std::vector<float> y(rows * out * chunks), want(chunks), product(rows * out);
    MatMulChunkPartials(x.data(), rows, w.data(), out, in, y.data());
    MatMulTransposed(x.data(), rows, w.data(), out, in, nullptr, product.data());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        ChunkPartials(x.data() + r * in, w.data() + o * in, in, want);
        const float* got = y.data() + (r * out + o) * chunks;
        for (int64_t k = 0; k < chunks; ++k) {
          ASSERT_EQ(Bits(got[k]), Bits(want[k])) << in << "x" << out << " " << r << "," << o;
        }
        ASSERT_EQ(Bits(TreeSum({got, static_cast<size_t>(chunks)})), Bits(product[r * out + o]))
            << in << "x" << out << " " << r << "," << o;
      }
    }
  }
}

TEST(Kernels, TreeSumRowsIsTheCanonicalTreeOfEachRow) {
  // Row counts below, at and past a block of 8; lengths that are and are not powers of two
  // (44: the down projection of an intermediate width of 2816).
  for (int64_t count : {1, 7, 8, 13, 24}) {
    for (int64_t n : {0, 1, 3, 8, 22, 44, 100}) {
      const std::vector<float> v = Random(count * n, 14);
      std::vector<float> out(count, -1.0f);
      TreeSumRows(v.data(), count, n, out.data());
      for (int64_t i = 0; i < count; ++i) {
        const std::vector<float> row(v.begin() + i * n, v.begin() + (i + 1) * n);
        ASSERT_EQ(Bits(out[i]), Bits(ReferenceTree(row, 0, row.size()))) << count << "," << n;
      }
      // Rows `stride` apart (a run of chunks inside wider rows): the same trees.
      const int64_t stride = n + 5;
      const std::vector<float> wide = Random(count * stride, 15);
      TreeSumRowsStrided(wide.data() + 2, count, n, stride, out.data());
      for (int64_t i = 0; i < count; ++i) {
        const std::vector<float> row(wide.begin() + i * stride + 2,
                                     wide.begin() + i * stride + 2 + n);
        ASSERT_EQ(Bits(out[i]), Bits(ReferenceTree(row, 0, row.size()))) << count << "," << n;
      }
    }
  }
}

TEST(Kernels, TreeNodesAreTheLargestSubtreesOfARange) {
  // 44 chunks (a down projection of 2816) split between 2 ranks: [0, 32) + [32, 44) at the top.
  EXPECT_EQ(TreeNodes(44, 0, 22), (std::vector<TreeNode>{{0, 16}, {16, 20}, {20, 22}}));
  EXPECT_EQ(TreeNodes(44, 22, 44), (std::vector<TreeNode>{{22, 24}, {24, 32}, {32, 44}}));
  EXPECT_EQ(TreeNodes(16, 4, 8), (std::vector<TreeNode>{{4, 8}}));  // aligned: one node
  EXPECT_EQ(TreeNodes(16, 0, 16), (std::vector<TreeNode>{{0, 16}}));
  EXPECT_TRUE(TreeNodes(0, 0, 0).empty());
  // Every range is tiled in order, and TreeSum of each node's chunks alone is a subtree of the
  // whole: combining the nodes gives ReferenceTree's bits (checked below).
  for (int64_t total = 1; total <= 70; ++total) {
    for (int64_t b = 0; b < total; b += 3) {
      for (int64_t e = b + 1; e <= total; e += 5) {
        int64_t next = b;
        for (const TreeNode& n : TreeNodes(total, b, e)) {
          ASSERT_EQ(n.begin, next) << total << " [" << b << "," << e << ")";
          ASSERT_GT(n.end, n.begin);
          next = n.end;
        }
        ASSERT_EQ(next, e) << total << " [" << b << "," << e << ")";
      }
    }
  }
}

TEST(Kernels, TreeCombineOfRanksNodeSumsIsTheCanonicalTree) {
  // Chunk partials of 3 outputs split among `ranks` equal ranges (a TP group); each rank sums
  // its TreeNodes alone; combining every rank's node sums equals the tree over all chunks.
  const int64_t count = 3;
  for (int64_t total : {1, 2, 6, 16, 22, 44, 60}) {
    for (int64_t ranks : {1, 2, 3, 4}) {
      if (total % ranks != 0) continue;
      const std::vector<float> chunks = Random(count * total, static_cast<uint32_t>(total));
      std::vector<TreeNode> nodes;
      std::vector<std::vector<float>> sums;
      for (int64_t r = 0; r < ranks; ++r) {
        for (const TreeNode& n : TreeNodes(total, r * total / ranks, (r + 1) * total / ranks)) {
          nodes.push_back(n);
          std::vector<float> v(count);
          for (int64_t i = 0; i < count; ++i) {
            v[i] = TreeSum(
                {chunks.data() + i * total + n.begin, static_cast<size_t>(n.end - n.begin)});
          }
          sums.push_back(v);
        }
      }
      std::vector<const float*> ptrs;
      for (const std::vector<float>& v : sums) ptrs.push_back(v.data());
      std::vector<float> out(count, -1.0f);
      TreeCombineRows(nodes, ptrs, total, count, out.data());
      for (int64_t i = 0; i < count; ++i) {
        const std::vector<float> row(chunks.begin() + i * total, chunks.begin() + (i + 1) * total);
        ASSERT_EQ(Bits(out[i]), Bits(ReferenceTree(row, 0, row.size())))
            << total << " chunks, " << ranks << " ranks";
      }
    }
  }
  // Nodes that are not the tree's, or that leave a gap, are refused.
  const float x[2] = {1.0f, 2.0f};
  const float* p[2] = {&x[0], &x[1]};
  float out = 0.0f;
  const std::vector<TreeNode> skewed = {{0, 3}, {3, 4}};  // the tree over 4 splits at 2
  EXPECT_THROW(TreeCombineRows(skewed, p, 4, 1, &out), std::invalid_argument);
  const std::vector<TreeNode> gap = {{0, 2}, {3, 4}};
  EXPECT_THROW(TreeCombineRows(gap, p, 4, 1, &out), std::invalid_argument);
}

TEST(Kernels, WeightedSumIsTheCanonicalSumPerColumn) {
  for (int64_t count : {1, 5, 64, 65, 300}) {
    const int64_t dim = 12, stride = 20;
    std::vector<float> w = Random(count, 10), v = Random(count * stride, 11), out(dim);
    std::vector<float> scratch(ScratchForWeightedSum(count, dim));
    WeightedSum(w.data(), v.data(), count, stride, dim, out.data(), scratch);
    for (int64_t d = 0; d < dim; ++d) {
      std::vector<float> column(count);
      for (int64_t p = 0; p < count; ++p) column[p] = v[p * stride + d];
      ASSERT_EQ(Bits(out[d]), Bits(Dot(w.data(), column.data(), count))) << count << "," << d;
    }
  }
}

}  // namespace
}  // namespace lockstep::model
