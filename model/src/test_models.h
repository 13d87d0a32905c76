// Small model configs shared by the model library's tests (test-only header).
#pragma once

#include <string>

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

}  // namespace lockstep::model::testing
