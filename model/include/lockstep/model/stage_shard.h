// One chip's share of the model — the shard of (stage, rank) — and the forward pass split into
// phases at the collectives, so a worker can run its phases and exchange the results over links.
//
// A shard holds only its slices (Megatron-style, as sharded.h explains in detail):
//   * embedding and LM head vocab-parallel: rank r of a stage of degree t holds vocabulary rows
//     [vocab * r / t, vocab * (r + 1) / t);
//   * q/k/v column-parallel by KV heads (and the query heads sharing them), gate/up
//     column-parallel over the intermediate width;
//   * o and down row-parallel over the query width / intermediate width: the shard computes the
//     canonical chunk partials (kernels.h) of its contraction slice — when every slice is a
//     whole number of 64-element chunks (RowParallelProjection). Otherwise (small models) that
//     product is column-parallel, as in ShardedModel: the shard holds the weight rows of its
//     hidden outputs [hidden * r / t, hidden * (r + 1) / t) over the whole contraction, its
//     Partial is its slice of the product's input (kColumnInput), the reduce-scatter carries
//     that slice to every rank, and each rank computes its outputs from the gathered input with
//     whole canonical dot products (ColumnOutputs);
//   * with t > num_key_value_heads, each rank holds (a copy of) the one KV head its query heads
//     use;
//   * norms and the o/down biases replicated (the bias is added once, by the combine).
//
// The phases of one step on one stage (rows = the step's new tokens of every sequence, in order):
//   Embed (first stage)        -> Partial          | CombineEmbedding -> x [rows, hidden]
//   per layer:
//     AttentionPartials(x)     -> Partial (writes the KV cache)
//                                                  | CombineRowParallel -> + x (residual)
//     MlpPartials(x)           -> Partial          | CombineRowParallel -> + x (residual)
//   HeadLogits(x) (last stage) -> this rank's logits slice per sequence | concatenate, sample.
// A combine takes every rank's Partial (index = rank) and gives any output range [begin, end) of
// the hidden dimension, so it can run whole on every rank (all-gather of partials) or segment by
// segment (reduce-scatter, each output combined by exactly one rank, then all-gather); a Partial
// can be cut into such segments (Slice) and rebuilt from the wire (shape only). Every combine
// follows the canonical reduction tree, so any split gives the reference's bits.
//
// Thread-safety: a StageShard's weights are immutable; its KV caches are not: one thread at a
// time (a ChipRunner). The free functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/model/sharded.h"
#include "lockstep/model/weight.h"
#include "lockstep/partition/cost_model.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/partition/plan.h"

namespace lockstep::model {

// The model units of one pipeline stage and its tensor-parallel degree. A stage may hold only
// the embedding or only the head (no layers): it still has a TP group (vocab-parallel).
struct StageUnits {
  bool embedding = false;
  int64_t first_layer = 0;  // decoder layers [first_layer, end_layer); may be empty
  int64_t end_layer = 0;
  bool head = false;  // final norm, LM head and sampling
  int tp = 1;
};

// The stages of a partitioner plan, or of a ModelLayout (embedding on the first stage, head on
// the last).
std::vector<StageUnits> StagesFromPlan(const partition::Plan& plan);
std::vector<StageUnits> StagesFromLayout(const ModelLayout& layout);

// Throws Error (kInvalidInput) naming the stage when `stages` cannot run `spec`: units out of
// order or missing, or a degree partition::TensorParallelProblem refuses for a stage with layers
// (ValidateLayout's rule).
void ValidateStages(const partition::ModelSpec& spec, const std::vector<StageUnits>& stages);

// Throws Error (kInvalidInput) for a mixture-of-experts spec, saying where it can run: the
// shards of the distributed runtime (ExtractShard, LoadShard, StageShard, the shard buffers) are
// dense; the in-process reference and ShardedModel run MoE.
void RequireDenseShards(const partition::ModelSpec& spec);

// Whether the o / down projection of a stage of degree `tp` is row-parallel or column-parallel:
// the partitioner's rule (cost_model.h), which also decides whether its all-reduce can be
// one-shot.
using partition::RowParallelProjection;

// One decoder layer's slices on one rank. Empty bias vectors mean no bias.
struct ShardLayer {
  int64_t q_head_begin = 0, q_heads = 0, kv_head_begin = 0, kv_heads = 0;
  // Hidden outputs of the column-parallel o / down projections (RowParallelProjection false).
  int64_t out_begin = 0, out_count = 0;
  std::vector<float> input_norm, post_norm;   // replicated [hidden]
  Weight q, k, v;                             // [heads * head_dim, hidden]
  std::vector<float> q_bias, k_bias, v_bias;  // this rank's slices
  Weight o;                   // [hidden, q_heads * head_dim]; column-parallel: [out_count, q_width]
  std::vector<float> o_bias;  // replicated [hidden]
  int64_t f_begin = 0, f_count = 0;       // intermediate slice
  Weight gate, up;                        // [f_count, hidden]
  std::vector<float> gate_bias, up_bias;  // [f_count]
  Weight down;                   // [hidden, f_count]; column-parallel: [out_count, intermediate]
  std::vector<float> down_bias;  // replicated [hidden]
  // Mixture of experts (in-process ShardedModel only): the router replicated, every expert's
  // gate/up/down sliced as the dense MLP's above.
  Weight router;
  std::vector<ExpertWeights> experts;
};

// Everything one chip holds: its slices of the units of its stage.
struct ShardWeights {
  int stage = 0;
  int rank = 0;
  StageUnits units;
  int64_t vocab_begin = 0, vocab_count = 0;  // this rank's vocabulary rows (embedding / head)
  Weight embed;                              // [vocab_count, hidden] when units.embedding
  std::vector<ShardLayer> layers;            // units.first_layer .. end_layer
  std::vector<float> final_norm;             // [hidden] when units.head
  Weight head;                               // [vocab_count, hidden] when units.head

  // Bytes of the weights held (Weight::bytes of the projections, norms and biases x 4).
  int64_t bytes() const;
};

// The geometry (head ranges, intermediate slice, column-parallel outputs) of one decoder layer on
// rank `rank` of a stage of degree `tp`, weights empty.
ShardLayer LayerGeometry(const partition::ModelSpec& spec, int tp, int rank);

// Slices the shard of (stage, rank) out of full weights. Throws as ValidateStages and
// CheckLlamaWeights, and for a stage or rank out of range.
ShardWeights ExtractShard(const LlamaWeights& weights, const partition::ModelSpec& spec,
                          const std::vector<StageUnits>& stages, int stage, int rank);

// A shard as a safetensors buffer (each slice under its Hugging Face tensor name: fp32, or an int8
// projection as I8 + F32 `_scale` row-major as in an int8 checkpoint; where it sits in the stage
// and the full tensor, and the projections' format, are in the metadata), so it can be shipped
// to a worker.
// ShardFromBytes checks every tensor against `spec` and throws Error (kInvalidInput) naming the
// tensor for a buffer that does not belong to it.
std::vector<std::byte> ShardToBytes(const ShardWeights& shard, const partition::ModelSpec& spec);
ShardWeights ShardFromBytes(std::span<const std::byte> bytes, const partition::ModelSpec& spec);

// Which collective a Partial belongs to.
enum class PartialKind : uint8_t {
  kEmbedding,    // each row comes whole from the rank holding its token (chunks = 1)
  kRowParallel,  // o / down projection: chunk partials of this rank's contraction slice
  // o / down projection, column-parallel: this rank's slice [out_begin, out_begin + out_count)
  // of the product's input (not of its outputs), chunks = 1; every rank needs every slice.
  kColumnInput,
};

// One rank's contribution to one collective, for outputs [out_begin, out_begin + out_count) of
// every row: values[(row * out_count + o) * chunks + c]. For kEmbedding a row of a token outside
// this rank's vocabulary slice is zero (the combine never reads it).
struct Partial {
  PartialKind kind = PartialKind::kRowParallel;
  int64_t rows = 0;
  int64_t out_begin = 0;
  int64_t out_count = 0;
  // Where this rank's chunks sit in the whole contraction: every rank of a stage has the same
  // number, so a receiver rebuilds it from the sender's rank (first_chunk = rank * chunks).
  int64_t first_chunk = 0;
  int64_t chunks = 1;
  // A rank of a degree-1 stage holds the whole contraction: its values are the finished
  // products (chunks = 1; the canonical Dot, computed by the row-blocked MatMulTransposed,
  // which gives the same bits as combining its chunk partials, only faster). Bias not added.
  bool reduced = false;
  // Row-parallel only: instead of every chunk, the values are the sums of the canonical tree's
  // nodes over this rank's chunks (TreeNodes(total, first_chunk, first_chunk + chunks), k of
  // them), laid out node-major: values[(row * k + node) * out_count + o]. A few sums per output
  // instead of `chunks` (what a one-shot all-reduce sends); combines to the same bits.
  bool tree_nodes = false;
  std::vector<float> values;

  // The outputs [begin, begin + count) of this partial (absolute output indices). Chunk
  // partials only.
  Partial Slice(int64_t begin, int64_t count) const;
  // This row-parallel chunk partial as tree-node sums of a contraction of `total_chunks`.
  Partial TreeNodeSums(int64_t total_chunks) const;
};

// A sequence's new tokens in a step: its slot (KV cache) and the position of its first token.
struct RowGroup {
  int32_t slot = 0;
  int64_t position = 0;
  int64_t count = 0;
};

class StageShard {
 public:
  // Throws as ValidateStages for a shard that does not fit `spec`.
  StageShard(partition::ModelSpec spec, ShardWeights weights);

  const partition::ModelSpec& spec() const { return spec_; }
  const ShardWeights& weights() const { return weights_; }
  // Forgets a slot's KV cache (a new sequence takes the slot). Caches grow as positions come.
  void ResetSlot(int32_t slot);

  // Phase: this rank's embedding rows of `tokens` (all outputs). Throws for a token outside the
  // vocabulary.
  Partial Embed(std::span<const int32_t> tokens) const;
  // Phase: RMSNorm, q/k/v, RoPE, KV-cache write and attention of this rank's heads for the rows
  // of `groups` (x is [rows, hidden], rows in group order), then the o-projection partials.
  // `layer` is the absolute decoder layer index. Throws for a position that skips ahead of the
  // slot's cache.
  Partial AttentionPartials(int64_t layer, const float* x, std::span<const RowGroup> groups);
  // Phase: RMSNorm, gate/up, SiLU and the down-projection partials of this rank's slice.
  Partial MlpPartials(int64_t layer, const float* x, int64_t rows) const;
  // Phase: final RMSNorm of each given row (x is [n, hidden]) and this rank's logits slice,
  // [n, vocab_count].
  std::vector<float> HeadLogits(const float* x, int64_t n) const;

  // A column-parallel o (mlp = false) or down (mlp = true) projection: this rank's hidden outputs
  // [out_begin, out_begin + out_count) of `layer` from every rank's kColumnInput partial
  // (by_rank[r] from rank r), bias added: [rows, out_count]. Throws Error (kInternal) if the
  // slices do not tile the input.
  std::vector<float> ColumnOutputs(int64_t layer, bool mlp, std::span<const Partial> by_rank) const;

  // The o (mlp = false) or down (mlp = true) bias of `layer`; empty when none.
  const std::vector<float>& RowParallelBias(int64_t layer, bool mlp) const;

 private:
  struct Cache {
    int64_t length = 0;
    std::vector<std::vector<float>> keys, values;  // [layer][position * kv width]
  };
  partition::ModelSpec spec_;
  ShardWeights weights_;
  std::vector<float> inv_freq_;
  std::vector<Cache> caches_;  // by slot
};

// Combines every rank's row-parallel partials (by_rank[r] from rank r, all covering at least
// outputs [begin, end)) in the canonical tree and adds `bias` (may be empty): out is
// [rows, end - begin]. Throws Error (kInternal) if the ranks' chunks do not tile the contraction.
void CombineRowParallel(std::span<const Partial> by_rank, int64_t total_chunks, int64_t begin,
                        int64_t end, const std::vector<float>& bias, float* out);
// Combines embedding partials: row i of outputs [begin, end) from the rank whose vocabulary slice
// (vocab * r / tp ..) holds tokens[i].
void CombineEmbedding(std::span<const Partial> by_rank, std::span<const int32_t> tokens,
                      int64_t vocab, int64_t begin, int64_t end, float* out);

// Contraction chunks of a row-parallel product of width n (ceil(n / 64)).
int64_t ReductionChunks(int64_t n);

}  // namespace lockstep::model
