// Eight explicit float lanes and the canonical tree accumulator (internal header), shared by the
// fp32 and int8 kernels so both combine chunk partials the same way (kernels.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "lockstep/model/kernels.h"

namespace lockstep::model::lanes {

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

// Streams chunk partials into the canonical tree: a binary counter of perfect subtrees
// (level k holds the sum of an aligned block of 2^k partials), folded from the right at the
// end. This equals the recursive definition in kernels.h. T = Lanes runs eight independent
// trees of the same shape side by side, element-wise.
template <typename T>
class TreeAccumulator {
 public:
  void Add(T v) {
    int level = 0;
    while (count_ & (uint64_t{1} << level)) {
      v = stack_[level] + v;
      ++level;
    }
    stack_[level] = v;
    ++count_;
  }
  T Result() const {
    if (count_ == 0) return T{};
    bool have = false;
    T acc{};
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
  T stack_[64];
};

}  // namespace lockstep::model::lanes
