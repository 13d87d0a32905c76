#include "lockstep/model/llama_weights.h"

#include <functional>
#include <map>
#include <type_traits>

#include "llama_tensors.h"
#include "lockstep/common/error.h"
#include "shard_slicer.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

uint64_t NameHash(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  for (char c : name) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool IsNorm(std::string_view name) { return name.ends_with("norm.weight"); }

// The per-tensor key: everything but the element index.
uint64_t TensorKey(uint64_t seed, std::string_view name) {
  return Mix64(Mix64(seed ^ kGolden) + NameHash(name));
}

float GeneratedFromKey(uint64_t key, bool norm, int64_t index) {
  const auto i = static_cast<uint64_t>(index);
  const uint64_t a = Mix64(key + (2 * i + 1) * kGolden);
  const uint64_t b = Mix64(key + (2 * i + 2) * kGolden);
  constexpr double kInv32 = 1.0 / 4294967296.0;
  const double sum =
      static_cast<double>(a >> 32) * kInv32 + static_cast<double>(a & 0xffffffffu) * kInv32 +
      static_cast<double>(b >> 32) * kInv32 + static_cast<double>(b & 0xffffffffu) * kInv32;
  // Irwin–Hall(4): mean 2, variance 1/3 -> unit variance.
  const double z = (sum - 2.0) * 1.7320508075688772;
  return static_cast<float>(norm ? 1.0 + 0.02 * z : 0.02 * z);
}

void CheckSize(const std::vector<float>& v, int64_t want, const std::string& name) {
  if (static_cast<int64_t>(v.size()) != want) {
    throw InvalidInput("weights for " + name + " have " + std::to_string(v.size()) +
                       " values, the model config needs " + std::to_string(want));
  }
}

// A projection: its shape (rows 0 = absent, as a tied lm_head), consistent storage, and the
// model's one format.
void CheckSize(const Weight& w, int64_t rows, int64_t cols, WeightFormat format,
               const std::string& name) {
  if (rows == 0 && w.empty()) return;
  if (w.rows != rows || w.cols != cols || !w.Consistent()) {
    throw InvalidInput("weights for " + name + " are [" + std::to_string(w.rows) + ", " +
                       std::to_string(w.cols) + "] (" + std::string(WeightFormatName(w.format)) +
                       (w.Consistent() ? "" : ", inconsistent storage") +
                       "), the model config needs [" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "]");
  }
  if (w.format != format) {
    throw InvalidInput("weights for " + name + " are " + std::string(WeightFormatName(w.format)) +
                       ", the embedding is " + std::string(WeightFormatName(format)) +
                       " (every projection of a model has one format)");
  }
}

bool IsMatrix(const TensorSpec& t) { return t.shape.size() == 2; }

}  // namespace

void CheckLlamaWeights(const LlamaWeights& w, const ModelSpec& s) {
  const int64_t h = s.hidden_size, q = s.q_width(), kv = s.kv_width(), f = s.intermediate_size;
  const WeightFormat fmt = w.embed.format;
  CheckSize(w.embed, s.vocab_size, h, fmt, "model.embed_tokens.weight");
  if (static_cast<int64_t>(w.layers.size()) != s.num_layers) {
    throw InvalidInput("weights have " + std::to_string(w.layers.size()) +
                       " layers, the model config needs " + std::to_string(s.num_layers));
  }
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const LayerWeights& l = w.layers[static_cast<size_t>(i)];
    auto n = [&](const char* suffix) { return LayerTensorName(i, suffix); };
    CheckSize(l.input_norm, h, n("input_layernorm.weight"));
    CheckSize(l.q, q, h, fmt, n("self_attn.q_proj.weight"));
    CheckSize(l.k, kv, h, fmt, n("self_attn.k_proj.weight"));
    CheckSize(l.v, kv, h, fmt, n("self_attn.v_proj.weight"));
    CheckSize(l.o, h, q, fmt, n("self_attn.o_proj.weight"));
    CheckSize(l.q_bias, s.qkv_bias ? q : 0, n("self_attn.q_proj.bias"));
    CheckSize(l.k_bias, s.qkv_bias ? kv : 0, n("self_attn.k_proj.bias"));
    CheckSize(l.v_bias, s.qkv_bias ? kv : 0, n("self_attn.v_proj.bias"));
    CheckSize(l.o_bias, s.o_bias ? h : 0, n("self_attn.o_proj.bias"));
    CheckSize(l.post_norm, h, n("post_attention_layernorm.weight"));
    if (s.is_moe()) {
      // The router stays fp32 in every format (quantize.h).
      CheckSize(l.router, s.num_experts, h, WeightFormat::kFp32, RouterTensorName(i));
      if (static_cast<int64_t>(l.experts.size()) != s.num_experts) {
        throw InvalidInput("weights of layer " + std::to_string(i) + " have " +
                           std::to_string(l.experts.size()) + " experts, the model config needs " +
                           std::to_string(s.num_experts));
      }
      for (int64_t e = 0; e < s.num_experts; ++e) {
        const ExpertWeights& x = l.experts[static_cast<size_t>(e)];
        CheckSize(x.gate, f, h, fmt, ExpertTensorName(i, e, "w1"));
        CheckSize(x.down, h, f, fmt, ExpertTensorName(i, e, "w2"));
        CheckSize(x.up, f, h, fmt, ExpertTensorName(i, e, "w3"));
      }
      if (!l.gate.empty() || !l.up.empty() || !l.down.empty()) {
        throw InvalidInput("weights of layer " + std::to_string(i) +
                           " hold a dense MLP, the model config has experts");
      }
      continue;
    }
    if (!l.router.empty() || !l.experts.empty()) {
      throw InvalidInput("weights of layer " + std::to_string(i) +
                         " hold experts, the model config has a dense MLP");
    }
    CheckSize(l.gate, f, h, fmt, n("mlp.gate_proj.weight"));
    CheckSize(l.up, f, h, fmt, n("mlp.up_proj.weight"));
    CheckSize(l.down, h, f, fmt, n("mlp.down_proj.weight"));
    CheckSize(l.gate_bias, s.mlp_bias ? f : 0, n("mlp.gate_proj.bias"));
    CheckSize(l.up_bias, s.mlp_bias ? f : 0, n("mlp.up_proj.bias"));
    CheckSize(l.down_bias, s.mlp_bias ? h : 0, n("mlp.down_proj.bias"));
  }
  CheckSize(w.final_norm, h, "model.norm.weight");
  if (s.tie_word_embeddings != w.lm_head.empty()) {
    throw InvalidInput(std::string("weights for lm_head.weight are ") +
                       (w.lm_head.empty() ? "absent" : "present") + ", the model config has " +
                       "tie_word_embeddings " + (s.tie_word_embeddings ? "true" : "false"));
  }
  CheckSize(w.lm_head, s.tie_word_embeddings ? 0 : s.vocab_size, h, fmt, "lm_head.weight");
}

namespace {}  // namespace

std::string LayerTensorName(int64_t layer, std::string_view suffix) {
  return "model.layers." + std::to_string(layer) + "." + std::string(suffix);
}

std::string ExpertTensorName(int64_t layer, int64_t expert, std::string_view w) {
  return LayerTensorName(layer, "block_sparse_moe.experts." + std::to_string(expert) + "." +
                                    std::string(w) + ".weight");
}

std::string RouterTensorName(int64_t layer) {
  return LayerTensorName(layer, "block_sparse_moe.gate.weight");
}

bool QuantizedInInt8(const TensorSpec& tensor) {
  return IsMatrix(tensor) && !tensor.name.ends_with("block_sparse_moe.gate.weight");
}

std::vector<TensorSpec> LlamaTensorSpecs(const ModelSpec& spec, Dtype dtype) {
  SafetensorsDtypeName(dtype);  // throws for a dtype safetensors cannot hold
  const int64_t h = spec.hidden_size, q = spec.q_width(), kv = spec.kv_width();
  const int64_t f = spec.intermediate_size, vocab = spec.vocab_size;
  std::vector<TensorSpec> out;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    out.push_back({std::move(name), std::move(shape), dtype});
  };
  add("model.embed_tokens.weight", {vocab, h});
  for (int64_t i = 0; i < spec.num_layers; ++i) {
    auto layer = [&](std::string_view suffix, std::vector<int64_t> shape) {
      add(LayerTensorName(i, suffix), std::move(shape));
    };
    layer("input_layernorm.weight", {h});
    layer("self_attn.q_proj.weight", {q, h});
    layer("self_attn.k_proj.weight", {kv, h});
    layer("self_attn.v_proj.weight", {kv, h});
    layer("self_attn.o_proj.weight", {h, q});
    if (spec.qkv_bias) {
      layer("self_attn.q_proj.bias", {q});
      layer("self_attn.k_proj.bias", {kv});
      layer("self_attn.v_proj.bias", {kv});
    }
    if (spec.o_bias) layer("self_attn.o_proj.bias", {h});
    layer("post_attention_layernorm.weight", {h});
    if (spec.is_moe()) {
      add(RouterTensorName(i), {spec.num_experts, h});
      for (int64_t e = 0; e < spec.num_experts; ++e) {
        add(ExpertTensorName(i, e, "w1"), {f, h});
        add(ExpertTensorName(i, e, "w2"), {h, f});
        add(ExpertTensorName(i, e, "w3"), {f, h});
      }
      continue;
    }
    layer("mlp.gate_proj.weight", {f, h});
    layer("mlp.up_proj.weight", {f, h});
    layer("mlp.down_proj.weight", {h, f});
    if (spec.mlp_bias) {
      layer("mlp.gate_proj.bias", {f});
      layer("mlp.up_proj.bias", {f});
      layer("mlp.down_proj.bias", {h});
    }
  }
  add("model.norm.weight", {h});
  if (!spec.tie_word_embeddings) add("lm_head.weight", {vocab, h});
  return out;
}

WeightFormat CheckLlamaWeights(const Checkpoint& checkpoint, const ModelSpec& spec,
                               std::optional<Dtype> dtype) {
  const std::string where = checkpoint.path().string() + ": ";
  const std::vector<TensorSpec> wanted = LlamaTensorSpecs(spec, Dtype::kFp32);
  // An int8 checkpoint: its embedding is I8. The scheme comes from the metadata the quantizer
  // writes, else from the shape of the embedding's scales.
  WeightFormat format = WeightFormat::kFp32;
  const TensorInfo* embed = checkpoint.Find(wanted.front().name);
  if (embed != nullptr && embed->dtype == Dtype::kInt8 && (!dtype || *dtype == Dtype::kInt8)) {
    const auto& meta = checkpoint.FileOf(embed->name).metadata();
    if (auto it = meta.find("lockstep.quantization"); it != meta.end()) {
      const std::optional<WeightFormat> f = ParseWeightFormat(it->second);
      if (!f || *f == WeightFormat::kFp32) {
        throw InvalidInput(where + "metadata lockstep.quantization is '" + it->second +
                           "' (valid: int8-block32, int8-channel)");
      }
      format = *f;
    } else {
      // The first projection wider than one block tells the schemes apart (one scale per row,
      // or one per block); a model of narrower ones computes the same either way.
      format = WeightFormat::kInt8Block32;
      for (const TensorSpec& t : wanted) {
        const TensorInfo* scale = checkpoint.Find(t.name + "_scale");
        if (!QuantizedInInt8(t) || t.shape[1] <= kInt8Block || scale == nullptr) continue;
        if (scale->shape.size() == 2 && scale->shape[1] == 1) format = WeightFormat::kInt8Channel;
        break;
      }
    }
  }
  for (const TensorSpec& want : wanted) {
    const TensorInfo* have = checkpoint.Find(want.name);
    if (have == nullptr) {
      throw Error(
          ErrorCode::kNotFound,
          where + "missing tensor '" + want.name + "' " + ShapeText(want.shape) + " that model '" +
              spec.name + "' needs" +
              (want.name == "lm_head.weight" ? " (config has tie_word_embeddings false)" : ""));
    }
    if (have->shape != want.shape) {
      throw InvalidInput(where + "tensor '" + want.name + "' has shape " + ShapeText(have->shape) +
                         ", model '" + spec.name + "' needs " + ShapeText(want.shape));
    }
    if (IsInt8(format)) {
      const std::string scheme(WeightFormatName(format));
      if (!QuantizedInInt8(want)) {
        if (have->dtype == Dtype::kInt8) {
          throw InvalidInput(where + "tensor '" + want.name +
                             "' is I8; an int8 checkpoint keeps norms, biases and the MoE router "
                             "float (F32, F16 or BF16)");
        }
        continue;
      }
      if (have->dtype != Dtype::kInt8) {
        throw InvalidInput(where + "tensor '" + want.name + "' is " +
                           std::string(SafetensorsDtypeName(have->dtype)) +
                           ", expected I8 like the checkpoint's other projections (" + scheme +
                           ")");
      }
      const std::vector<int64_t> scale_shape = {want.shape[0], ScalesPerRow(format, want.shape[1])};
      const TensorInfo* scale = checkpoint.Find(want.name + "_scale");
      if (scale == nullptr) {
        throw Error(ErrorCode::kNotFound, where + "missing tensor '" + want.name + "_scale' " +
                                              ShapeText(scale_shape) + " that the " + scheme +
                                              " weight '" + want.name + "' needs");
      }
      if (scale->shape != scale_shape || scale->dtype != Dtype::kFp32) {
        throw InvalidInput(where + "tensor '" + scale->name + "' is " +
                           std::string(SafetensorsDtypeName(scale->dtype)) + " " +
                           ShapeText(scale->shape) + ", the " + scheme + " layout needs F32 " +
                           ShapeText(scale_shape));
      }
      continue;
    }
    if (!dtype) dtype = have->dtype;  // the first tensor sets the checkpoint's dtype
    if (have->dtype != *dtype) {
      throw InvalidInput(where + "tensor '" + want.name + "' is " +
                         std::string(SafetensorsDtypeName(have->dtype)) + ", expected " +
                         std::string(SafetensorsDtypeName(*dtype)) +
                         " like the checkpoint's other tensors");
    }
  }
  return format;
}

float GeneratedWeight(uint64_t seed, std::string_view tensor_name, int64_t index) {
  return GeneratedFromKey(TensorKey(seed, tensor_name), IsNorm(tensor_name), index);
}

void FillGeneratedWeights(uint64_t seed, std::string_view tensor_name, int64_t first,
                          std::span<float> out) {
  const uint64_t key = TensorKey(seed, tensor_name);
  const bool norm = IsNorm(tensor_name);
  for (size_t j = 0; j < out.size(); ++j) {
    out[j] = GeneratedFromKey(key, norm, first + static_cast<int64_t>(j));
  }
}

void WriteGeneratedWeights(const ModelSpec& spec, uint64_t seed, Dtype dtype,
                           const std::filesystem::path& path, int64_t max_shard_bytes) {
  const std::vector<TensorSpec> specs = LlamaTensorSpecs(spec, dtype);
  const TensorFill fill = [&](size_t index, int64_t first, std::span<float> out) {
    FillGeneratedWeights(seed, specs[index].name, first, out);
  };
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"lockstep.generator", "splitmix64-irwin-hall-v1"},
      {"lockstep.seed", std::to_string(seed)},
      {"lockstep.model", spec.name}};
  if (max_shard_bytes > 0) {
    WriteShardedSafetensors(path, specs, fill, max_shard_bytes, metadata);
  } else {
    WriteSafetensors(path, specs, fill, metadata);
  }
}

LlamaWeights LoadLlamaWeights(const Checkpoint& checkpoint, const ModelSpec& spec) {
  const CheckpointSource source(checkpoint, CheckLlamaWeights(checkpoint, spec));
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorSpec& t : LlamaTensorSpecs(spec, Dtype::kFp32)) shapes[t.name] = t.shape;
  LlamaWeights w;
  ForEachTensor(spec, w, [&](const std::string& name, auto& dst) {
    const std::vector<int64_t>& shape = shapes.at(name);
    if constexpr (std::is_same_v<std::decay_t<decltype(dst)>, Weight>) {
      dst = ReadMatrix(source, name, shape[0], shape[1], 0, shape[0], 0, shape[1]);
    } else {
      dst = ReadVector(source, name, 0, shape[0]);
    }
  });
  return w;
}

LlamaWeights GenerateLlamaWeights(const ModelSpec& spec, uint64_t seed) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorSpec& t : LlamaTensorSpecs(spec, Dtype::kFp32)) shapes[t.name] = t.shape;
  LlamaWeights w;
  ForEachTensor(spec, w, [&](const std::string& name, auto& dst) {
    const std::vector<int64_t>& shape = shapes.at(name);
    std::vector<float> values(static_cast<size_t>(TensorSpec{name, shape}.num_elements()));
    FillGeneratedWeights(seed, name, 0, values);
    if constexpr (std::is_same_v<std::decay_t<decltype(dst)>, Weight>) {
      dst = Weight::Fp32(shape[0], shape[1], std::move(values));
    } else {
      dst = std::move(values);
    }
  });
  return w;
}

}  // namespace lockstep::model
