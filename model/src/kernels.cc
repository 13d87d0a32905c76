#include "lockstep/model/kernels.h"

#include <cassert>
#include <cstring>
#include <vector>

namespace lockstep::model {
namespace {

// Eight explicit lanes: element-wise vector arithmetic is exactly the scalar arithmetic of
// each lane, so SIMD never changes the order (GCC splits it into two SSE ops without AVX).
typedef float Lanes __attribute__((vector_size(32)));
static_assert(sizeof(Lanes) == kReductionLanes * sizeof(float));

__attribute__((always_inline)) inline Lanes Load(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

__attribute__((always_inline)) inline float CombineLanes(Lanes l) {
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
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

// Streams chunk partials into the canonical tree: a binary counter of perfect subtrees
// (level k holds the sum of an aligned block of 2^k partials), folded from the right at the
// end. This equals the recursive definition in kernels.h.
class TreeAccumulator {
 public:
  void Add(float v) {
    int level = 0;
    while (count_ & (uint64_t{1} << level)) {
      v = stack_[level] + v;
      ++level;
    }
    stack_[level] = v;
    ++count_;
  }
  float Result() const {
    if (count_ == 0) return 0.0f;
    bool have = false;
    float acc = 0.0f;
    for (int level = 0; level < 64; ++level) {
      if (count_ & (uint64_t{1} << level)) {
        acc = have ? stack_[level] + acc : stack_[level];
        have = true;
      }
    }
    return acc;
  }

 private:
  uint64_t count_ = 0;
  float stack_[64];
};

inline float DotImpl(const float* a, const float* b, int64_t n) {
  if (n <= kReductionChunk) return n > 0 ? ChunkDot(a, b, n) : 0.0f;
  TreeAccumulator tree;
  for (int64_t c = 0; c < n; c += kReductionChunk) {
    const int64_t len = n - c < kReductionChunk ? n - c : kReductionChunk;
    tree.Add(ChunkDot(a + c, b != nullptr ? b + c : nullptr, len));
  }
  return tree.Result();
}

// R dot products of one x row against R consecutive w rows (`stride` apart), interleaved for
// memory-level parallelism (decode is bandwidth bound); each keeps its own accumulators, so each
// equals Dot exactly.
template <int R>
__attribute__((always_inline)) inline void DotRows(const float* x, const float* w, int64_t stride,
                                                   int64_t n, float* y) {
  TreeAccumulator t[R];
  int64_t c = 0;
  for (; c + kReductionChunk <= n; c += kReductionChunk) {
    Lanes a[R];
    for (int i = 0; i < R; ++i) a[i] = Lanes{0, 0, 0, 0, 0, 0, 0, 0};
    // Prefetch 4 KiB ahead on each weight stream (a hint; no effect on values).
    for (int i = 0; i < R; ++i) {
      for (int64_t s = 0; s < kReductionChunk; s += 16) {
        __builtin_prefetch(w + i * stride + c + s + 1024);
      }
    }
    for (int64_t s = 0; s < kReductionChunk; s += kReductionLanes) {
      const Lanes xv = Load(x + c + s);
      for (int i = 0; i < R; ++i) a[i] += xv * Load(w + i * stride + c + s);
    }
    for (int i = 0; i < R; ++i) t[i].Add(CombineLanes(a[i]));
  }
  if (c < n) {
    for (int i = 0; i < R; ++i) t[i].Add(ChunkDot(x + c, w + i * stride + c, n - c));
  }
  // A dot of a single chunk is that chunk's value; TreeAccumulator gives the same.
  for (int i = 0; i < R; ++i) y[i] = t[i].Result();
}

}  // namespace

float TreeSum(std::span<const float> values) {
  TreeAccumulator tree;
  for (float v : values) tree.Add(v);
  return tree.Result();
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
    for (int64_t r = 0; r < rows; ++r)
      DotRows<kBlock>(x + r * in, w + o * in, in, in, y + r * out + o);
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
