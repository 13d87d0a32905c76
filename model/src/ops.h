// Building blocks shared by the reference and the sharded forward passes (internal header).
// Both must compute exactly the same bits, so both call these.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"

namespace lockstep::model::ops {

// transformers' LlamaRMSNorm in fp32: weight * (x * rsqrt(mean(x^2) + eps)).
inline void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  const float mean = Dot(x, x, n) / static_cast<float>(n);
  const float r = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * r);
}

// Rotate-half RoPE on one head: x * cos + rotate_half(x) * sin, cos/sin of `half` frequencies
// (the second half of emb = cat(freqs, freqs) repeats the first).
inline void ApplyRope(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] + (-b) * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

// cos/sin of position * inv_freq (fp32), `half` each.
inline void RopeTable(int64_t position, std::span<const float> inv_freq, float* cos, float* sin) {
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float freq = static_cast<float>(position) * inv_freq[i];
    cos[i] = std::cos(freq);
    sin[i] = std::sin(freq);
  }
}

inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }

// Causal attention of one query head at `position` over cached keys/values (row stride
// `stride`, this head's KV columns at `keys`/`values`), optionally within a sliding window.
// `scores` holds at least position + 1 floats; `scratch` ScratchForWeightedSum(position + 1,
// head_dim).
inline void AttendHead(const float* q, const float* keys, const float* values, int64_t stride,
                       int64_t position, int64_t window, int64_t head_dim, float scale,
                       float* scores, std::span<float> scratch, float* out) {
  const int64_t start = window > 0 ? std::max<int64_t>(0, position - window + 1) : 0;
  const int64_t count = position - start + 1;
  float max = -INFINITY;
  for (int64_t p = 0; p < count; ++p) {
    scores[p] = Dot(q, keys + (start + p) * stride, head_dim) * scale;
    max = std::max(max, scores[p]);
  }
  for (int64_t p = 0; p < count; ++p) scores[p] = std::exp(scores[p] - max);
  const float total = Sum(scores, count);
  for (int64_t p = 0; p < count; ++p) scores[p] = scores[p] / total;
  WeightedSum(scores, values + start * stride, count, stride, head_dim, out, scratch);
}

// A row's experts as transformers' MixtralSparseMoeBlock picks them, in fp32 with a fixed order:
// p = softmax(logits) (max subtracted, exp, the canonical Sum, divide); the k largest p, ties to
// the lower expert index; each weight p / (canonical Sum of the k chosen p, largest first). The
// experts come back in ascending index: the order their outputs are added, from +0.0, as
// index_add_ over experts 0..E-1 adds them.
struct Route {
  std::vector<int64_t> experts;  // ascending
  std::vector<float> weights;    // of experts[i]
};
inline Route RouteRow(const float* logits, int64_t num_experts, int64_t k) {
  std::vector<float> p(static_cast<size_t>(num_experts));
  float max = -INFINITY;
  for (int64_t e = 0; e < num_experts; ++e) max = std::max(max, logits[e]);
  for (int64_t e = 0; e < num_experts; ++e) p[static_cast<size_t>(e)] = std::exp(logits[e] - max);
  const float total = Sum(p.data(), num_experts);
  for (float& v : p) v = v / total;
  std::vector<int64_t> order(static_cast<size_t>(num_experts));
  for (int64_t e = 0; e < num_experts; ++e) order[static_cast<size_t>(e)] = e;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)];
  });
  order.resize(static_cast<size_t>(k));
  std::vector<float> top;
  for (int64_t e : order) top.push_back(p[static_cast<size_t>(e)]);
  const float denom = Sum(top.data(), k);
  std::sort(order.begin(), order.end());
  Route r;
  for (int64_t e : order) {
    r.experts.push_back(e);
    r.weights.push_back(p[static_cast<size_t>(e)] / denom);
  }
  return r;
}

// The rows that chose each expert, in ascending row order, with the weight each gave it: the
// router's choice for a batch (RouteRow per row of `logits`, rows x num_experts), grouped so the
// reference and the sharded pass walk experts in ascending index over the same rows.
struct ExpertRows {
  std::vector<int64_t> rows;
  std::vector<float> weights;
};
inline std::vector<ExpertRows> RouteRows(const float* logits, int64_t rows, int64_t num_experts,
                                         int64_t k) {
  std::vector<ExpertRows> by_expert(static_cast<size_t>(num_experts));
  for (int64_t r = 0; r < rows; ++r) {
    const Route route = RouteRow(logits + r * num_experts, num_experts, k);
    for (size_t i = 0; i < route.experts.size(); ++i) {
      ExpertRows& chosen = by_expert[static_cast<size_t>(route.experts[i])];
      chosen.rows.push_back(r);
      chosen.weights.push_back(route.weights[i]);
    }
  }
  return by_expert;
}

// Checks a Forward batch before any cache is touched (the reference's and the sharded pass's
// rules are one): every sequence has its own cache (`fits(cache)`: made for this model), at
// least one new token, room for them, and tokens in [0, vocab). Returns the number of rows.
// Throws Error (kInvalidInput).
template <typename Step, typename Fits>
int64_t CheckBatch(std::span<Step> batch, int64_t vocab, Fits fits) {
  std::set<const void*> seen;
  int64_t rows = 0;
  for (const Step& step : batch) {
    if (step.cache == nullptr) throw InvalidInput("Forward: a sequence has no KV cache");
    if (!seen.insert(step.cache).second) {
      throw InvalidInput("Forward: the same KV cache appears twice in one batch");
    }
    if (!fits(*step.cache)) throw InvalidInput("Forward: KV cache was made for a different model");
    if (step.tokens.empty()) throw InvalidInput("Forward: a sequence has no new tokens");
    const auto n = static_cast<int64_t>(step.tokens.size());
    if (step.cache->length() + n > step.cache->capacity()) {
      throw InvalidInput("Forward: " + std::to_string(n) + " new tokens overflow a KV cache at " +
                         std::to_string(step.cache->length()) + " of " +
                         std::to_string(step.cache->capacity()) + " positions");
    }
    for (int32_t t : step.tokens) {
      if (t < 0 || t >= vocab) {
        throw InvalidInput("token " + std::to_string(t) + " is outside the vocabulary [0, " +
                           std::to_string(vocab) + ")");
      }
    }
    rows += n;
  }
  return rows;
}

// Rows [begin, begin + count) of a row-major [*, cols] matrix (empty stays empty).
inline std::vector<float> Rows(const std::vector<float>& m, int64_t cols, int64_t begin,
                               int64_t count) {
  if (m.empty()) return {};
  return {m.begin() + begin * cols, m.begin() + (begin + count) * cols};
}

// Columns [begin, begin + count) of a row-major [rows, cols] matrix, as [rows, count].
inline std::vector<float> Columns(const std::vector<float>& m, int64_t rows, int64_t cols,
                                  int64_t begin, int64_t count) {
  std::vector<float> out(static_cast<size_t>(rows * count));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(m.begin() + r * cols + begin, count, out.begin() + r * count);
  }
  return out;
}

// A bias pointer for the kernels: nullptr when the model has none.
inline const float* OrNull(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

}  // namespace lockstep::model::ops
