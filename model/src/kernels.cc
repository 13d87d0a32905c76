#include "lockstep/model/kernels.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "lanes.h"

namespace lockstep::model {
namespace {

using lanes::CombineLanes;
using lanes::Lanes;
using lanes::Load;
using lanes::TreeAccumulator;

#if defined(__clang__)
#define LOCKSTEP_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int32_t LaneIndex __attribute__((vector_size(32)));
#define LOCKSTEP_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, LaneIndex{__VA_ARGS__})
#endif

// CombineLanes of eight vectors at once: result[i] == CombineLanes(v[i]) bit for bit (the same
// additions with the same operands, three levels of the tree done for all eight side by side).
// The shuffles stay inside 128-bit halves until the last level, so they are cheap in AVX.
__attribute__((always_inline)) inline Lanes CombineLanes8(const Lanes* v) {
  // [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7] for the pair (a, b); applied to
  // two such results it gives the next level of the tree for four vectors.
  auto pairs = [](Lanes a, Lanes b) {
    return LOCKSTEP_SHUFFLE(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           LOCKSTEP_SHUFFLE(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
  };
  // [v0, v1, v2, v3 lanes 0-3 | v0, v1, v2, v3 lanes 4-7], then the same for v4..v7.
  const Lanes lo = pairs(pairs(v[0], v[1]), pairs(v[2], v[3]));
  const Lanes hi = pairs(pairs(v[4], v[5]), pairs(v[6], v[7]));
  return LOCKSTEP_SHUFFLE(lo, hi, 0, 1, 2, 3, 8, 9, 10, 11) +
         LOCKSTEP_SHUFFLE(lo, hi, 4, 5, 6, 7, 12, 13, 14, 15);
}

// A chunk of up to 64 terms a[i] * b[i] (b == nullptr: a[i] alone).
__attribute__((always_inline)) inline float ChunkDot(const float* a, const float* b, int64_t n) {
  Lanes acc = {0, 0, 0, 0, 0, 0, 0, 0};
  if (n == kReductionChunk) {
    for (int64_t s = 0; s < kReductionChunk; s += kReductionLanes) {
      acc += b != nullptr ? Load(a + s) * Load(b + s) : Load(a + s);
    }
  } else {
    float lanes[kReductionLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; ++i) {
      lanes[i % kReductionLanes] += b != nullptr ? a[i] * b[i] : a[i];
    }
    std::memcpy(&acc, lanes, sizeof(acc));
  }
  return CombineLanes(acc);
}

inline float DotImpl(const float* a, const float* b, int64_t n) {
  if (n <= kReductionChunk) return n > 0 ? ChunkDot(a, b, n) : 0.0f;
  TreeAccumulator<float> tree;
  for (int64_t c = 0; c < n; c += kReductionChunk) {
    const int64_t len = n - c < kReductionChunk ? n - c : kReductionChunk;
    tree.Add(ChunkDot(a + c, b != nullptr ? b + c : nullptr, len));
  }
  return tree.Result();
}

// The chunk at offset c (a whole chunk of 64 terms) of eight dot products of one x row against
// eight consecutive w rows (`stride` apart): result[i] is the chunk partial of w row i, bit for
// bit ChunkDot(x + c, w + i * stride + c, 64). The x loads are shared, the eight weight streams
// interleave (memory-level parallelism: decode is bandwidth bound), and the eight lane sets are
// combined as vectors. The loops are unrolled by hand-set pragmas so the eight accumulators live
// in registers (GCC does not unroll at -O2 and would keep them on the stack); each weight stream
// is prefetched two chunks (512 bytes) ahead, which measured best among 0-16 chunks
// (BENCHMARKS.md). Neither changes a value.
__attribute__((always_inline)) inline Lanes ChunkRows8(const float* x, const float* w,
                                                       int64_t stride, int64_t c) {
  constexpr int64_t kPrefetchAhead = 2 * kReductionChunk;
  Lanes a[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) a[i] = Lanes{0, 0, 0, 0, 0, 0, 0, 0};
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
#pragma GCC unroll 4
    for (int64_t s = 0; s < kReductionChunk; s += 16) {
      __builtin_prefetch(w + i * stride + c + s + kPrefetchAhead);
    }
  }
#pragma GCC unroll 8
  for (int64_t s = 0; s < kReductionChunk; s += kReductionLanes) {
    const Lanes xv = Load(x + c + s);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] += xv * Load(w + i * stride + c + s);
  }
  return CombineLanes8(a);
}

// The short last chunk [c, n) of the same eight rows.
inline Lanes TailRows8(const float* x, const float* w, int64_t stride, int64_t c, int64_t n) {
  Lanes tail;
  for (int i = 0; i < 8; ++i) tail[i] = ChunkDot(x + c, w + i * stride + c, n - c);
  return tail;
}

// Eight whole dot products: the chunk partials of ChunkRows8 summed in eight trees side by side
// as vectors. Each result equals Dot(x, w row) exactly: every lane and tree node sees the same
// additions.
__attribute__((always_inline)) inline void DotRows8(const float* x, const float* w, int64_t stride,
                                                    int64_t n, float* y) {
  TreeAccumulator<Lanes> tree;
  int64_t c = 0;
  for (; c + kReductionChunk <= n; c += kReductionChunk) tree.Add(ChunkRows8(x, w, stride, c));
  if (c < n) tree.Add(TailRows8(x, w, stride, c, n));
  const Lanes result = tree.Result();
  std::memcpy(y, &result, sizeof(result));
}

// The chunk partials of the same eight rows, unsummed: y[i * chunks + k] is chunk k of row i.
__attribute__((always_inline)) inline void ChunkPartialsRows8(const float* x, const float* w,
                                                              int64_t stride, int64_t n,
                                                              int64_t chunks, float* y) {
  int64_t c = 0, k = 0;
  for (; c + kReductionChunk <= n; c += kReductionChunk, ++k) {
    const Lanes v = ChunkRows8(x, w, stride, c);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) y[i * chunks + k] = v[i];
  }
  if (c < n) {
    const Lanes v = TailRows8(x, w, stride, c, n);
    for (int i = 0; i < 8; ++i) y[i * chunks + k] = v[i];
  }
}

}  // namespace

float TreeSum(std::span<const float> values) {
  TreeAccumulator<float> tree;
  for (float v : values) tree.Add(v);
  return tree.Result();
}

void TreeSumRows(const float* values, int64_t count, int64_t n, float* out) {
  TreeSumRowsStrided(values, count, n, n, out);
}

void TreeSumRowsStrided(const float* values, int64_t count, int64_t n, int64_t stride, float* out) {
  int64_t i = 0;
  // Eight trees side by side: lane j of every node is row i + j's node, the same additions.
  for (; i + kReductionLanes <= count; i += kReductionLanes) {
    TreeAccumulator<Lanes> tree;
    const float* v = values + i * stride;
    for (int64_t k = 0; k < n; ++k) {
      Lanes l;
#pragma GCC unroll 8
      for (int j = 0; j < kReductionLanes; ++j) l[j] = v[j * stride + k];
      tree.Add(l);
    }
    const Lanes result = tree.Result();
    std::memcpy(out + i, &result, sizeof(result));
  }
  for (; i < count; ++i) out[i] = TreeSum({values + i * stride, static_cast<size_t>(n)});
}

namespace {

// Where the canonical tree splits [lo, hi) (hi - lo >= 2): lo + the largest power of two below.
int64_t TreeSplit(int64_t lo, int64_t hi) {
  int64_t m = 1;
  while (m * 2 < hi - lo) m *= 2;
  return lo + m;
}

void CollectNodes(int64_t lo, int64_t hi, int64_t begin, int64_t end, std::vector<TreeNode>& out) {
  if (hi <= begin || end <= lo) return;
  if (begin <= lo && hi <= end) {
    out.push_back({lo, hi});
    return;
  }
  const int64_t mid = TreeSplit(lo, hi);
  CollectNodes(lo, mid, begin, end, out);
  CollectNodes(mid, hi, begin, end, out);
}

// The node [lo, hi) for `count` outputs into out, from the given nodes (sorted by begin).
void CombineNode(std::span<const TreeNode> nodes, std::span<const float* const> values, int64_t lo,
                 int64_t hi, int64_t count, float* out) {
  auto it = std::lower_bound(nodes.begin(), nodes.end(), lo,
                             [](const TreeNode& n, int64_t b) { return n.begin < b; });
  if (it != nodes.end() && it->begin == lo && it->end == hi) {
    std::memcpy(out, values[static_cast<size_t>(it - nodes.begin())], count * sizeof(float));
    return;
  }
  if (hi - lo < 2 || (it != nodes.end() && it->begin == lo && it->end > hi)) {
    throw std::invalid_argument("tree combine: chunks [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + ") are not covered by nodes of the tree");
  }
  const int64_t mid = TreeSplit(lo, hi);
  std::vector<float> right(static_cast<size_t>(count));
  CombineNode(nodes, values, lo, mid, count, out);
  CombineNode(nodes, values, mid, hi, count, right.data());
  for (int64_t i = 0; i < count; ++i) out[i] = out[i] + right[static_cast<size_t>(i)];
}

}  // namespace

std::vector<TreeNode> TreeNodes(int64_t total, int64_t begin, int64_t end) {
  std::vector<TreeNode> out;
  if (total > 0) CollectNodes(0, total, std::max<int64_t>(0, begin), end, out);
  return out;
}

void TreeCombineRows(std::span<const TreeNode> nodes, std::span<const float* const> values,
                     int64_t total, int64_t count, float* out) {
  if (nodes.size() != values.size()) {
    throw std::invalid_argument("tree combine: " + std::to_string(nodes.size()) + " nodes, " +
                                std::to_string(values.size()) + " value arrays");
  }
  int64_t next = 0;
  for (const TreeNode& n : nodes) {
    if (n.begin != next || n.end <= n.begin) {
      throw std::invalid_argument("tree combine: the nodes do not tile the chunks in order at " +
                                  std::to_string(next));
    }
    next = n.end;
  }
  if (next != total) {
    throw std::invalid_argument("tree combine: the nodes cover " + std::to_string(next) + " of " +
                                std::to_string(total) + " chunks");
  }
  if (total == 0) {
    std::fill(out, out + count, 0.0f);
    return;
  }
  CombineNode(nodes, values, 0, total, count, out);
}

void ChunkPartials(const float* a, const float* b, int64_t n, std::span<float> out) {
  assert(static_cast<int64_t>(out.size()) == (n + kReductionChunk - 1) / kReductionChunk);
  size_t k = 0;
  for (int64_t c = 0; c < n; c += kReductionChunk) {
    out[k++] = ChunkDot(a + c, b + c, n - c < kReductionChunk ? n - c : kReductionChunk);
  }
}

float Dot(const float* a, const float* b, int64_t n) { return DotImpl(a, b, n); }

float Sum(const float* x, int64_t n) { return DotImpl(x, nullptr, n); }

// Compiled twice (AVX2 and baseline x86-64, chosen at load time): the same lane arithmetic in
// wider registers, so both give the same bits (no FMA: -ffp-contract=off).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
void MatMulTransposed(const float* x, int64_t rows, const float* w, int64_t out, int64_t in,
                      const float* bias, float* y) {
  // Block over kBlock weight rows; the x rows loop inside so the block stays in cache for a
  // batch.
  constexpr int kBlock = 8;
  int64_t o = 0;
  for (; o + kBlock <= out; o += kBlock) {
    for (int64_t r = 0; r < rows; ++r) DotRows8(x + r * in, w + o * in, in, in, y + r * out + o);
  }
  for (; o < out; ++o) {
    for (int64_t r = 0; r < rows; ++r) y[r * out + o] = Dot(x + r * in, w + o * in, in);
  }
  if (bias != nullptr) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < out; ++j) y[r * out + j] += bias[j];
    }
  }
}

// As MatMulTransposed, blocked the same way, but each product's chunk partials instead of
// their tree sum.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
void MatMulChunkPartials(const float* x, int64_t rows, const float* w, int64_t out, int64_t in,
                         float* y) {
  const int64_t chunks = (in + kReductionChunk - 1) / kReductionChunk;
  constexpr int kBlock = 8;
  int64_t o = 0;
  for (; o + kBlock <= out; o += kBlock) {
    for (int64_t r = 0; r < rows; ++r) {
      ChunkPartialsRows8(x + r * in, w + o * in, in, in, chunks, y + (r * out + o) * chunks);
    }
  }
  for (; o < out; ++o) {
    for (int64_t r = 0; r < rows; ++r) {
      ChunkPartials(x + r * in, w + o * in, in,
                    {y + (r * out + o) * chunks, static_cast<size_t>(chunks)});
    }
  }
}

int64_t ScratchForWeightedSum(int64_t count, int64_t dim) {
  (void)count;
  // 8 lanes for the current chunk + 65 tree levels.
  return (kReductionLanes + 65) * dim;
}

void WeightedSum(const float* weights, const float* values, int64_t count, int64_t stride,
                 int64_t dim, float* out, std::span<float> scratch) {
  assert(static_cast<int64_t>(scratch.size()) >= ScratchForWeightedSum(count, dim));
  float* lanes = scratch.data();                           // [8][dim]
  float* levels = scratch.data() + kReductionLanes * dim;  // [64][dim] tree stack
  float* chunk = levels + 64 * dim;                        // [dim] combined chunk
  uint64_t chunks = 0;
  for (int64_t c = 0; c < count; c += kReductionChunk) {
    const int64_t len = count - c < kReductionChunk ? count - c : kReductionChunk;
    std::memset(lanes, 0, sizeof(float) * static_cast<size_t>(kReductionLanes * dim));
    for (int64_t i = 0; i < len; ++i) {
      float* lane = lanes + (i % kReductionLanes) * dim;
      const float wgt = weights[c + i];
      const float* v = values + (c + i) * stride;
      for (int64_t d = 0; d < dim; ++d) lane[d] += wgt * v[d];
    }
    for (int64_t d = 0; d < dim; ++d) {
      const float* l = lanes + d;
      chunk[d] = ((l[0] + l[dim]) + (l[2 * dim] + l[3 * dim])) +
                 ((l[4 * dim] + l[5 * dim]) + (l[6 * dim] + l[7 * dim]));
    }
    // Binary-counter tree, as TreeAccumulator, one vector per level.
    int level = 0;
    while (chunks & (uint64_t{1} << level)) {
      const float* prev = levels + level * dim;
      for (int64_t d = 0; d < dim; ++d) chunk[d] = prev[d] + chunk[d];
      ++level;
    }
    std::memcpy(levels + level * dim, chunk, sizeof(float) * static_cast<size_t>(dim));
    ++chunks;
  }
  bool have = false;
  for (int level = 0; level < 64; ++level) {
    if (!(chunks & (uint64_t{1} << level))) continue;
    const float* l = levels + level * dim;
    for (int64_t d = 0; d < dim; ++d) out[d] = have ? l[d] + out[d] : l[d];
    have = true;
  }
  if (!have) std::memset(out, 0, sizeof(float) * static_cast<size_t>(dim));
}

}  // namespace lockstep::model
