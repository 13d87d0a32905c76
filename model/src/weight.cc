#include "lockstep/model/weight.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "int8_product.h"
#include "lanes.h"
#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LOCKSTEP_X86_INT8 1
#endif

namespace lockstep::model {
namespace {

using lanes::Lanes;
using lanes::TreeAccumulator;

// round(r) with ties away from zero, r clamped to [-127, 127]; NaN gives 0.
int8_t RoundToInt8(float r) {
  if (!(r == r)) return 0;
  r = std::min(127.0f, std::max(-127.0f, r));
  return static_cast<int8_t>(std::round(r));
}

// Activations of `rows` rows of x [rows, n], quantized per block, padded with zero blocks to
// `blocks` * 32 columns per row so a kernel can read whole blocks.
struct QuantizedRows {
  int64_t blocks = 0;
  std::vector<int8_t> q;      // [rows, blocks * 32]
  std::vector<float> scales;  // [rows, blocks]
};

QuantizedRows QuantizeRows(const float* x, int64_t rows, int64_t n) {
  QuantizedRows out;
  out.blocks = (n + kInt8Block - 1) / kInt8Block;
  out.q.assign(static_cast<size_t>(rows * out.blocks * kInt8Block), 0);
  out.scales.resize(static_cast<size_t>(rows * out.blocks));
  for (int64_t r = 0; r < rows; ++r) {
    QuantizeActivations(x + r * n, n, out.q.data() + r * out.blocks * kInt8Block,
                        out.scales.data() + r * out.blocks);
  }
  return out;
}

constexpr int64_t kPanel = 8;  // rows per packed panel

// The chunk partials of row o of w against one quantized activation row: step 2-4 of weight.h,
// plainly. `chunk(k, value)` receives chunk k's partial.
template <typename Chunk>
void Int8RowChunks(const Weight& w, int64_t o, const int8_t* xq, const float* xs, Chunk chunk) {
  const int64_t blocks = w.Blocks();
  float first = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    // The packed block holds zeros beyond cols, as the padded activations do.
    const int8_t* q = w.q.data() + (((o / kPanel) * blocks + b) * kPanel + o % kPanel) * kInt8Block;
    int32_t isum = 0;
    for (int64_t j = 0; j < kInt8Block; ++j) {
      isum += static_cast<int32_t>(q[j]) * static_cast<int32_t>(xq[b * kInt8Block + j]);
    }
    const float p = static_cast<float>(isum) * (w.Scale(o, b) * xs[b]);
    if (b % 2 == 0) {
      first = p;
      if (b + 1 == blocks) chunk(b / 2, first);
    } else {
      chunk(b / 2, first + p);
    }
  }
}

// Outputs [o_begin, o_end) of every row, one output at a time (the definition; the tail and the
// fallback of the vector kernel). sums: y[r * out + o] (+ bias); else chunk partials.
void Int8Scalar(const QuantizedRows& xr, int64_t rows, const Weight& w, int64_t o_begin,
                int64_t o_end, bool sums, float* y) {
  const int64_t chunks = (w.cols + kReductionChunk - 1) / kReductionChunk, out = w.rows;
  for (int64_t o = o_begin; o < o_end; ++o) {
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* xq = xr.q.data() + r * xr.blocks * kInt8Block;
      const float* xs = xr.scales.data() + r * xr.blocks;
      if (sums) {
        TreeAccumulator<float> tree;
        Int8RowChunks(w, o, xq, xs, [&](int64_t, float v) { tree.Add(v); });
        y[r * out + o] = tree.Result();
      } else {
        float* dst = y + (r * out + o) * chunks;
        Int8RowChunks(w, o, xq, xs, [&](int64_t k, float v) { dst[k] = v; });
      }
    }
  }
}

#ifdef LOCKSTEP_X86_INT8
// The exact int32 sums of eight int32 vectors: result lane i = sum of v[i]'s lanes. Integer
// addition is associative, so any order gives the same bits.
__attribute__((target("avx2"))) inline __m256i SumLanes8(const __m256i* v) {
  const __m256i t01 = _mm256_hadd_epi32(v[0], v[1]), t23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i t45 = _mm256_hadd_epi32(v[4], v[5]), t67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_hadd_epi32(t01, t23), u1 = _mm256_hadd_epi32(t45, t67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                          _mm256_permute2x128_si256(u0, u1, 0x31));
}

// Packed panel g (rows [8g, 8g + 8)) against one quantized activation row: out[k * 8 + i] is
// chunk k's partial of row 8g + i, exactly Int8RowChunks' value (the same integers, then the
// same float operations per lane). A panel is one sequential stream: the hardware prefetcher
// keeps it coming.
__attribute__((target("avx2"))) void Int8Panel(const Weight& w, int64_t g, const int8_t* xq,
                                               const float* xs, float* out) {
  const int64_t blocks = w.Blocks();
  const int8_t* q = w.q.data() + g * blocks * kPanel * kInt8Block;
  const __m256i ones = _mm256_set1_epi16(1);
  const bool channel = w.format == WeightFormat::kInt8Channel;
  const float* scales = w.scales.data() + (channel ? g * kPanel : g * blocks * kPanel);
  const __m256 channel_scales = channel ? _mm256_loadu_ps(scales) : _mm256_setzero_ps();
  __m256 first = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * kInt8Block));
    const __m256i ax = _mm256_sign_epi8(xv, xv);  // |xq| as unsigned bytes (|xq| <= 127)
    const int8_t* block = q + b * kPanel * kInt8Block;
    __m256i p[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + i * 32));
      // |xq| * (w * sign(xq)) = w * xq in int16 pairs: |each| <= 2 * 127 * 127, no saturation.
      const __m256i pairs = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv));
      p[i] = _mm256_madd_epi16(pairs, ones);
    }
    const __m256 isum = _mm256_cvtepi32_ps(SumLanes8(p));  // exact: |isum| < 2^24
    const __m256 ws = channel ? channel_scales : _mm256_loadu_ps(scales + b * kPanel);
    const __m256 part = _mm256_mul_ps(isum, _mm256_mul_ps(ws, _mm256_set1_ps(xs[b])));
    if (b % 2 == 0) {
      first = part;
      if (b + 1 == blocks) _mm256_storeu_ps(out + (b / 2) * 8, first);
    } else {
      _mm256_storeu_ps(out + (b / 2) * 8, _mm256_add_ps(first, part));
    }
  }
}

void Int8Avx2(const QuantizedRows& xr, int64_t rows, const Weight& w, bool sums, float* y) {
  const int64_t chunks = (w.cols + kReductionChunk - 1) / kReductionChunk, out = w.rows;
  std::vector<float> parts(static_cast<size_t>(chunks * kPanel));
  for (int64_t g = 0; g * kPanel < out; ++g) {
    const int64_t o = g * kPanel, valid = std::min(kPanel, out - o);
    for (int64_t r = 0; r < rows; ++r) {
      Int8Panel(w, g, xr.q.data() + r * xr.blocks * kInt8Block, xr.scales.data() + r * xr.blocks,
                parts.data());
      if (sums) {
        TreeAccumulator<Lanes> tree;
        for (int64_t k = 0; k < chunks; ++k) tree.Add(lanes::Load(parts.data() + k * kPanel));
        const Lanes result = tree.Result();
        for (int64_t i = 0; i < valid; ++i) y[r * out + o + i] = result[i];
      } else {
        float* dst = y + (r * out + o) * chunks;
        for (int64_t k = 0; k < chunks; ++k) {
          for (int64_t i = 0; i < valid; ++i) {
            dst[i * chunks + k] = parts[static_cast<size_t>(k * kPanel + i)];
          }
        }
      }
    }
  }
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

}  // namespace

void Int8Product(const float* x, int64_t rows, const Weight& w, bool sums, bool vector, float* y) {
  const QuantizedRows xr = QuantizeRows(x, rows, w.cols);
#ifdef LOCKSTEP_X86_INT8
  if (vector && HasAvx2()) return Int8Avx2(xr, rows, w, sums, y);
#endif
  (void)vector;
  Int8Scalar(xr, rows, w, 0, w.rows, sums, y);
}

std::string_view WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kFp32:
      return "fp32";
    case WeightFormat::kInt8Block32:
      return "int8-block32";
    case WeightFormat::kInt8Channel:
      return "int8-channel";
  }
  return "?";
}

std::optional<WeightFormat> ParseWeightFormat(std::string_view name) {
  for (WeightFormat f :
       {WeightFormat::kFp32, WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    if (WeightFormatName(f) == name) return f;
  }
  return std::nullopt;
}

int64_t ScalesPerRow(WeightFormat format, int64_t cols) {
  switch (format) {
    case WeightFormat::kFp32:
      return 0;
    case WeightFormat::kInt8Block32:
      return (cols + kInt8Block - 1) / kInt8Block;
    case WeightFormat::kInt8Channel:
      return 1;
  }
  return 0;
}

Weight Weight::Fp32(int64_t rows, int64_t cols, std::vector<float> values) {
  Weight w;
  w.rows = rows;
  w.cols = cols;
  w.values = std::move(values);
  return w;
}

Weight Weight::Int8(WeightFormat format, int64_t rows, int64_t cols,
                    std::span<const int8_t> row_major_q, std::span<const float> row_major_scales) {
  if (format == WeightFormat::kFp32) throw InvalidInput("Weight::Int8: fp32 is not an int8 format");
  const int64_t per_row = model::ScalesPerRow(format, cols);
  if (rows < 0 || cols < 0 || static_cast<int64_t>(row_major_q.size()) != rows * cols ||
      static_cast<int64_t>(row_major_scales.size()) != rows * per_row) {
    throw InvalidInput(
        "int8 weight [" + std::to_string(rows) + ", " + std::to_string(cols) + "] " +
        std::string(WeightFormatName(format)) + " needs " + std::to_string(rows * cols) +
        " values and " + std::to_string(rows * per_row) + " scales, got " +
        std::to_string(row_major_q.size()) + " and " + std::to_string(row_major_scales.size()));
  }
  Weight w;
  w.format = format;
  w.rows = rows;
  w.cols = cols;
  const int64_t blocks = w.Blocks(), panels = (rows + kPanel - 1) / kPanel;
  w.q.assign(static_cast<size_t>(panels * blocks * kPanel * kInt8Block), 0);
  const bool channel = format == WeightFormat::kInt8Channel;
  w.scales.assign(static_cast<size_t>(panels * kPanel * (channel ? 1 : blocks)), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t g = r / kPanel, i = r % kPanel;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kInt8Block, n = std::min(kInt8Block, cols - c0);
      int8_t* dst = w.q.data() + ((g * blocks + b) * kPanel + i) * kInt8Block;
      const int8_t* src = row_major_q.data() + r * cols + c0;
      for (int64_t j = 0; j < n; ++j) {
        if (src[j] == -128) {
          throw InvalidInput("int8 weight holds -128 at row " + std::to_string(r) + ", column " +
                             std::to_string(c0 + j) +
                             " (symmetric int8 weights are in [-127, 127])");
        }
        dst[j] = src[j];
      }
      if (!channel) {
        w.scales[static_cast<size_t>((g * blocks + b) * kPanel + i)] =
            row_major_scales[static_cast<size_t>(r * per_row + b)];
      }
    }
    if (channel) w.scales[static_cast<size_t>(r)] = row_major_scales[static_cast<size_t>(r)];
  }
  return w;
}

int64_t Weight::ScalesPerRow() const { return model::ScalesPerRow(format, cols); }

int8_t Weight::Q(int64_t r, int64_t c) const {
  return q[static_cast<size_t>((((r / kPanel) * Blocks() + c / kInt8Block) * kPanel + r % kPanel) *
                                   kInt8Block +
                               c % kInt8Block)];
}

float Weight::Scale(int64_t r, int64_t b) const {
  return format == WeightFormat::kInt8Channel
             ? scales[static_cast<size_t>(r)]
             : scales[static_cast<size_t>(((r / kPanel) * Blocks() + b) * kPanel + r % kPanel)];
}

std::vector<int8_t> Weight::RowMajorQ() const {
  std::vector<int8_t> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[static_cast<size_t>(r * cols + c)] = Q(r, c);
  }
  return out;
}

std::vector<float> Weight::RowMajorScales() const {
  const int64_t per_row = ScalesPerRow();
  std::vector<float> out(static_cast<size_t>(rows * per_row));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < per_row; ++b) out[static_cast<size_t>(r * per_row + b)] = Scale(r, b);
  }
  return out;
}

int64_t Weight::bytes() const {
  if (format == WeightFormat::kFp32) return rows * cols * 4;
  return rows * cols + rows * ScalesPerRow() * 4;
}

bool Weight::Consistent() const {
  if (format == WeightFormat::kFp32) {
    return values.size() == static_cast<size_t>(rows * cols) && q.empty() && scales.empty();
  }
  const int64_t panels = (rows + kPanel - 1) / kPanel;
  const bool channel = format == WeightFormat::kInt8Channel;
  return values.empty() &&
         q.size() == static_cast<size_t>(panels * Blocks() * kPanel * kInt8Block) &&
         scales.size() == static_cast<size_t>(panels * kPanel * (channel ? 1 : Blocks()));
}

void Weight::RowFp32(int64_t r, float* out) const {
  if (format == WeightFormat::kFp32) {
    std::copy_n(values.begin() + r * cols, cols, out);
    return;
  }
  for (int64_t c = 0; c < cols; ++c) {
    out[c] = static_cast<float>(Q(r, c)) * Scale(r, c / kInt8Block);
  }
}

Weight QuantizeWeight(const float* w, int64_t rows, int64_t cols, WeightFormat format) {
  if (format == WeightFormat::kFp32) {
    throw InvalidInput("QuantizeWeight: fp32 is not an int8 format");
  }
  std::vector<int8_t> q(static_cast<size_t>(rows * cols));
  std::vector<float> scales;
  const int64_t width = format == WeightFormat::kInt8Channel ? cols : kInt8Block;
  scales.reserve(static_cast<size_t>(rows * model::ScalesPerRow(format, cols)));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < cols; b += width) {
      const int64_t end = std::min(cols, b + width);
      float amax = 0.0f;
      for (int64_t c = b; c < end; ++c) amax = std::max(amax, std::fabs(w[r * cols + c]));
      const float scale = amax / 127.0f;
      scales.push_back(scale);
      for (int64_t c = b; c < end; ++c) {
        q[static_cast<size_t>(r * cols + c)] =
            amax == 0.0f ? 0 : RoundToInt8(w[r * cols + c] / scale);
      }
    }
    if (cols == 0 && format == WeightFormat::kInt8Channel) scales.push_back(0.0f);
  }
  return Weight::Int8(format, rows, cols, q, scales);
}

void QuantizeActivations(const float* x, int64_t n, int8_t* q, float* scales) {
  for (int64_t b = 0; b * kInt8Block < n; ++b) {
    const int64_t begin = b * kInt8Block, end = std::min(n, begin + kInt8Block);
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = begin; i < end; ++i) {
      const float a = std::fabs(x[i]);
      finite = finite && a <= std::numeric_limits<float>::max();
      amax = std::max(amax, a);
    }
    if (!finite || amax == 0.0f) {
      scales[b] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
      std::fill(q + begin, q + end, int8_t{0});
      continue;
    }
    scales[b] = amax / 127.0f;
    const float inv = 127.0f / amax;
    for (int64_t i = begin; i < end; ++i) q[i] = RoundToInt8(x[i] * inv);
  }
}

void MatMul(const float* x, int64_t rows, const Weight& w, const float* bias, float* y) {
  if (w.format == WeightFormat::kFp32) {
    MatMulTransposed(x, rows, w.values.data(), w.rows, w.cols, bias, y);
    return;
  }
  Int8Product(x, rows, w, /*sums=*/true, /*vector=*/true, y);
  if (bias != nullptr) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < w.rows; ++j) y[r * w.rows + j] += bias[j];
    }
  }
}

void MatMulChunkPartials(const float* x, int64_t rows, const Weight& w, float* y) {
  if (w.format == WeightFormat::kFp32) {
    MatMulChunkPartials(x, rows, w.values.data(), w.rows, w.cols, y);
    return;
  }
  Int8Product(x, rows, w, /*sums=*/false, /*vector=*/true, y);
}

}  // namespace lockstep::model
