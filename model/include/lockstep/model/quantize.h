// int8 weights: quantizing a checkpoint (or weights in memory) to one of weight.h's schemes, the
// tensor layout of an int8 checkpoint, and comparing two sets of weights of one model.
//
// An int8 checkpoint is a safetensors file in which every 2-D weight of the model (the
// embedding, q/k/v/o, gate/up/down or the experts' w1/w2/w3, and lm_head when untied) is stored
// as
//   <name>        I8  [rows, cols]            q in [-127, 127], row-major
//   <name>_scale  F32 [rows, ceil(cols / 32)] int8-block32: one scale per 32 columns of a row
//                 F32 [rows, 1]               int8-channel: one scale per row
// so the weight is q * scale (QuantizeWeight's rounding: ties away from zero). Norms, biases and
// the MoE router stay F32 (widened exactly from the source; the router decides which experts run,
// and is small), and the embedding is looked up by dequantizing its row. The header's metadata
// holds "lockstep.quantization": the scheme name.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/model/weight.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

// The tensors of an int8 checkpoint of `spec` in `format`, in the order they are written.
std::vector<TensorSpec> QuantizedTensorSpecs(const partition::ModelSpec& spec, WeightFormat format);

// Writes the int8 checkpoint of `in` (an fp32, fp16 or bf16 checkpoint of `spec`, checked first)
// to `out`, one tensor in memory at a time. Throws Error (kInvalidInput) for an int8 input or an
// fp32 `format`, as CheckLlamaWeights for a checkpoint that does not match `spec`.
void QuantizeCheckpoint(const Checkpoint& in, const partition::ModelSpec& spec, WeightFormat format,
                        const std::filesystem::path& out);

// The same in memory: every projection of fp32 `weights` quantized, norms and biases copied.
LlamaWeights QuantizeWeights(const LlamaWeights& weights, WeightFormat format);

// How far the logits of `candidate` are from those of `baseline` on the same tokens: `baseline`
// generates `tokens` tokens greedily after `prompt`; `candidate` reads the same sequence
// (teacher-forced), so every position compares the two models on one context.
struct WeightsComparison {
  int64_t positions = 0;            // logit rows compared (= tokens)
  double max_abs_logit_diff = 0.0;  // over every logit of every row
  double mean_abs_logit_diff = 0.0;
  int64_t top1_agreements = 0;  // rows whose argmax (lowest index on ties) is the same
};
WeightsComparison CompareWeights(const ReferenceModel& baseline, const ReferenceModel& candidate,
                                 std::span<const int32_t> prompt, int64_t tokens);

}  // namespace lockstep::model
