// fp32 kernels with a canonical reduction order.
//
// Every reduction (a dot product over the contraction dimension, a sum over attention
// positions, a sum of squares) is computed the same way, so its bits depend only on the values
// reduced, never on how the work around it is split:
//
//   1. The n terms are cut into chunks of kReductionChunk (64) consecutive elements; the last
//      chunk may be short.
//   2. Within a chunk, term i goes to lane i % 8; each lane adds its terms in increasing i,
//      starting from +0.0f; the 8 lanes are combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
//   3. The chunk partials p[0..c) are combined by TreeSum: for c a power of two, the perfect
//      binary tree (sum of each half, then their sum); otherwise, with m the largest power of two
//      below c, TreeSum(p[0..m)) + TreeSum(p[m..c)).
//
// Consequences the rest of Lockstep relies on:
//   * A matrix product's row r depends only on row r of the input: batch 1 and batch 4 give the
//     same bits (the kernels block over rows for speed, but never change a row's order).
//   * A tensor-parallel split of the contraction dimension at boundaries of aligned
//     power-of-two groups of chunks reproduces the reference exactly: each shard reduces its
//     own subtree (ChunkPartials + TreeSum on its range) and the collective combines the
//     subtree results in the same tree.
//
// The compiler must not reassociate or fuse: the library is built with -ffp-contract=off and
// never with -ffast-math; the 8 lanes are explicit (GCC vector extensions), so vectorizing them
// keeps the order. Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace lockstep::model {

inline constexpr int64_t kReductionChunk = 64;
inline constexpr int64_t kReductionLanes = 8;

// The canonical tree over `values` (see above). Empty -> +0.0f.
float TreeSum(std::span<const float> values);

// out[i] = TreeSum(values[i * n .. (i + 1) * n)) for i < count, eight rows at a time.
void TreeSumRows(const float* values, int64_t count, int64_t n, float* out);
// The same with rows `stride` apart: out[i] = TreeSum(values[i * stride .. i * stride + n)).
void TreeSumRowsStrided(const float* values, int64_t count, int64_t n, int64_t stride, float* out);

// A node of the canonical tree over chunk partials: the chunks [begin, end) it sums. The tree
// over [lo, hi) splits at lo + m, m the largest power of two below hi - lo (the rule above).
struct TreeNode {
  int64_t begin = 0;
  int64_t end = 0;
  friend bool operator==(const TreeNode&, const TreeNode&) = default;
};

// The largest nodes of the canonical tree over [0, total) that lie inside [begin, end), in chunk
// order: they tile [begin, end). TreeSum of a node's chunks alone is that node's value in the
// whole tree, so a chip holding chunks [begin, end) can send these few sums instead of every
// chunk partial (an aligned power-of-two range is one node).
std::vector<TreeNode> TreeNodes(int64_t total, int64_t begin, int64_t end);

// out[i] = the canonical tree over [0, total) for i < count, from node sums that tile [0, total):
// nodes[k] is a node of that tree, its sums at values[k][0..count). Bit for bit TreeSumRows of
// the chunk partials the nodes sum. Throws std::invalid_argument when the nodes do not tile
// [0, total) or one is not a node of the tree.
void TreeCombineRows(std::span<const TreeNode> nodes, std::span<const float* const> values,
                     int64_t total, int64_t count, float* out);

// The partial of each chunk of a[0..n) . b[0..n): out.size() must be ceil(n / 64).
void ChunkPartials(const float* a, const float* b, int64_t n, std::span<float> out);

// Canonical dot product, and canonical sum (bitwise equal to Dot(x, ones)).
float Dot(const float* a, const float* b, int64_t n);
float Sum(const float* x, int64_t n);

// y[r, o] = x[r, :] . w[o, :] (+ bias[o]) for r < rows, o < out: x is [rows, in], w is
// [out, in] (a Hugging Face Linear weight), y is [rows, out]; bias may be null. Each element
// is Dot(x row, w row) then + bias.
void MatMulTransposed(const float* x, int64_t rows, const float* w, int64_t out, int64_t in,
                      const float* bias, float* y);

// The chunk partials of the same products, not summed: y[(r * out + o) * chunks + k] is chunk k
// of x[r, :] . w[o, :] (ChunkPartials), chunks = ceil(in / 64). TreeSum of a product's chunks
// equals MatMulTransposed's element without bias, bit for bit. Row-blocked like MatMulTransposed:
// this is what a tensor-parallel rank computes for a row-parallel (o / down) projection.
void MatMulChunkPartials(const float* x, int64_t rows, const float* w, int64_t out, int64_t in,
                         float* y);

// out[d] = canonical sum over p < count of weights[p] * values[p * stride + d], for d < dim.
// `scratch` must hold at least ScratchForWeightedSum(count, dim) floats.
int64_t ScratchForWeightedSum(int64_t count, int64_t dim);
void WeightedSum(const float* weights, const float* values, int64_t count, int64_t stride,
                 int64_t dim, float* out, std::span<float> scratch);

}  // namespace lockstep::model
