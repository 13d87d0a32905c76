#include "lockstep/model/reference.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"
#include "lockstep/model/weight.h"
#include "ops.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;

const float* OrNull(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

KvCache::KvCache(const ModelSpec& spec, int64_t capacity)
    : capacity_(capacity), kv_width_(spec.kv_width()) {
  if (capacity <= 0) {
    throw InvalidInput("KV cache capacity must be > 0 positions, got " + std::to_string(capacity));
  }
  keys_.assign(static_cast<size_t>(spec.num_layers),
               std::vector<float>(static_cast<size_t>(capacity * kv_width_)));
  values_ = keys_;
}

std::vector<float> RopeInverseFrequencies(const ModelSpec& spec) {
  const int64_t dim = spec.head_dim;
  std::vector<float> inv(static_cast<size_t>(dim / 2));
  const auto base = static_cast<float>(spec.rope_theta);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[static_cast<size_t>(i)] = 1.0f / std::pow(base, exponent);
  }
  if (!spec.rope_scaling || spec.rope_scaling->type == "default") return inv;
  const partition::RopeScaling& rs = *spec.rope_scaling;
  const auto factor = static_cast<float>(rs.factor);
  if (rs.type == "linear") {
    for (float& f : inv) f /= factor;
    return inv;
  }
  if (rs.type != "llama3") {
    throw InvalidInput("rope_scaling type '" + rs.type +
                       "' is not implemented by the reference forward pass (valid: linear, "
                       "llama3)");
  }
  // transformers' _compute_llama3_parameters, in fp32.
  const auto old_context = static_cast<float>(rs.original_max_position_embeddings);
  const auto low = static_cast<float>(rs.low_freq_factor);
  const auto high = static_cast<float>(rs.high_freq_factor);
  const float low_freq_wavelen = old_context / low;
  const float high_freq_wavelen = old_context / high;
  const auto two_pi = static_cast<float>(2.0 * std::numbers::pi);
  for (float& f : inv) {
    const float wavelen = two_pi / f;
    const float scaled = wavelen > low_freq_wavelen ? f / factor : f;
    const float smooth = (old_context / wavelen - low) / (high - low);
    const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = medium ? smoothed : scaled;
  }
  return inv;
}

ReferenceModel::ReferenceModel(ModelSpec spec, LlamaWeights weights)
    : spec_(std::move(spec)), weights_(std::move(weights)) {
  if (spec_.head_dim % 2 != 0) {
    throw InvalidInput("head_dim " + std::to_string(spec_.head_dim) +
                       " is odd; rotate-half RoPE needs an even head_dim");
  }
  CheckLlamaWeights(weights_, spec_);
  inv_freq_ = RopeInverseFrequencies(spec_);
}

std::vector<std::vector<float>> ReferenceModel::Forward(std::span<SequenceStep> batch) const {
  const ModelSpec& s = spec_;
  const int64_t h = s.hidden_size, qw = s.q_width(), kvw = s.kv_width(), f = s.intermediate_size;
  const int64_t hd = s.head_dim, half = hd / 2, group = s.num_heads / s.num_kv_heads;
  const auto eps = static_cast<float>(s.rms_norm_eps);
  const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));

  // Validate everything before touching any cache.
  const int64_t rows = ops::CheckBatch(batch, s.vocab_size, [&](const KvCache& c) {
    return c.kv_width_ == kvw && static_cast<int64_t>(c.keys_.size()) == s.num_layers;
  });

  // Rows: every new token of every sequence, in batch order.
  std::vector<int64_t> row_pos, row_seq;
  std::vector<float> x(static_cast<size_t>(rows * h));
  for (size_t b = 0; b < batch.size(); ++b) {
    for (size_t i = 0; i < batch[b].tokens.size(); ++i) {
      const int64_t r = static_cast<int64_t>(row_pos.size());
      row_pos.push_back(batch[b].cache->length_ + static_cast<int64_t>(i));
      row_seq.push_back(static_cast<int64_t>(b));
      weights_.embed.RowFp32(batch[b].tokens[i], &x[static_cast<size_t>(r * h)]);
    }
  }
  // cos/sin per row, shared by every layer: freqs = position * inv_freq (fp32).
  std::vector<float> cos(static_cast<size_t>(rows * half)), sin(cos.size());
  for (int64_t r = 0; r < rows; ++r) {
    ops::RopeTable(row_pos[r], inv_freq_, &cos[r * half], &sin[r * half]);
  }

  std::vector<float> xn(x.size()), q(static_cast<size_t>(rows * qw)),
      k(static_cast<size_t>(rows * kvw)), v(k.size()), attn(q.size()), proj(x.size()),
      gate(static_cast<size_t>(rows * f)), up(gate.size());
  int64_t max_context = 0;
  for (int64_t p : row_pos) max_context = std::max(max_context, p + 1);
  std::vector<float> scores(static_cast<size_t>(max_context));
  std::vector<float> scratch(static_cast<size_t>(ScratchForWeightedSum(max_context, hd)));

  for (int64_t layer = 0; layer < s.num_layers; ++layer) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
    for (int64_t r = 0; r < rows; ++r) {
      ops::RmsNorm(&x[r * h], w.input_norm.data(), h, eps, &xn[r * h]);
    }
    MatMul(xn.data(), rows, w.q, OrNull(w.q_bias), q.data());
    MatMul(xn.data(), rows, w.k, OrNull(w.k_bias), k.data());
    MatMul(xn.data(), rows, w.v, OrNull(w.v_bias), v.data());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t head = 0; head < s.num_heads; ++head) {
        ops::ApplyRope(&q[r * qw + head * hd], &cos[r * half], &sin[r * half], half);
      }
      for (int64_t head = 0; head < s.num_kv_heads; ++head) {
        ops::ApplyRope(&k[r * kvw + head * hd], &cos[r * half], &sin[r * half], half);
      }
      // Store this row's key and value; rows of a prefill are all stored before any attends.
      KvCache& cache = *batch[static_cast<size_t>(row_seq[r])].cache;
      std::copy_n(&k[r * kvw], kvw, &cache.keys_[layer][row_pos[r] * kvw]);
      std::copy_n(&v[r * kvw], kvw, &cache.values_[layer][row_pos[r] * kvw]);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const KvCache& cache = *batch[static_cast<size_t>(row_seq[r])].cache;
      const float* keys = cache.keys_[layer].data();
      const float* values = cache.values_[layer].data();
      for (int64_t head = 0; head < s.num_heads; ++head) {
        const int64_t kv_off = (head / group) * hd;
        ops::AttendHead(&q[r * qw + head * hd], keys + kv_off, values + kv_off, kvw, row_pos[r],
                        s.sliding_window, hd, scale, scores.data(), scratch,
                        &attn[r * qw + head * hd]);
      }
    }
    MatMul(attn.data(), rows, w.o, OrNull(w.o_bias), proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] = x[i] + proj[i];
    for (int64_t r = 0; r < rows; ++r) {
      ops::RmsNorm(&x[r * h], w.post_norm.data(), h, eps, &xn[r * h]);
    }
    if (s.is_moe()) {
      MoeBlock(w, xn.data(), rows, proj.data());
    } else {
      MatMul(xn.data(), rows, w.gate, OrNull(w.gate_bias), gate.data());
      MatMul(xn.data(), rows, w.up, OrNull(w.up_bias), up.data());
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = ops::Silu(gate[i]) * up[i];
      MatMul(gate.data(), rows, w.down, OrNull(w.down_bias), proj.data());
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] = x[i] + proj[i];
  }

  // Final norm and LM head on each sequence's last row only.
  std::vector<std::vector<float>> logits;
  std::vector<float> last(static_cast<size_t>(h));
  int64_t end = 0;
  for (SequenceStep& step : batch) {
    end += static_cast<int64_t>(step.tokens.size());
    ops::RmsNorm(&x[(end - 1) * h], weights_.final_norm.data(), h, eps, last.data());
    std::vector<float> out(static_cast<size_t>(s.vocab_size));
    MatMul(last.data(), 1, weights_.head(), nullptr, out.data());
    logits.push_back(std::move(out));
    step.cache->length_ += static_cast<int64_t>(step.tokens.size());
  }
  return logits;
}

void ReferenceModel::MoeBlock(const LayerWeights& w, const float* xn, int64_t rows,
                              float* out) const {
  const ModelSpec& s = spec_;
  const int64_t h = s.hidden_size, f = s.intermediate_size, experts = s.num_experts;
  std::vector<float> logits(static_cast<size_t>(rows * experts));
  MatMul(xn, rows, w.router, nullptr, logits.data());
  const std::vector<ops::ExpertRows> chosen =
      ops::RouteRows(logits.data(), rows, experts, s.experts_per_token);
  std::fill(out, out + rows * h, 0.0f);
  // Expert by expert in ascending index, over the rows that chose it (each row's products are
  // its own: the batch around it never changes them).
  for (int64_t e = 0; e < experts; ++e) {
    const std::vector<int64_t>& picked = chosen[static_cast<size_t>(e)].rows;
    const std::vector<float>& weight = chosen[static_cast<size_t>(e)].weights;
    if (picked.empty()) continue;
    const auto n = static_cast<int64_t>(picked.size());
    std::vector<float> xe(static_cast<size_t>(n * h)), gate(static_cast<size_t>(n * f)),
        up(gate.size()), y(xe.size());
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(xn + picked[static_cast<size_t>(i)] * h, h, &xe[static_cast<size_t>(i * h)]);
    }
    const ExpertWeights& x = w.experts[static_cast<size_t>(e)];
    MatMul(xe.data(), n, x.gate, nullptr, gate.data());
    MatMul(xe.data(), n, x.up, nullptr, up.data());
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = ops::Silu(gate[i]) * up[i];
    MatMul(gate.data(), n, x.down, nullptr, y.data());
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + picked[static_cast<size_t>(i)] * h;
      const float wt = weight[static_cast<size_t>(i)];
      for (int64_t d = 0; d < h; ++d) o[d] = o[d] + y[static_cast<size_t>(i * h + d)] * wt;
    }
  }
}

int32_t SampleToken(std::span<const float> logits, const SamplingOptions& options, int64_t step) {
  if (logits.empty()) throw InvalidInput("SampleToken: empty logits");
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature)) {
    throw InvalidInput("temperature must be a finite number >= 0, got " +
                       std::to_string(options.temperature));
  }
  if (!(options.top_p > 0.0 && options.top_p <= 1.0)) {
    throw InvalidInput("top_p must be in (0, 1], got " + std::to_string(options.top_p));
  }
  if (options.temperature == 0.0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) -
                                logits.begin());  // first maximum: lowest index on ties
  }
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probs(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    probs[i] = std::exp((static_cast<double>(logits[i]) - max) / options.temperature);
  }
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  size_t kept = order.size();
  if (options.top_p < 1.0) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
    double total = 0.0;
    for (double p : probs) total += p;
    double cumulative = 0.0;
    for (kept = 0; kept < order.size();) {
      cumulative += probs[order[kept++]];
      if (cumulative >= options.top_p * total) break;
    }
  }
  double kept_total = 0.0;
  for (size_t i = 0; i < kept; ++i) kept_total += probs[order[i]];
  // Counter-based uniform in [0, 1): 53 bits of a SplitMix64 hash of (seed, step).
  const uint64_t bits = Mix64(Mix64(options.seed ^ 0x5851f42d4c957f2dULL) +
                              static_cast<uint64_t>(step) * 0x9e3779b97f4a7c15ULL);
  const double u = static_cast<double>(bits >> 11) * 0x1p-53 * kept_total;
  double acc = 0.0;
  for (size_t i = 0; i < kept; ++i) {
    acc += probs[order[i]];
    if (u < acc) return order[i];
  }
  return order[kept - 1];
}

Generation GenerateWith(const ForwardStep& step, std::span<const int32_t> prompt, int64_t max_new,
                        const SamplingOptions& options, bool keep_logits,
                        std::span<const int32_t> stop_tokens) {
  if (prompt.empty()) throw InvalidInput("the prompt needs at least one token");
  if (max_new < 0) throw InvalidInput("max_new must be >= 0, got " + std::to_string(max_new));
  Generation g;
  if (max_new == 0) return g;
  std::vector<float> logits = step({prompt.begin(), prompt.end()});
  for (int64_t i = 0; i < max_new; ++i) {
    const int32_t token = SampleToken(logits, options, i);
    g.tokens.push_back(token);
    if (keep_logits) g.logits.push_back(logits);
    if (std::find(stop_tokens.begin(), stop_tokens.end(), token) != stop_tokens.end()) {
      g.stopped = true;
      break;
    }
    if (i + 1 < max_new) logits = step({token});
  }
  return g;
}

Generation Generate(const ReferenceModel& model, std::span<const int32_t> prompt, int64_t max_new,
                    const SamplingOptions& options, bool keep_logits) {
  KvCache cache =
      model.NewCache(static_cast<int64_t>(prompt.size()) + std::max<int64_t>(max_new, 1));
  return GenerateWith(
      [&](const std::vector<int32_t>& tokens) {
        std::vector<SequenceStep> step = {{&cache, tokens}};
        return std::move(model.Forward(step)[0]);
      },
      prompt, max_new, options, keep_logits);
}

}  // namespace lockstep::model
