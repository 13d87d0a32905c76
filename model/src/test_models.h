// Small model configs shared by the model library's tests (test-only header).
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model::testing {

// A tiny Llama with grouped-query attention (4 query heads on 2 KV heads, head_dim 8). `extra`
// is spliced into the JSON object (e.g. R"("tie_word_embeddings": true,)").
inline partition::ModelSpec TinyLlama(const std::string& extra = "",
                                      const std::string& model_type = "llama") {
  return partition::ParseModelSpec(R"({"_name_or_path": "tiny-)" + model_type +
                                       R"(", "model_type": ")" + model_type + R"(", )" + extra + R"(
    "hidden_size": 32, "intermediate_size": 72, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64})",
                                   "tiny-" + model_type);
}

// A tiny Mixtral: TinyLlama's attention, 4 experts of intermediate 64 per layer, 2 per token.
inline partition::ModelSpec TinyMixtral(const std::string& extra = "") {
  return partition::ParseModelSpec(
      R"({"_name_or_path": "tiny-mixtral", "model_type": "mixtral", )" + extra + R"(
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96,
    "num_local_experts": 4, "num_experts_per_tok": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64})",
      "tiny-mixtral");
}

// A Mixtral wide enough for row-parallel experts: ShardableModel's attention, 4 experts of
// intermediate 256 (64-element slices up to TP 4), 2 per token.
inline partition::ModelSpec ShardableMixtral() {
  return partition::ParseModelSpec(
      R"({"_name_or_path": "shardable-mixtral", "model_type": "mixtral",
    "hidden_size": 96, "head_dim": 32, "intermediate_size": 256, "num_hidden_layers": 4,
    "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 200,
    "num_local_experts": 4, "num_experts_per_tok": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64})",
      "shardable-mixtral");
}

// Wide enough for TP 8 with 64-element slices: 16 query heads on 8 KV heads of 32 (query width
// 512, 64 per shard at TP 8), intermediate 512, 4 layers; vocab 200 splits unevenly.
inline partition::ModelSpec ShardableModel(const std::string& extra = "",
                                           const std::string& type = "llama") {
  return partition::ParseModelSpec(
      R"({"_name_or_path": "shardable", "model_type": ")" + type + R"(", )" + extra + R"(
    "hidden_size": 96, "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 4,
    "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 200,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64})",
      "shardable");
}

// Seeded weights with the matrices scaled 5x: sharper than an init, so every term matters.
inline LlamaWeights SharpWeights(const partition::ModelSpec& spec) {
  LlamaWeights w = GenerateLlamaWeights(spec, 5);
  for (LayerWeights& l : w.layers) {
    for (Weight* m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) {
      for (float& x : m->values) x *= 5.0f;
    }
    for (ExpertWeights& e : l.experts) {
      for (Weight* m : {&e.gate, &e.up, &e.down}) {
        for (float& x : m->values) x *= 5.0f;
      }
    }
    for (float& x : l.router.values) x *= 30.0f;  // decisive routing, far from ties
  }
  return w;
}

inline bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

inline bool SameBits(const Weight& a, const Weight& b) {
  return a.format == b.format && a.rows == b.rows && a.cols == b.cols && a.q == b.q &&
         SameBits(a.values, b.values) && SameBits(a.scales, b.scales);
}

}  // namespace lockstep::model::testing
