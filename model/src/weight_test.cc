#include "lockstep/model/weight.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "int8_product.h"
#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"

namespace lockstep::model {
namespace {

uint32_t Bits(float f) { return std::bit_cast<uint32_t>(f); }

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng) * scale * (1.0f + static_cast<float>(rng() % 8));
  return v;
}

// weight.h's definition written out plainly, one output at a time, independently of the kernels.
float ReferenceTree(const std::vector<float>& p, size_t begin, size_t end) {
  if (end - begin == 0) return 0.0f;
  if (end - begin == 1) return p[begin];
  size_t m = 1;
  while (m * 2 < end - begin) m *= 2;
  return ReferenceTree(p, begin, begin + m) + ReferenceTree(p, begin + m, end);
}

int8_t RoundAway(float r) {
  r = std::min(127.0f, std::max(-127.0f, r));
  const float t = std::trunc(r);
  return static_cast<int8_t>(std::fabs(r - t) >= 0.5f ? t + (r < 0 ? -1.0f : 1.0f) : t);
}

std::vector<float> ReferenceChunks(const std::vector<float>& x, const Weight& w, int64_t o) {
  const int64_t n = w.cols;
  std::vector<float> blocks;
  for (int64_t b = 0; b * 32 < n; ++b) {
    const int64_t end = std::min<int64_t>(n, b * 32 + 32);
    float amax = 0.0f;
    for (int64_t i = b * 32; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float xs = amax / 127.0f;
    int32_t isum = 0;
    for (int64_t i = b * 32; i < end; ++i) {
      const int8_t xq = amax == 0.0f ? 0 : RoundAway(x[i] * (127.0f / amax));
      isum += int32_t{w.Q(o, i)} * xq;
    }
    const float ws = w.Scale(o, b);
    blocks.push_back(static_cast<float>(isum) * (ws * xs));
  }
  std::vector<float> chunks;
  for (size_t b = 0; b < blocks.size(); b += 2) {
    chunks.push_back(b + 1 < blocks.size() ? blocks[b] + blocks[b + 1] : blocks[b]);
  }
  return chunks;
}

TEST(Weight, QuantizationIsSymmetricRoundsTiesAwayFromZeroAndScalesPerBlockOrRow) {
  // One row of 40: block 0 has amax 127 (scale 1), so q is round(w) exactly; block 1 (8 wide)
  // is zero.
  std::vector<float> w(40, 0.0f);
  w[0] = 127.0f;
  w[1] = 2.5f;
  w[2] = -2.5f;
  w[3] = 0.49999997f;
  w[4] = -126.5f;
  const Weight q = QuantizeWeight(w.data(), 1, 40, WeightFormat::kInt8Block32);
  ASSERT_TRUE(q.Consistent());
  EXPECT_EQ(q.RowMajorScales(), (std::vector<float>{1.0f, 0.0f}));
  EXPECT_EQ(q.Q(0, 0), 127);
  EXPECT_EQ(q.Q(0, 1), 3);
  EXPECT_EQ(q.Q(0, 2), -3);
  EXPECT_EQ(q.Q(0, 3), 0);
  EXPECT_EQ(q.Q(0, 4), -127);
  for (int i = 32; i < 40; ++i) EXPECT_EQ(q.Q(0, i), 0);
  // Per channel: one scale for the row, from its amax.
  w[39] = -254.0f;
  const Weight c = QuantizeWeight(w.data(), 1, 40, WeightFormat::kInt8Channel);
  EXPECT_EQ(c.RowMajorScales(), (std::vector<float>{2.0f}));
  EXPECT_EQ(c.Q(0, 39), -127);
  EXPECT_EQ(c.Q(0, 1), 1);   // 2.5 / 2 = 1.25
  EXPECT_EQ(c.Q(0, 0), 64);  // 63.5: the tie goes away from zero
  // Dequantizing is q * scale.
  std::vector<float> row(40);
  c.RowFp32(0, row.data());
  EXPECT_EQ(row[0], 128.0f);
  EXPECT_EQ(row[39], -254.0f);
  EXPECT_THROW(QuantizeWeight(w.data(), 1, 40, WeightFormat::kFp32), Error);
  // The packed form round-trips to the row-major one; -128 is refused.
  const std::vector<int8_t> rq = q.RowMajorQ();
  const Weight back = Weight::Int8(q.format, 1, 40, rq, q.RowMajorScales());
  EXPECT_EQ(back.q, q.q);
  EXPECT_EQ(back.scales, q.scales);
  std::vector<int8_t> bad = rq;
  bad[7] = -128;
  EXPECT_THROW(Weight::Int8(q.format, 1, 40, bad, q.RowMajorScales()), Error);
  EXPECT_THROW(Weight::Int8(q.format, 1, 41, rq, q.RowMajorScales()), Error);
  EXPECT_EQ(ScalesPerRow(WeightFormat::kInt8Block32, 65), 3);
  EXPECT_EQ(ParseWeightFormat("int8-channel"), WeightFormat::kInt8Channel);
  EXPECT_EQ(ParseWeightFormat("int4"), std::nullopt);
}

TEST(Weight, ActivationBlocksOfZeroOrNonFiniteValues) {
  std::vector<float> x(70, 0.0f);
  x[33] = std::numeric_limits<float>::infinity();
  x[64] = -0.5f;
  std::vector<int8_t> q(70);
  std::vector<float> s(3);
  QuantizeActivations(x.data(), 70, q.data(), s.data());
  EXPECT_EQ(s[0], 0.0f);
  EXPECT_TRUE(std::isnan(s[1]));
  EXPECT_EQ(q[33], 0);
  EXPECT_EQ(s[2], 0.5f / 127.0f);
  EXPECT_EQ(q[64], -127);
}

// The int8 products (vector kernel and scalar tail, sums and chunk partials) equal the plain
// definition bit for bit, for widths with and without a short block and a short chunk, outputs
// with and without a tail of fewer than 8 rows, and every batch row alone or together.
TEST(Weight, Int8ProductsFollowTheDefinitionForAnyBatch) {
  for (WeightFormat format : {WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    for (int64_t in : {32, 64, 96, 100, 256, 1000, 1024}) {
      for (int64_t out : {1, 8, 13, 24}) {
        const std::vector<float> wf = Random(static_cast<size_t>(out * in), 7, 0.05f);
        const Weight w = QuantizeWeight(wf.data(), out, in, format);
        const int64_t rows = 3, chunks = (in + 63) / 64;
        std::vector<float> x = Random(static_cast<size_t>(rows * in), 9);
        for (int64_t i = 0; i < 32 && i < in; ++i) x[static_cast<size_t>(in + i)] = 0.0f;
        std::vector<float> y(static_cast<size_t>(rows * out)),
            p(static_cast<size_t>(rows * out * chunks));
        const std::vector<float> bias = Random(static_cast<size_t>(out), 3);
        MatMul(x.data(), rows, w, bias.data(), y.data());
        MatMulChunkPartials(x.data(), rows, w, p.data());
        // The scalar kernel (the fallback without AVX2) gives the vector kernel's bits.
        std::vector<float> ys(static_cast<size_t>(rows * out)), ps(p.size());
        Int8Product(x.data(), rows, w, true, false, ys.data());
        Int8Product(x.data(), rows, w, false, false, ps.data());
        for (size_t i = 0; i < ps.size(); ++i) ASSERT_EQ(Bits(ps[i]), Bits(p[i])) << i;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t o = 0; o < out; ++o) {
            const size_t i = static_cast<size_t>(r * out + o);
            ASSERT_EQ(Bits(ys[i] + bias[static_cast<size_t>(o)]), Bits(y[i]));
          }
        }
        for (int64_t r = 0; r < rows; ++r) {
          const std::vector<float> xr(x.begin() + r * in, x.begin() + (r + 1) * in);
          std::vector<float> alone(static_cast<size_t>(out));
          MatMul(xr.data(), 1, w, bias.data(), alone.data());
          for (int64_t o = 0; o < out; ++o) {
            const std::vector<float> want = ReferenceChunks(xr, w, o);
            ASSERT_EQ(static_cast<int64_t>(want.size()), chunks);
            for (int64_t k = 0; k < chunks; ++k) {
              ASSERT_EQ(Bits(p[static_cast<size_t>((r * out + o) * chunks + k)]),
                        Bits(want[static_cast<size_t>(k)]))
                  << WeightFormatName(format) << " in " << in << " out " << out << " row " << r
                  << " output " << o << " chunk " << k;
            }
            const float sum = ReferenceTree(want, 0, want.size()) + bias[static_cast<size_t>(o)];
            ASSERT_EQ(Bits(y[static_cast<size_t>(r * out + o)]), Bits(sum))
                << WeightFormatName(format) << " in " << in << " out " << out << " row " << r;
            ASSERT_EQ(Bits(alone[static_cast<size_t>(o)]), Bits(sum));
          }
        }
      }
    }
  }
}

// A row-parallel split of the contraction at 64-element boundaries: each rank holds its columns
// of the weight (with their block scales) and its slice of the input; its chunk partials, laid
// end to end and summed in the canonical tree, are the unsplit product's bits.
TEST(Weight, Int8TensorParallelSlicesReproduceTheProduct) {
  const int64_t in = 512, out = 16;
  const std::vector<float> wf = Random(static_cast<size_t>(out * in), 1, 0.05f);
  const std::vector<float> x = Random(static_cast<size_t>(in), 2);
  for (WeightFormat format : {WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    const Weight w = QuantizeWeight(wf.data(), out, in, format);
    std::vector<float> whole(static_cast<size_t>(out));
    MatMul(x.data(), 1, w, nullptr, whole.data());
    for (int64_t tp : {2, 4, 8}) {
      const int64_t width = in / tp;
      std::vector<std::vector<float>> chunks(static_cast<size_t>(out));
      for (int64_t rank = 0; rank < tp; ++rank) {
        std::vector<int8_t> sq;
        std::vector<float> ss;
        const std::vector<int8_t> wq = w.RowMajorQ();
        const std::vector<float> ws = w.RowMajorScales();
        const int64_t per_row = w.ScalesPerRow();
        for (int64_t o = 0; o < out; ++o) {
          sq.insert(sq.end(), wq.begin() + o * in + rank * width,
                    wq.begin() + o * in + (rank + 1) * width);
          if (format == WeightFormat::kInt8Channel) {
            ss.push_back(ws[static_cast<size_t>(o)]);
          } else {
            ss.insert(ss.end(), ws.begin() + o * per_row + rank * width / 32,
                      ws.begin() + o * per_row + (rank + 1) * width / 32);
          }
        }
        const Weight slice = Weight::Int8(format, out, width, sq, ss);
        ASSERT_TRUE(slice.Consistent());
        const int64_t c = width / 64;
        std::vector<float> p(static_cast<size_t>(out * c));
        MatMulChunkPartials(x.data() + rank * width, 1, slice, p.data());
        for (int64_t o = 0; o < out; ++o) {
          chunks[static_cast<size_t>(o)].insert(chunks[static_cast<size_t>(o)].end(),
                                                p.begin() + o * c, p.begin() + (o + 1) * c);
        }
      }
      for (int64_t o = 0; o < out; ++o) {
        EXPECT_EQ(Bits(TreeSum(chunks[static_cast<size_t>(o)])),
                  Bits(whole[static_cast<size_t>(o)]))
            << WeightFormatName(format) << " tp " << tp << " output " << o;
      }
    }
  }
}

// Close to the fp32 product of the same weights: the quantization error stays small.
TEST(Weight, Int8ProductIsCloseToFp32) {
  const int64_t in = 1024, out = 64;
  const std::vector<float> wf = Random(static_cast<size_t>(out * in), 4, 0.02f);
  const std::vector<float> x = Random(static_cast<size_t>(in), 5);
  std::vector<float> exact(static_cast<size_t>(out)), q(exact.size());
  MatMul(x.data(), 1, Weight::Fp32(out, in, wf), nullptr, exact.data());
  double scale = 0.0;
  for (float v : exact) scale = std::max(scale, std::fabs(double{v}));
  for (WeightFormat format : {WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    MatMul(x.data(), 1, QuantizeWeight(wf.data(), out, in, format), nullptr, q.data());
    for (int64_t o = 0; o < out; ++o) {
      EXPECT_NEAR(q[static_cast<size_t>(o)], exact[static_cast<size_t>(o)], 0.03 * scale)
          << WeightFormatName(format);
    }
  }
}

}  // namespace
}  // namespace lockstep::model
