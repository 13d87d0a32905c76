// Every tensor of LlamaWeights under its Hugging Face name (internal header): the one walk over
// the names that loading, generating and slicing share.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// Calls visit(name, tensor) for every tensor of `spec` in canonical order (LlamaTensorSpecs'),
// with the member of `w` that holds it (LlamaWeights or const LlamaWeights; a mutable `w` gets
// its layers resized to the spec's first).
template <typename Weights, typename Visit>
void ForEachTensor(const partition::ModelSpec& spec, Weights& w, Visit visit) {
  if constexpr (!std::is_const_v<Weights>) w.layers.resize(static_cast<size_t>(spec.num_layers));
  visit(std::string("model.embed_tokens.weight"), w.embed);
  for (int64_t i = 0; i < spec.num_layers; ++i) {
    auto& l = w.layers[static_cast<size_t>(i)];
    auto v = [&](std::string_view suffix, auto& dst) { visit(LayerTensorName(i, suffix), dst); };
    v("input_layernorm.weight", l.input_norm);
    v("self_attn.q_proj.weight", l.q);
    v("self_attn.k_proj.weight", l.k);
    v("self_attn.v_proj.weight", l.v);
    v("self_attn.o_proj.weight", l.o);
    if (spec.qkv_bias) {
      v("self_attn.q_proj.bias", l.q_bias);
      v("self_attn.k_proj.bias", l.k_bias);
      v("self_attn.v_proj.bias", l.v_bias);
    }
    if (spec.o_bias) v("self_attn.o_proj.bias", l.o_bias);
    v("post_attention_layernorm.weight", l.post_norm);
    if (spec.is_moe()) {
      if constexpr (!std::is_const_v<Weights>) {
        l.experts.resize(static_cast<size_t>(spec.num_experts));
      }
      visit(RouterTensorName(i), l.router);
      for (int64_t e = 0; e < spec.num_experts; ++e) {
        auto& x = l.experts[static_cast<size_t>(e)];
        visit(ExpertTensorName(i, e, "w1"), x.gate);
        visit(ExpertTensorName(i, e, "w2"), x.down);
        visit(ExpertTensorName(i, e, "w3"), x.up);
      }
      continue;
    }
    v("mlp.gate_proj.weight", l.gate);
    v("mlp.up_proj.weight", l.up);
    v("mlp.down_proj.weight", l.down);
    if (spec.mlp_bias) {
      v("mlp.gate_proj.bias", l.gate_bias);
      v("mlp.up_proj.bias", l.up_bias);
      v("mlp.down_proj.bias", l.down_bias);
    }
  }
  visit(std::string("model.norm.weight"), w.final_norm);
  if (!spec.tie_word_embeddings) visit(std::string("lm_head.weight"), w.lm_head);
}

}  // namespace lockstep::model
