// Llama-family weights: the Hugging Face tensor names and shapes a ModelSpec implies, a check
// that a checkpoint matches them, a deterministic generator of weights for any config (so demos
// and tests need no download), and the in-memory weights the reference forward pass runs
// (projections fp32 or int8 (weight.h), norms and biases fp32).
//
// Names follow transformers' LlamaForCausalLM state dict (also mistral and qwen2):
//   model.embed_tokens.weight                         [vocab, hidden]
//   model.layers.{i}.input_layernorm.weight           [hidden]
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight  [q_width|kv_width|hidden, hidden|q_width]
//   model.layers.{i}.self_attn.{q,k,v}_proj.bias      qwen2 / attention_bias
//   model.layers.{i}.self_attn.o_proj.bias            llama attention_bias
//   model.layers.{i}.post_attention_layernorm.weight  [hidden]
//   model.layers.{i}.mlp.{gate,up}_proj.weight        [intermediate, hidden]
//   model.layers.{i}.mlp.down_proj.weight             [hidden, intermediate]
//   model.layers.{i}.mlp.{gate,up,down}_proj.bias     llama mlp_bias
//   model.norm.weight                                 [hidden]
//   lm_head.weight                                    [vocab, hidden], absent when tied
// Mixture of experts (mixtral, transformers' MixtralForCausalLM) replaces the mlp.* tensors by
//   model.layers.{i}.block_sparse_moe.gate.weight           [num_experts, hidden]  (the router)
//   model.layers.{i}.block_sparse_moe.experts.{j}.w1.weight [intermediate, hidden] (gate)
//   model.layers.{i}.block_sparse_moe.experts.{j}.w2.weight [hidden, intermediate] (down)
//   model.layers.{i}.block_sparse_moe.experts.{j}.w3.weight [intermediate, hidden] (up)
// An int8 checkpoint (quantize.h) stores every 2-D weight above but the router as I8 with
// `<name>_scale` (F32) beside it; norms, biases and the router stay float.
//
// Pure functions over their arguments; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lockstep/common/dtype.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/model/weight.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// "model.layers.{layer}.{suffix}".
std::string LayerTensorName(int64_t layer, std::string_view suffix);
// "model.layers.{layer}.block_sparse_moe.experts.{expert}.{w}.weight", w = "w1" | "w2" | "w3".
std::string ExpertTensorName(int64_t layer, int64_t expert, std::string_view w);
// "model.layers.{layer}.block_sparse_moe.gate.weight".
std::string RouterTensorName(int64_t layer);
// Whether an int8 checkpoint stores the tensor as I8 (every 2-D weight but the router).
bool QuantizedInInt8(const TensorSpec& tensor);

// Every tensor the spec implies, in the canonical order (embedding, layers in order, final norm,
// LM head), all at `dtype`.
std::vector<TensorSpec> LlamaTensorSpecs(const partition::ModelSpec& spec, Dtype dtype);

// Checks that `checkpoint` holds every tensor of LlamaTensorSpecs(spec) with the right shape,
// and, when `dtype` is given, at that dtype (otherwise all tensors must share one dtype). An int8
// checkpoint (its embedding is I8) must hold every 2-D weight as I8 with its `_scale` tensor of
// one scheme (quantize.h), norms and biases float. Extra tensors are allowed (older checkpoints
// carry rotary_emb.inv_freq). Throws Error naming the checkpoint, the tensor, what it has and
// what the spec or the scheme needs: kNotFound for a missing tensor, kInvalidInput for a wrong
// shape, dtype or quantization layout. Runs before any weight is touched (headers only).
// Returns the format the projections load as: kFp32 for an fp32/fp16/bf16 checkpoint.
WeightFormat CheckLlamaWeights(const Checkpoint& checkpoint, const partition::ModelSpec& spec,
                               std::optional<Dtype> dtype = std::nullopt);

// The deterministic generator. Element `index` of tensor `name` is a function of (seed, name,
// index) only: a SplitMix64 counter hash feeds four uniforms whose sum (Irwin–Hall, integer and
// IEEE double arithmetic only, so the same bits on every platform) gives a normal-ish value.
// Matrices and biases get std 0.02 (transformers' initializer_range); norm weights 1.0 plus
// std 0.02. Naming the tensor rather than numbering it means a layer's weights do not change
// when the model gains layers or unties its embedding.
float GeneratedWeight(uint64_t seed, std::string_view tensor_name, int64_t index);
// GeneratedWeight of elements [first, first + out.size()) of one tensor.
void FillGeneratedWeights(uint64_t seed, std::string_view tensor_name, int64_t first,
                          std::span<float> out);

// Writes generated weights for `spec` to a .safetensors file at `dtype` (streamed: memory use
// does not grow with the model). Metadata records the seed and the model name. With
// `max_shard_bytes` > 0, `path` is a folder that gets a sharded checkpoint instead
// (WriteShardedSafetensors: files of at most that many bytes of tensors, and the index).
void WriteGeneratedWeights(const partition::ModelSpec& spec, uint64_t seed, Dtype dtype,
                           const std::filesystem::path& path, int64_t max_shard_bytes = 0);

// One expert of a mixture-of-experts layer: a gated MLP (w1 = gate, w3 = up, w2 = down).
struct ExpertWeights {
  Weight gate, up, down;
};

// One decoder layer's weights: projections as Weight ([out_features, in_features], fp32 or
// int8), norms and biases fp32. Empty bias vectors mean no bias. A dense layer has gate/up/down;
// a mixture-of-experts layer has the router (fp32 always) and its experts instead.
struct LayerWeights {
  std::vector<float> input_norm;
  Weight q, k, v, o;
  std::vector<float> q_bias, k_bias, v_bias, o_bias;
  std::vector<float> post_norm;
  Weight gate, up, down;
  std::vector<float> gate_bias, up_bias, down_bias;
  Weight router;                       // [num_experts, hidden]
  std::vector<ExpertWeights> experts;  // num_experts of them
};

struct LlamaWeights {
  Weight embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  Weight lm_head;                 // [vocab, hidden]; empty when tied to `embed`

  // The LM head matrix: lm_head, or the embedding when tied.
  const Weight& head() const { return lm_head.empty() ? embed : lm_head; }
  // The projections' format (the embedding's; CheckLlamaWeights keeps them all one).
  WeightFormat format() const { return embed.format; }
};

// Checks (CheckLlamaWeights) and loads a checkpoint: fp32 projections from a float checkpoint
// (widened exactly), int8 ones from an int8 checkpoint.
LlamaWeights LoadLlamaWeights(const Checkpoint& checkpoint, const partition::ModelSpec& spec);

// Checks that in-memory weights have the sizes `spec` needs (biases present exactly when the
// spec has them) and that every projection has the embedding's format. Throws Error
// (kInvalidInput) naming the tensor.
void CheckLlamaWeights(const LlamaWeights& weights, const partition::ModelSpec& spec);

// The generated weights in memory, exactly what WriteGeneratedWeights at fp32 then
// LoadLlamaWeights would give.
LlamaWeights GenerateLlamaWeights(const partition::ModelSpec& spec, uint64_t seed);

}  // namespace lockstep::model
