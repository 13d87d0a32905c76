// ModelSpec — the shape of a decoder-only transformer, read from a Hugging Face config.json,
// and the exact parameter arithmetic derived from it.
//
// A plain value type: everything the planner needs to know about a model's structure (sizes,
// attention grouping, biases, experts), nothing about its weights' values. Supported families
// are the Llama-style decoders: `llama`, `mistral`, `mixtral` (sparse MoE MLP) and `qwen2` (q/k/v
// projection biases). Every count is int64 and exact, so parameter totals match the published
// figures to the last parameter (examples/models/*/config.json holds real configs; the tests
// check each total). Pure functions, thread-safe.
//
// Reading rules follow the transformers library's config classes: num_key_value_heads defaults
// to num_attention_heads (multi-head attention), head_dim to hidden_size / num_attention_heads,
// tie_word_embeddings to false, and rope_theta / rms_norm_eps / max_position_embeddings to each
// family's default when absent. A present field with the wrong type or value is an error, never
// silently defaulted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/common/dtype.h"

namespace lockstep::partition {

// RoPE scaling as given in `rope_scaling` ("rope_type", or the older "type" key).
struct RopeScaling {
  // "linear", "dynamic", "llama3" or "yarn".
  std::string type;
  double factor = 1.0;
  // llama3 only: the band limits and the context length the base model was trained on.
  double low_freq_factor = 0.0;
  double high_freq_factor = 0.0;
  int64_t original_max_position_embeddings = 0;

  friend bool operator==(const RopeScaling&, const RopeScaling&) = default;
};

struct ModelSpec {
  // Display name: `_name_or_path` when the config has one, else the folder holding config.json.
  std::string name;
  // "llama", "mistral", "mixtral" or "qwen2".
  std::string model_type;

  int64_t hidden_size = 0;
  // Width of the gated MLP (of each expert, for MoE).
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  // Grouped-query attention: heads share num_kv_heads key/value heads (num_heads % num_kv_heads
  // == 0); equal to num_heads for plain multi-head attention.
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  // The LM head reuses the embedding matrix (no separate lm_head weights).
  bool tie_word_embeddings = false;
  // Biases on the q, k and v projections (qwen2 always; llama when attention_bias).
  bool qkv_bias = false;
  // Bias on the attention output projection (llama attention_bias only).
  bool o_bias = false;
  // Biases on the gate/up/down projections (llama mlp_bias).
  bool mlp_bias = false;
  // Mixture of experts: 0 for a dense MLP; else experts per layer and experts used per token.
  int64_t num_experts = 0;
  int64_t experts_per_token = 0;

  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  // Attention window in tokens (mistral v0.1: 4096); 0 = full causal attention.
  int64_t sliding_window = 0;
  // The checkpoint's element type (`torch_dtype`, or `dtype` in newer configs), when given and
  // one Lockstep knows (float32, float16, bfloat16).
  std::optional<Dtype> torch_dtype;

  bool is_moe() const { return num_experts > 0; }
  // Width of all query heads together, and of the key (or value) heads.
  int64_t q_width() const { return num_heads * head_dim; }
  int64_t kv_width() const { return num_kv_heads * head_dim; }

  friend bool operator==(const ModelSpec&, const ModelSpec&) = default;
};

// Model types ParseModelSpec accepts, sorted.
std::vector<std::string> SupportedModelTypes();

// Parses config.json text. `source` names the file in error messages. Throws Error
// (kInvalidInput) naming the source, the field and what is valid: malformed JSON, a model_type
// not in SupportedModelTypes(), a missing required field, a field of the wrong type or out of
// range, heads not divisible by KV heads, hidden_size not divisible by heads without head_dim.
ModelSpec ParseModelSpec(std::string_view json_text, const std::string& source);

// Reads `path`: a config.json file, or a folder holding one. Throws Error (kNotFound) when
// neither exists, otherwise as ParseModelSpec. The name defaults to the holding folder's name.
ModelSpec LoadModelSpec(const std::filesystem::path& path);

// Parameter counts, exact. A "layer" is one decoder block: attention + MLP + its two RMSNorms.
struct ParameterCounts {
  int64_t embedding = 0;            // vocab_size x hidden_size token embedding
  int64_t attention_per_layer = 0;  // q, k, v, o projections and their biases
  int64_t mlp_per_layer = 0;        // gate/up/down (all experts) + the MoE router
  int64_t norms_per_layer = 0;      // input and post-attention RMSNorm weights
  int64_t per_layer = 0;            // attention + mlp + norms
  int64_t final_norm = 0;           // the RMSNorm before the LM head
  int64_t lm_head = 0;              // vocab_size x hidden_size; 0 when tied to the embedding
  int64_t total = 0;                // what the model cards publish
  // MoE: parameters of one layer a single token touches (router + experts_per_token experts);
  // equal to per_layer for a dense model.
  int64_t active_per_layer = 0;
  // Parameters one token touches: active layers + embedding row set + final norm + LM head.
  int64_t active_total = 0;
};

ParameterCounts CountParameters(const ModelSpec& spec);

// Bytes of weights at `dtype` (every parameter stored at that width).
int64_t WeightBytes(const ModelSpec& spec, Dtype dtype);
// Key + value cache for one token of one sequence across all layers.
int64_t KvCacheBytesPerToken(const ModelSpec& spec, Dtype dtype);
// Matrix-multiply FLOPs (2 per multiply-add) to decode one token: every active weight once
// (the embedding is a lookup, not a product) plus attention over `context` cached tokens
// (QK^T and attention x V: 4 x heads x head_dim per attended token per layer).
int64_t DecodeFlopsPerToken(const ModelSpec& spec, int64_t context);

}  // namespace lockstep::partition
