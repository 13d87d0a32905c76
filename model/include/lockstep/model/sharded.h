// Sharded execution in one process: the model cut into pipeline stages (consecutive layer
// ranges), each stage split across a tensor-parallel group of shards, every shard computing
// from its own weight slice only, and the collectives done in memory in the canonical
// reduction order — so the logits are bit-identical to the ReferenceModel for every layout.
//
// How a stage of TP degree t splits the work (Megatron-style):
//   * q/k/v projections column-parallel by heads: shard s holds query heads
//     [s*h/t, (s+1)*h/t) and the KV heads they use (KV heads are replicated when t exceeds
//     num_kv_heads); attention is local.
//   * o projection row-parallel over the query width, down projection row-parallel over the
//     intermediate width: each shard computes the canonical chunk partials (kernels.h) of its
//     slice of the contraction, reduces the tree nodes that lie inside its slice, and the
//     collective combines the rest of the same tree (then adds the bias once). This needs every
//     shard boundary of the contraction on a 64-element chunk boundary; when a stage's slices are
//     not (small models: query width / t or intermediate / t not a multiple of 64), that product
//     is column-parallel instead: the shards' inputs are all-gathered and shard s computes
//     hidden outputs [s*hidden/t, (s+1)*hidden/t) over the whole contraction. Same weight bytes
//     per shard, same bits; a different collective (all-gather instead of all-reduce).
//   * gate/up column-parallel over the intermediate width; norms replicated.
//   * mixture of experts (mixtral): every expert split as the dense MLP (expert tensor
//     parallelism), the router replicated; each chosen expert's output is reduced over the
//     shards, then weighted and added in ascending expert order as the reference does.
//   * the embedding and the LM head vocab-parallel (each over its own degree, which may differ
//     from the neighbouring layers' when a plan gives them stages of their own): a token's row
//     comes from the shard that holds it; the logits are the shards' slices concatenated.
// A stage's degree must satisfy partition::TensorParallelProblem (divide num_attention_heads
// and intermediate_size; divide or be a multiple of num_key_value_heads), as the partitioner's.
//
// ModelLayout is deliberately small: a partitioner Plan converts into it (stages, TP degree
// per stage). Thread-safety: a ShardedModel is immutable after construction; a ShardedKvCache
// belongs to one sequence.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {

struct StageLayout {
  int64_t first_layer = 0;  // layers [first_layer, end_layer)
  int64_t end_layer = 0;
  int64_t tp = 1;  // tensor-parallel degree of this stage
};

struct ModelLayout {
  // Consecutive, non-empty, covering every layer in order.
  std::vector<StageLayout> stages;
  // Degrees of the vocab-parallel embedding and LM head; 0 = the first / last stage's tp.
  int64_t embed_tp = 0;
  int64_t head_tp = 0;

  int64_t EmbedTp() const { return embed_tp > 0 ? embed_tp : stages.front().tp; }
  int64_t HeadTp() const { return head_tp > 0 ? head_tp : stages.back().tp; }

  // `stages` stages of near-equal layer counts (the first ones one longer), all with degree tp.
  static ModelLayout Uniform(int64_t num_layers, int64_t stages, int64_t tp);
  std::string ToString() const;  // "[0,2)x2 [2,4)x8", "embed x4 [0,2)x2 head x8"
};

// Throws Error (kInvalidInput) naming the stage and the sizes when `layout` cannot run `spec`.
void ValidateLayout(const partition::ModelSpec& spec, const ModelLayout& layout);

class ShardedModel;
struct ShardLayer;

// One sequence's KV cache, each layer's held by the shards of its stage (their KV heads).
class ShardedKvCache {
 public:
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }

 private:
  friend class ShardedModel;
  struct ShardLayer;
  int64_t capacity_ = 0;
  int64_t length_ = 0;
  // [layer][shard] -> [position * shard_kv_width]
  std::vector<std::vector<std::vector<float>>> keys_, values_;
};

struct ShardedStep {
  ShardedKvCache* cache = nullptr;
  std::vector<int32_t> tokens;
};

class ShardedModel {
 public:
  // Slices `weights` into per-shard copies. Throws as ValidateLayout and ReferenceModel.
  ShardedModel(partition::ModelSpec spec, const LlamaWeights& weights, ModelLayout layout);
  ~ShardedModel();
  ShardedModel(ShardedModel&&) noexcept;

  const ModelLayout& layout() const { return layout_; }
  ShardedKvCache NewCache(int64_t capacity) const;

  // As ReferenceModel::Forward: each sequence's logits for its last new token.
  std::vector<std::vector<float>> Forward(std::span<ShardedStep> batch) const;

 private:
  struct Shards;
  // Mixture of experts: the MoE block of one layer's shards for xn [rows, hidden].
  void MoeBlock(const std::vector<ShardLayer>& shards, const float* xn, int64_t rows,
                bool down_row_parallel, float* out) const;

  partition::ModelSpec spec_;
  ModelLayout layout_;
  std::vector<float> inv_freq_;
  std::unique_ptr<Shards> shards_;
};

}  // namespace lockstep::model
