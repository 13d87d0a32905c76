#include "lockstep/model/shard_loader.h"

#include <string>

#include "lockstep/common/error.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/cost_model.h"
#include "shard_slicer.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;

// Reads a shard's slices through `source`. Every slice is a run of whole rows (one contiguous
// read) or a column range of every row (one read per row).
class Slicer {
 public:
  explicit Slicer(const TensorSource& source) : source_(source) {}

  // The whole tensor of `count` elements.
  std::vector<float> All(const std::string& name, int64_t count) const {
    return Rows(name, count, 0, 1);
  }
  // Rows [begin, begin + count) of a [*, cols] tensor.
  std::vector<float> Rows(const std::string& name, int64_t cols, int64_t begin,
                          int64_t count) const {
    std::vector<float> out(static_cast<size_t>(cols * count));
    source_.Read(name, begin * cols, out);
    source_.Done(name);
    return out;
  }
  // Columns [begin, begin + count) of a [rows, cols] tensor, as [rows, count].
  std::vector<float> Columns(const std::string& name, int64_t rows, int64_t cols, int64_t begin,
                             int64_t count) const {
    if (begin == 0 && count == cols) return Rows(name, cols, 0, rows);
    std::vector<float> out(static_cast<size_t>(rows * count));
    for (int64_t r = 0; r < rows; ++r) {
      source_.Read(name, r * cols + begin, {out.data() + r * count, static_cast<size_t>(count)});
    }
    source_.Done(name);
    return out;
  }

 private:
  const TensorSource& source_;
};

class CheckpointSource : public TensorSource {
 public:
  explicit CheckpointSource(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}
  void Read(const std::string& name, int64_t first, std::span<float> out) const override {
    checkpoint_.ReadFp32(name, first, out);
  }
  void Done(const std::string& name) const override { checkpoint_.Release(name); }

 private:
  const Checkpoint& checkpoint_;
};

class GeneratorSource : public TensorSource {
 public:
  explicit GeneratorSource(uint64_t seed) : seed_(seed) {}
  void Read(const std::string& name, int64_t first, std::span<float> out) const override {
    FillGeneratedWeights(seed_, name, first, out);
  }

 private:
  uint64_t seed_;
};

}  // namespace

ShardWeights SliceShard(const TensorSource& source, const ModelSpec& spec,
                        const std::vector<StageUnits>& stages, int stage, int rank) {
  ValidateStages(spec, stages);
  if (stage < 0 || stage >= static_cast<int>(stages.size())) {
    throw InvalidInput("shard: stage " + std::to_string(stage) + " is outside the pipeline's " +
                       std::to_string(stages.size()) + " stages");
  }
  const StageUnits& units = stages[static_cast<size_t>(stage)];
  if (rank < 0 || rank >= units.tp) {
    throw InvalidInput("shard: rank " + std::to_string(rank) + " is outside stage " +
                       std::to_string(stage) + "'s tensor-parallel degree " +
                       std::to_string(units.tp));
  }
  const ModelSpec& s = spec;
  const int64_t h = s.hidden_size, hd = s.head_dim;
  const int tp = units.tp;
  const Slicer in(source);
  ShardWeights out;
  out.stage = stage;
  out.rank = rank;
  out.units = units;
  out.vocab_begin = s.vocab_size * rank / tp;
  out.vocab_count = s.vocab_size * (rank + 1) / tp - out.vocab_begin;
  if (units.embedding) {
    out.embed = in.Rows("model.embed_tokens.weight", h, out.vocab_begin, out.vocab_count);
  }
  const bool o_rows = RowParallelProjection(s, tp, false);
  const bool down_rows = RowParallelProjection(s, tp, true);
  for (int64_t layer = units.first_layer; layer < units.end_layer; ++layer) {
    auto name = [&](std::string_view suffix) { return LayerTensorName(layer, suffix); };
    ShardLayer ls = LayerGeometry(s, tp, rank);
    const int64_t qw = ls.q_heads * hd, kvw = ls.kv_heads * hd;
    const int64_t q0 = ls.q_head_begin * hd, kv0 = ls.kv_head_begin * hd;
    ls.input_norm = in.All(name("input_layernorm.weight"), h);
    ls.q = in.Rows(name("self_attn.q_proj.weight"), h, q0, qw);
    ls.k = in.Rows(name("self_attn.k_proj.weight"), h, kv0, kvw);
    ls.v = in.Rows(name("self_attn.v_proj.weight"), h, kv0, kvw);
    if (s.qkv_bias) {
      ls.q_bias = in.Rows(name("self_attn.q_proj.bias"), 1, q0, qw);
      ls.k_bias = in.Rows(name("self_attn.k_proj.bias"), 1, kv0, kvw);
      ls.v_bias = in.Rows(name("self_attn.v_proj.bias"), 1, kv0, kvw);
    }
    ls.o = o_rows
               ? in.Columns(name("self_attn.o_proj.weight"), h, s.q_width(), q0, qw)
               : in.Rows(name("self_attn.o_proj.weight"), s.q_width(), ls.out_begin, ls.out_count);
    if (s.o_bias) ls.o_bias = in.All(name("self_attn.o_proj.bias"), h);
    ls.post_norm = in.All(name("post_attention_layernorm.weight"), h);
    ls.gate = in.Rows(name("mlp.gate_proj.weight"), h, ls.f_begin, ls.f_count);
    ls.up = in.Rows(name("mlp.up_proj.weight"), h, ls.f_begin, ls.f_count);
    if (s.mlp_bias) {
      ls.gate_bias = in.Rows(name("mlp.gate_proj.bias"), 1, ls.f_begin, ls.f_count);
      ls.up_bias = in.Rows(name("mlp.up_proj.bias"), 1, ls.f_begin, ls.f_count);
      ls.down_bias = in.All(name("mlp.down_proj.bias"), h);
    }
    ls.down = down_rows ? in.Columns(name("mlp.down_proj.weight"), h, s.intermediate_size,
                                     ls.f_begin, ls.f_count)
                        : in.Rows(name("mlp.down_proj.weight"), s.intermediate_size, ls.out_begin,
                                  ls.out_count);
    out.layers.push_back(std::move(ls));
  }
  if (units.head) {
    out.final_norm = in.All("model.norm.weight", h);
    out.head = in.Rows(s.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", h,
                       out.vocab_begin, out.vocab_count);
  }
  return out;
}

ShardWeights LoadShard(const Checkpoint& checkpoint, const ModelSpec& spec,
                       const std::vector<StageUnits>& stages, int stage, int rank) {
  CheckLlamaWeights(checkpoint, spec);
  return SliceShard(CheckpointSource(checkpoint), spec, stages, stage, rank);
}

ShardWeights GenerateShard(const ModelSpec& spec, uint64_t seed,
                           const std::vector<StageUnits>& stages, int stage, int rank) {
  return SliceShard(GeneratorSource(seed), spec, stages, stage, rank);
}

}  // namespace lockstep::model
