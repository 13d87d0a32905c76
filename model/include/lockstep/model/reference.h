// The single-process reference forward pass of a Llama-family model, following transformers'
// LlamaForCausalLM (also mistral and qwen2; mixtral's MixtralSparseMoeBlock in place of the MLP:
// router logits, softmax, top-k, renormalization, the chosen experts' outputs weighted and added
// in ascending expert order, ops.h RouteRow): token embedding; per layer RMSNorm
// (x * rsqrt(mean(x^2) + eps) * weight), q/k/v projections (+ qwen2 biases), rotate-half RoPE
// with rope_theta and linear or llama3 rope_scaling, causal grouped-query attention over a KV
// cache (optionally a sliding window), output projection and residual, RMSNorm, SiLU-gated MLP
// and residual; final RMSNorm and the LM head (the embedding when tied).
//
// Every reduction uses the canonical order of kernels.h, so a sequence's logits are the same
// bits whether it runs alone or batched with others, and whether its prefix came from a KV
// cache or was recomputed — this is the reference a partitioned run is checked against, bit
// for bit.
//
// Thread-safety: a ReferenceModel is immutable after construction; Forward may run
// concurrently on disjoint KV caches. A KvCache belongs to one sequence and is not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// Keys and values of one sequence, all layers, for up to `capacity` positions.
class KvCache {
 public:
  KvCache(const partition::ModelSpec& spec, int64_t capacity);

  // Positions filled so far (the next token's position).
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }

 private:
  friend class ReferenceModel;
  int64_t capacity_ = 0;
  int64_t kv_width_ = 0;
  int64_t length_ = 0;
  std::vector<std::vector<float>> keys_;    // [layer][position * kv_width]
  std::vector<std::vector<float>> values_;  // [layer][position * kv_width]
};

// New tokens for one sequence in a batched step.
struct SequenceStep {
  KvCache* cache = nullptr;
  std::vector<int32_t> tokens;
};

class ReferenceModel {
 public:
  // Throws Error (kInvalidInput) for weights whose sizes do not match the spec, or a
  // rope_scaling type other than linear / llama3 (dynamic and yarn are not implemented).
  ReferenceModel(partition::ModelSpec spec, LlamaWeights weights);

  const partition::ModelSpec& spec() const { return spec_; }
  const LlamaWeights& weights() const { return weights_; }
  // RoPE inverse frequencies (head_dim / 2), after rope_scaling.
  const std::vector<float>& inv_freq() const { return inv_freq_; }

  KvCache NewCache(int64_t capacity) const { return KvCache(spec_, capacity); }

  // Appends each sequence's tokens at its cache's positions and returns, per sequence, the
  // logits [vocab] of its last new token. Throws Error (kInvalidInput) for a token outside
  // [0, vocab), an empty token list, a cache that would overflow, or one cache used twice.
  std::vector<std::vector<float>> Forward(std::span<SequenceStep> batch) const;

 private:
  // The mixture-of-experts block of layer `w` for xn [rows, hidden] (post-attention normed):
  // out [rows, hidden].
  void MoeBlock(const LayerWeights& w, const float* xn, int64_t rows, float* out) const;

  partition::ModelSpec spec_;
  LlamaWeights weights_;
  std::vector<float> inv_freq_;
};

// Computes the RoPE inverse frequencies as transformers does (fp32), with rope_scaling applied.
std::vector<float> RopeInverseFrequencies(const partition::ModelSpec& spec);

// Token choice. temperature 0 = greedy (argmax, lowest index on ties); otherwise softmax of
// logits / temperature, restricted to the smallest set of most likely tokens whose probability
// reaches top_p, drawn with a counter-based generator: the draw for generated token i depends
// only on (seed, i), so a run is reproducible whatever ran before it.
struct SamplingOptions {
  double temperature = 0.0;  // >= 0
  double top_p = 1.0;        // (0, 1]
  uint64_t seed = 0;
};

int32_t SampleToken(std::span<const float> logits, const SamplingOptions& options, int64_t step);

struct Generation {
  std::vector<int32_t> tokens;             // the generated tokens (not the prompt)
  std::vector<std::vector<float>> logits;  // row i: the distribution tokens[i] was drawn from
  bool stopped = false;  // ended by a stop token (the last of `tokens`), not by max_new
};

// The generation loop over any forward pass: `step(tokens)` appends tokens to one sequence and
// returns the logits of the last. Prefills `prompt` and generates `max_new` tokens one at a
// time, or until it generates one of `stop_tokens` (kept as the last token, as Hugging Face's
// generate keeps EOS). Throws Error for an empty prompt or invalid sampling options.
using ForwardStep = std::function<std::vector<float>(const std::vector<int32_t>& tokens)>;
Generation GenerateWith(const ForwardStep& step, std::span<const int32_t> prompt, int64_t max_new,
                        const SamplingOptions& options, bool keep_logits = false,
                        std::span<const int32_t> stop_tokens = {});

// GenerateWith over the reference model and a fresh KV cache.
Generation Generate(const ReferenceModel& model, std::span<const int32_t> prompt, int64_t max_new,
                    const SamplingOptions& options, bool keep_logits = false);

}  // namespace lockstep::model
