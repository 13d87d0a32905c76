// A projection weight as the reference and the shards hold it — fp32, or symmetric int8 with
// scales — and the matrix products over it, with results whose bits do not depend on the batch
// or on how a tensor-parallel layout splits the work.
//
// int8 weights (`lockstep weights quantize`, README "int8 weights"): q[r, c] in [-127, 127] and
// fp32 scales, either one per block of 32 consecutive columns (kInt8Block32: scales
// [rows, ceil(cols / 32)], the last block possibly short) or one per row (kInt8Channel: scales
// [rows]). The weight is q * scale. Quantizing (QuantizeWeight) takes amax = max |w| over the
// block (or row), scale = amax / 127, q = round(w / scale) with ties away from zero, clamped to
// [-127, 127]; amax 0 gives scale 0 and q 0.
//
// The int8 product y[o] = x . w[o, :] is computed in integers, block by block, then combined in
// the canonical order of kernels.h:
//   1. The activation row x is quantized per block of 32 elements (counted from element 0 of the
//      contraction): xs[b] = amax_b / 127, xq = round(x * (127 / amax_b)) with ties away from
//      zero, clamped to [-127, 127] (amax 0: xs 0, xq 0; a non-finite amax: xs NaN, xq 0).
//   2. Block b's integer dot product isum_b = sum of q[o, i] * xq[i] is exact (int32).
//   3. Its partial is p_b = float(isum_b) * (scale[o, b] * xs[b]) (per row: scale[o]).
//   4. The contraction's 64-element chunk k sums its two blocks: p_2k + p_2k+1 (p_2k alone when
//      the chunk has one block), and the chunk partials combine in the canonical tree (TreeSum)
//      exactly as fp32 chunk partials do.
// So, as for fp32: a row's result depends only on that row; a tensor-parallel split of the
// contraction at 64-element boundaries gives each rank whole chunks (and whole activation blocks
// of its own input slice), whose partials combine to the unsplit product's bits
// (MatMulChunkPartials + CombineRowParallel); a split of the outputs computes whole products.
//
// Stateless functions; a Weight is a plain value (copyable, immutable once built by convention).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace lockstep::model {

enum class WeightFormat : uint8_t { kFp32 = 0, kInt8Block32 = 1, kInt8Channel = 2 };

// "fp32", "int8-block32", "int8-channel".
std::string_view WeightFormatName(WeightFormat format);
// Inverse of WeightFormatName; nullopt for anything else.
std::optional<WeightFormat> ParseWeightFormat(std::string_view name);
inline bool IsInt8(WeightFormat f) { return f != WeightFormat::kFp32; }

inline constexpr int64_t kInt8Block = 32;

// In memory an int8 weight is packed for the kernel: panels of 8 rows (the last padded with zero
// rows), each stored block by block, so a panel is one sequential stream of memory (row-major
// int8 rows of 1-3 KB are too short a stream for the hardware prefetcher: the packed layout
// measured twice as fast). Element (8g + i, 32b + j) is q[((g * blocks + b) * 8 + i) * 32 + j]
// (zero beyond cols); per-block scales are scales[(g * blocks + b) * 8 + i], per-row scales
// scales[8g + i] (zero in padding rows). Files and shard buffers hold the row-major form
// (RowMajorQ, RowMajorScales); Int8 packs it.
struct Weight {
  WeightFormat format = WeightFormat::kFp32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> values;  // kFp32: [rows, cols] row-major
  std::vector<int8_t> q;      // int8: packed as above, each in [-127, 127]
  std::vector<float> scales;  // int8: packed as above

  // An fp32 weight holding `values` (values.size() must be rows * cols).
  static Weight Fp32(int64_t rows, int64_t cols, std::vector<float> values);
  // An int8 weight from row-major q [rows, cols] and scales [rows, ScalesPerRow(format, cols)].
  // Throws Error (kInvalidInput) for sizes that do not match or a q of -128 (symmetric int8 is
  // [-127, 127]; the kernels rely on it).
  static Weight Int8(WeightFormat format, int64_t rows, int64_t cols,
                     std::span<const int8_t> row_major_q, std::span<const float> row_major_scales);

  bool empty() const { return rows == 0 || cols == 0; }
  // Scales per row: 0 for fp32, ceil(cols / 32) per block, 1 per row.
  int64_t ScalesPerRow() const;
  // Blocks of 32 per row (the packed width), ceil(cols / 32).
  int64_t Blocks() const { return (cols + kInt8Block - 1) / kInt8Block; }
  // int8: element (r, c), and the scale of row r's block b (b ignored per row).
  int8_t Q(int64_t r, int64_t c) const;
  float Scale(int64_t r, int64_t b) const;
  // int8: the row-major forms Int8 takes.
  std::vector<int8_t> RowMajorQ() const;
  std::vector<float> RowMajorScales() const;
  // Bytes of the weight itself: rows x cols x 4 for fp32, rows x cols + scales x 4 for int8
  // (what a file or a shard buffer holds, without the packing's padding).
  int64_t bytes() const;
  // Row r as fp32 (an int8 row dequantized: float(q) * scale, exactly).
  void RowFp32(int64_t r, float* out) const;
  // Whether the sizes agree with rows, cols and the format.
  bool Consistent() const;

  friend bool operator==(const Weight&, const Weight&) = default;
};

// Scales per row of a `cols`-wide int8 weight of `format`.
int64_t ScalesPerRow(WeightFormat format, int64_t cols);

// The int8 quantization of w[rows, cols] (row-major fp32) as described above. Throws Error
// (kInvalidInput) for kFp32.
Weight QuantizeWeight(const float* w, int64_t rows, int64_t cols, WeightFormat format);

// One activation row quantized per block of 32 (step 1 above): q[n], scales[ceil(n / 32)].
void QuantizeActivations(const float* x, int64_t n, int8_t* q, float* scales);

// y[r, o] = x[r, :] . w[o, :] (+ bias[o]) for every row of x [rows, w.cols] and every output
// o < w.rows: MatMulTransposed for fp32, the int8 product above otherwise (bias added after).
void MatMul(const float* x, int64_t rows, const Weight& w, const float* bias, float* y);

// The chunk partials of the same products (y[(r * w.rows + o) * chunks + k], chunks =
// ceil(w.cols / 64)): MatMulChunkPartials for fp32, step 4's chunk sums for int8. TreeSum of a
// product's chunks equals MatMul's element without bias.
void MatMulChunkPartials(const float* x, int64_t rows, const Weight& w, float* y);

}  // namespace lockstep::model
