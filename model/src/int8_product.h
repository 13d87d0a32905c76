// The int8 product of weight.h with the kernel chosen by the caller (internal header): the tests
// run the vector kernel and the scalar definition side by side on every machine.
#pragma once

#include <cstdint>

#include "lockstep/model/weight.h"

namespace lockstep::model {

// sums: y[r * w.rows + o] (no bias); else chunk partials as MatMulChunkPartials. vector: the AVX2
// kernel when the CPU has it, else (and when false) the scalar one; both give the same bits.
void Int8Product(const float* x, int64_t rows, const Weight& w, bool sums, bool vector, float* y);

}  // namespace lockstep::model
