#include "lockstep/model/shard_loader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "llama_tensors.h"
#include "lockstep/common/error.h"
#include "lockstep/model/llama_weights.h"
#include "lockstep/partition/cost_model.h"
#include "shard_slicer.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;

#ifdef MADV_POPULATE_WRITE
constexpr int kPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kPopulateWrite = 23;  // Linux 5.14; older kernels refuse it (EINVAL), harmlessly
#endif

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

void TensorSource::ReadInt8(const std::string& name, int64_t, std::span<int8_t>) const {
  throw Error(ErrorCode::kInternal, "tensor '" + name + "' read as int8 from an fp32 source");
}

WeightFormat CheckpointSource::Format(const std::string& name) const {
  const TensorInfo* t = checkpoint_.Find(name);
  return t != nullptr && t->dtype == Dtype::kInt8 ? format_ : WeightFormat::kFp32;
}

void CheckpointSource::Read(const std::string& name, int64_t first, std::span<float> out) const {
  checkpoint_.ReadFp32(name, first, out);
}

void CheckpointSource::ReadInt8(const std::string& name, int64_t first,
                                std::span<int8_t> out) const {
  checkpoint_.ReadInt8(name, first, out);
}

void CheckpointSource::Done(const std::string& name) const {
  checkpoint_.Release(name);
  if (IsInt8(format_) && checkpoint_.Find(name + "_scale") != nullptr) {
    checkpoint_.Release(name + "_scale");
  }
}

MemorySource::MemorySource(const LlamaWeights& weights, const ModelSpec& spec) {
  ForEachTensor(spec, weights, [&](const std::string& name, const auto& tensor) {
    if constexpr (std::is_same_v<std::decay_t<decltype(tensor)>, Weight>) {
      matrices_.emplace(name, &tensor);
    } else {
      vectors_.emplace(name, &tensor);
    }
  });
}

WeightFormat MemorySource::Format(const std::string& name) const {
  return matrices_.at(name)->format;
}

void MemorySource::Read(const std::string& name, int64_t first, std::span<float> out) const {
  if (auto v = vectors_.find(name); v != vectors_.end()) {
    std::copy_n(v->second->begin() + first, out.size(), out.begin());
    return;
  }
  if (name.ends_with("_scale")) {  // an int8 projection's row-major scales
    const Weight& w = *matrices_.at(name.substr(0, name.size() - 6));
    const int64_t per_row = w.ScalesPerRow();
    for (size_t i = 0; i < out.size(); ++i) {
      const int64_t at = first + static_cast<int64_t>(i);
      out[i] = w.Scale(at / per_row, at % per_row);
    }
    return;
  }
  const Weight& w = *matrices_.at(name);
  std::copy_n(w.values.begin() + first, out.size(), out.begin());
}

void MemorySource::ReadInt8(const std::string& name, int64_t first, std::span<int8_t> out) const {
  const Weight& w = *matrices_.at(name);
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t at = first + static_cast<int64_t>(i);
    out[i] = w.Q(at / w.cols, at % w.cols);
  }
}

std::vector<float> ReadVector(const TensorSource& source, const std::string& name, int64_t begin,
                              int64_t count) {
  std::vector<float> out(static_cast<size_t>(count));
  source.Read(name, begin, out);
  source.Done(name);
  return out;
}

namespace {

// A vector of `n` zeros whose pages the kernel maps in one call (MADV_POPULATE_WRITE) before
// they are written: a large shard is gigabytes of fresh memory, and faulting it in page by page
// was most of the time a load took (a 2.1 GiB TinyLlama shard: 560k minor faults, 1.3 s of
// system time against 0.3 s of conversion). A kernel without the advice faults as before.
template <typename T>
std::vector<T> FreshVector(int64_t n) {
  std::vector<T> out;
  out.reserve(static_cast<size_t>(n));
  const size_t bytes = static_cast<size_t>(n) * sizeof(T);
  if (bytes >= (size_t{1} << 20)) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<uintptr_t>(out.data()) + page - 1) / page * page;
    const auto end = (reinterpret_cast<uintptr_t>(out.data()) + bytes) / page * page;
    if (begin < end) {
      (void)::madvise(reinterpret_cast<void*>(begin), end - begin, kPopulateWrite);
    }
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

// Rows x a column range of a row-major [rows, cols] tensor through read(first, span): one read
// when the range is whole rows, else one per row.
template <typename T, typename ReadFn>
std::vector<T> ReadBlock(int64_t cols, int64_t row_begin, int64_t row_count, int64_t col_begin,
                         int64_t col_count, ReadFn read) {
  std::vector<T> out = FreshVector<T>(row_count * col_count);
  if (col_begin == 0 && col_count == cols) {
    read(row_begin * cols, std::span<T>(out));
    return out;
  }
  for (int64_t r = 0; r < row_count; ++r) {
    read((row_begin + r) * cols + col_begin,
         std::span<T>(out.data() + r * col_count, static_cast<size_t>(col_count)));
  }
  return out;
}

}  // namespace

Weight ReadMatrix(const TensorSource& source, const std::string& name, int64_t rows, int64_t cols,
                  int64_t row_begin, int64_t row_count, int64_t col_begin, int64_t col_count) {
  (void)rows;
  const WeightFormat format = source.Format(name);
  if (format == WeightFormat::kFp32) {
    Weight w = Weight::Fp32(row_count, col_count,
                            ReadBlock<float>(cols, row_begin, row_count, col_begin, col_count,
                                             [&](int64_t first, std::span<float> out) {
                                               source.Read(name, first, out);
                                             }));
    source.Done(name);
    return w;
  }
  const std::vector<int8_t> q = ReadBlock<int8_t>(
      cols, row_begin, row_count, col_begin, col_count,
      [&](int64_t first, std::span<int8_t> out) { source.ReadInt8(name, first, out); });
  const int64_t per_row = ScalesPerRow(format, cols);
  int64_t scale_begin = 0, scale_count = per_row;
  if (format == WeightFormat::kInt8Block32) {
    if (col_begin % kInt8Block != 0 ||
        (col_count % kInt8Block != 0 && col_begin + col_count != cols)) {
      throw Error(ErrorCode::kInternal,
                  "int8 weight '" + name + "': columns [" + std::to_string(col_begin) + ", " +
                      std::to_string(col_begin + col_count) + ") cut a block of 32");
    }
    scale_begin = col_begin / kInt8Block;
    scale_count = ScalesPerRow(format, col_count);
  }
  const std::string scale_name = name + "_scale";
  const std::vector<float> scales = ReadBlock<float>(
      per_row, row_begin, row_count, scale_begin, scale_count,
      [&](int64_t first, std::span<float> out) { source.Read(scale_name, first, out); });
  source.Done(name);
  try {
    return Weight::Int8(format, row_count, col_count, q, scales);
  } catch (const Error& e) {
    throw InvalidInput("tensor '" + name + "': " + e.what());
  }
}

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
  ShardWeights out;
  out.stage = stage;
  out.rank = rank;
  out.units = units;
  out.vocab_begin = s.vocab_size * rank / tp;
  out.vocab_count = s.vocab_size * (rank + 1) / tp - out.vocab_begin;
  // A projection's rows [begin, begin + count) (all columns), or its columns (all rows).
  auto rows = [&](const std::string& name, int64_t all_rows, int64_t cols, int64_t begin,
                  int64_t count) {
    return ReadMatrix(source, name, all_rows, cols, begin, count, 0, cols);
  };
  auto columns = [&](const std::string& name, int64_t all_rows, int64_t cols, int64_t begin,
                     int64_t count) {
    return ReadMatrix(source, name, all_rows, cols, 0, all_rows, begin, count);
  };
  auto all = [&](const std::string& name, int64_t n) { return ReadVector(source, name, 0, n); };
  if (units.embedding) {
    out.embed =
        rows("model.embed_tokens.weight", s.vocab_size, h, out.vocab_begin, out.vocab_count);
  }
  const bool o_rows = RowParallelProjection(s, tp, false);
  const bool down_rows = RowParallelProjection(s, tp, true);
  const int64_t qwidth = s.q_width(), kvwidth = s.kv_width(), f = s.intermediate_size;
  for (int64_t layer = units.first_layer; layer < units.end_layer; ++layer) {
    auto name = [&](std::string_view suffix) { return LayerTensorName(layer, suffix); };
    ShardLayer ls = LayerGeometry(s, tp, rank);
    const int64_t qw = ls.q_heads * hd, kvw = ls.kv_heads * hd;
    const int64_t q0 = ls.q_head_begin * hd, kv0 = ls.kv_head_begin * hd;
    ls.input_norm = all(name("input_layernorm.weight"), h);
    ls.q = rows(name("self_attn.q_proj.weight"), qwidth, h, q0, qw);
    ls.k = rows(name("self_attn.k_proj.weight"), kvwidth, h, kv0, kvw);
    ls.v = rows(name("self_attn.v_proj.weight"), kvwidth, h, kv0, kvw);
    if (s.qkv_bias) {
      ls.q_bias = ReadVector(source, name("self_attn.q_proj.bias"), q0, qw);
      ls.k_bias = ReadVector(source, name("self_attn.k_proj.bias"), kv0, kvw);
      ls.v_bias = ReadVector(source, name("self_attn.v_proj.bias"), kv0, kvw);
    }
    ls.o = o_rows ? columns(name("self_attn.o_proj.weight"), h, qwidth, q0, qw)
                  : rows(name("self_attn.o_proj.weight"), h, qwidth, ls.out_begin, ls.out_count);
    if (s.o_bias) ls.o_bias = all(name("self_attn.o_proj.bias"), h);
    ls.post_norm = all(name("post_attention_layernorm.weight"), h);
    if (s.is_moe()) {
      // Every expert split like the dense MLP (expert tensor parallelism); the router replicated.
      ls.router = rows(RouterTensorName(layer), s.num_experts, h, 0, s.num_experts);
      for (int64_t e = 0; e < s.num_experts; ++e) {
        ExpertWeights x;
        x.gate = rows(ExpertTensorName(layer, e, "w1"), f, h, ls.f_begin, ls.f_count);
        x.up = rows(ExpertTensorName(layer, e, "w3"), f, h, ls.f_begin, ls.f_count);
        x.down = down_rows
                     ? columns(ExpertTensorName(layer, e, "w2"), h, f, ls.f_begin, ls.f_count)
                     : rows(ExpertTensorName(layer, e, "w2"), h, f, ls.out_begin, ls.out_count);
        ls.experts.push_back(std::move(x));
      }
      out.layers.push_back(std::move(ls));
      continue;
    }
    ls.gate = rows(name("mlp.gate_proj.weight"), f, h, ls.f_begin, ls.f_count);
    ls.up = rows(name("mlp.up_proj.weight"), f, h, ls.f_begin, ls.f_count);
    if (s.mlp_bias) {
      ls.gate_bias = ReadVector(source, name("mlp.gate_proj.bias"), ls.f_begin, ls.f_count);
      ls.up_bias = ReadVector(source, name("mlp.up_proj.bias"), ls.f_begin, ls.f_count);
      ls.down_bias = all(name("mlp.down_proj.bias"), h);
    }
    ls.down = down_rows ? columns(name("mlp.down_proj.weight"), h, f, ls.f_begin, ls.f_count)
                        : rows(name("mlp.down_proj.weight"), h, f, ls.out_begin, ls.out_count);
    out.layers.push_back(std::move(ls));
  }
  if (units.head) {
    out.final_norm = all("model.norm.weight", h);
    out.head = rows(s.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight",
                    s.vocab_size, h, out.vocab_begin, out.vocab_count);
  }
  return out;
}

ShardWeights LoadShard(const Checkpoint& checkpoint, const ModelSpec& spec,
                       const std::vector<StageUnits>& stages, int stage, int rank) {
  RequireDenseShards(spec);
  const WeightFormat format = CheckLlamaWeights(checkpoint, spec);
  return SliceShard(CheckpointSource(checkpoint, format), spec, stages, stage, rank);
}

ShardWeights GenerateShard(const ModelSpec& spec, uint64_t seed,
                           const std::vector<StageUnits>& stages, int stage, int rank) {
  RequireDenseShards(spec);
  return SliceShard(GeneratorSource(seed), spec, stages, stage, rank);
}

std::string EncodeShardSource(const ShardSource& source) {
  nlohmann::json stages = nlohmann::json::array();
  for (const StageUnits& u : source.stages) {
    stages.push_back({{"embedding", u.embedding},
                      {"first_layer", u.first_layer},
                      {"end_layer", u.end_layer},
                      {"head", u.head},
                      {"tp", u.tp}});
  }
  // nlohmann::json objects keep their keys sorted: the same source, the same text.
  const nlohmann::json j = {{"checkpoint", source.checkpoint},
                            {"seed", source.seed},
                            {"stages", stages},
                            {"stage", source.stage},
                            {"rank", source.rank}};
  return j.dump();
}

ShardSource DecodeShardSource(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) throw InvalidInput("shard source: not a JSON object");
  auto field = [&](const nlohmann::json& o, const char* key,
                   nlohmann::json::value_t type) -> const nlohmann::json& {
    const auto it = o.find(key);
    const bool ok = it != o.end() &&
                    (it->type() == type ||
                     (type == nlohmann::json::value_t::number_integer && it->is_number_unsigned()));
    if (!ok)
      throw InvalidInput(std::string("shard source: field '") + key + "' missing or mistyped");
    return *it;
  };
  using T = nlohmann::json::value_t;
  ShardSource s;
  s.checkpoint = field(j, "checkpoint", T::string).get<std::string>();
  s.seed = field(j, "seed", T::number_unsigned).get<uint64_t>();
  s.stage = field(j, "stage", T::number_integer).get<int>();
  s.rank = field(j, "rank", T::number_integer).get<int>();
  for (const nlohmann::json& u : field(j, "stages", T::array)) {
    if (!u.is_object()) throw InvalidInput("shard source: field 'stages' holds a non-object");
    s.stages.push_back({field(u, "embedding", T::boolean).get<bool>(),
                        field(u, "first_layer", T::number_integer).get<int64_t>(),
                        field(u, "end_layer", T::number_integer).get<int64_t>(),
                        field(u, "head", T::boolean).get<bool>(),
                        field(u, "tp", T::number_integer).get<int>()});
  }
  return s;
}

ShardWeights LoadShard(const ShardSource& source, const ModelSpec& spec) {
  if (source.checkpoint.empty()) {
    return GenerateShard(spec, source.seed, source.stages, source.stage, source.rank);
  }
  const Checkpoint checkpoint = Checkpoint::Open(source.checkpoint);
  return LoadShard(checkpoint, spec, source.stages, source.stage, source.rank);
}

}  // namespace lockstep::model
