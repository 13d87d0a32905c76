// ShardWeights <-> a safetensors buffer (the format of safetensors.h, in memory): the shard's
// slices under their Hugging Face names, fp32, and where they sit in the metadata.
#include <cstdint>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>

#include "lockstep/common/error.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/model/weight.h"
#include "lockstep/partition/cost_model.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;

// One tensor of a shard: a vector (norm, bias) or a projection, with the shape the spec implies.
template <typename Vec, typename Wt>
struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  Vec* vector = nullptr;
  Wt* weight = nullptr;
};

// Every tensor of a shard whose geometry fields (units, vocab range, per-layer heads and
// intermediate slice) are set, with the shape the spec implies. Shard: (const) ShardWeights.
template <typename Shard, bool kConst = std::is_const_v<Shard>,
          typename Vec = std::conditional_t<kConst, const std::vector<float>, std::vector<float>>,
          typename Wt = std::conditional_t<kConst, const Weight, Weight>>
std::vector<Entry<Vec, Wt>> Entries(Shard& w, const ModelSpec& s) {
  const int64_t h = s.hidden_size, hd = s.head_dim;
  std::vector<Entry<Vec, Wt>> out;
  auto matrix = [&](std::string name, std::vector<int64_t> shape, Wt* weight) {
    out.push_back({std::move(name), std::move(shape), nullptr, weight});
  };
  auto vector = [&](std::string name, int64_t n, Vec* v) {
    out.push_back({std::move(name), {n}, v, nullptr});
  };
  if (w.units.embedding) matrix("model.embed_tokens.weight", {w.vocab_count, h}, &w.embed);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    auto& l = w.layers[i];
    const int64_t layer = w.units.first_layer + static_cast<int64_t>(i);
    const int64_t qw = l.q_heads * hd, kvw = l.kv_heads * hd, f = l.f_count;
    auto name = [&](const char* suffix) { return LayerTensorName(layer, suffix); };
    vector(name("input_layernorm.weight"), h, &l.input_norm);
    matrix(name("self_attn.q_proj.weight"), {qw, h}, &l.q);
    matrix(name("self_attn.k_proj.weight"), {kvw, h}, &l.k);
    matrix(name("self_attn.v_proj.weight"), {kvw, h}, &l.v);
    if (s.qkv_bias) {
      vector(name("self_attn.q_proj.bias"), qw, &l.q_bias);
      vector(name("self_attn.k_proj.bias"), kvw, &l.k_bias);
      vector(name("self_attn.v_proj.bias"), kvw, &l.v_bias);
    }
    const bool o_rows = RowParallelProjection(s, w.units.tp, false);
    const bool down_rows = RowParallelProjection(s, w.units.tp, true);
    matrix(name("self_attn.o_proj.weight"),
           o_rows ? std::vector<int64_t>{h, qw} : std::vector<int64_t>{l.out_count, s.q_width()},
           &l.o);
    if (s.o_bias) vector(name("self_attn.o_proj.bias"), h, &l.o_bias);
    vector(name("post_attention_layernorm.weight"), h, &l.post_norm);
    matrix(name("mlp.gate_proj.weight"), {f, h}, &l.gate);
    matrix(name("mlp.up_proj.weight"), {f, h}, &l.up);
    matrix(name("mlp.down_proj.weight"),
           down_rows ? std::vector<int64_t>{h, f}
                     : std::vector<int64_t>{l.out_count, s.intermediate_size},
           &l.down);
    if (s.mlp_bias) {
      vector(name("mlp.gate_proj.bias"), f, &l.gate_bias);
      vector(name("mlp.up_proj.bias"), f, &l.up_bias);
      vector(name("mlp.down_proj.bias"), h, &l.down_bias);
    }
  }
  if (w.units.head) {
    vector("model.norm.weight", h, &w.final_norm);
    matrix("lm_head.weight", {w.vocab_count, h}, &w.head);
  }
  return out;
}

// A tensor of the buffer: name, safetensors dtype, shape and its bytes.
struct Blob {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const std::byte* data;
  int64_t bytes;
};

// Appends `count` floats stored at `bytes` to `out`: straight from the buffer when it is float
// aligned (the usual case), else through a zero-filled resize and memcpy.
void AppendFloats(std::vector<float>& out, const std::byte* bytes, size_t count) {
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(float) == 0) {
    const auto* first = reinterpret_cast<const float*>(bytes);
    out.insert(out.end(), first, first + count);
    return;
  }
  const size_t at = out.size();
  out.resize(at + count);
  std::memcpy(out.data() + at, bytes, count * sizeof(float));
}

int64_t Count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t MetaInt(const std::map<std::string, std::string>& meta, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) throw InvalidInput("shard buffer: metadata lacks '" + key + "'");
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw InvalidInput("shard buffer: metadata '" + key + "' = '" + it->second +
                       "' is not an integer");
  }
}

// Sets the geometry fields of rank `w.rank` of a stage of `w.units` (as ExtractShard does).
void SetGeometry(ShardWeights& w, const ModelSpec& s) {
  const int tp = w.units.tp;
  w.vocab_begin = s.vocab_size * w.rank / tp;
  w.vocab_count = s.vocab_size * (w.rank + 1) / tp - w.vocab_begin;
  w.layers.assign(static_cast<size_t>(w.units.end_layer - w.units.first_layer),
                  LayerGeometry(s, tp, w.rank));
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string want;
  for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
  return "[" + want + "]";
}

}  // namespace

std::vector<std::byte> ShardToBytes(const ShardWeights& shard, const ModelSpec& spec) {
  RequireDenseShards(spec);
  const auto entries = Entries(shard, spec);
  const WeightFormat format = shard.layers.empty()
                                  ? (shard.units.embedding ? shard.embed.format : shard.head.format)
                                  : shard.layers.front().q.format;
  nlohmann::ordered_json header;
  std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"lockstep.model", spec.name},
      {"lockstep.stage", std::to_string(shard.stage)},
      {"lockstep.rank", std::to_string(shard.rank)},
      {"lockstep.tp", std::to_string(shard.units.tp)},
      {"lockstep.embedding", shard.units.embedding ? "1" : "0"},
      {"lockstep.head", shard.units.head ? "1" : "0"},
      {"lockstep.first_layer", std::to_string(shard.units.first_layer)},
      {"lockstep.end_layer", std::to_string(shard.units.end_layer)},
      {"lockstep.weights", std::string(WeightFormatName(format))},
  };
  header["__metadata__"] = meta;
  // int8 projections go out row-major (their packed form is the kernels' business); the
  // buffers live until the bytes are appended.
  std::vector<std::vector<int8_t>> row_major_q;
  std::vector<std::vector<float>> row_major_scales;
  row_major_q.reserve(entries.size());
  row_major_scales.reserve(entries.size());
  std::vector<Blob> blobs;
  for (const auto& e : entries) {
    const auto* floats = e.vector != nullptr ? e.vector : &e.weight->values;
    if (e.weight != nullptr && e.weight->format != format) {
      throw InvalidInput("shard: tensor " + e.name + " is " +
                         std::string(WeightFormatName(e.weight->format)) + ", the shard is " +
                         std::string(WeightFormatName(format)));
    }
    if (e.weight == nullptr || !IsInt8(format)) {
      if (static_cast<int64_t>(floats->size()) != Count(e.shape) ||
          (e.weight != nullptr && (e.weight->rows != e.shape[0] || e.weight->cols != e.shape[1]))) {
        throw InvalidInput("shard: tensor " + e.name + " has " + std::to_string(floats->size()) +
                           " elements, its slice needs " + std::to_string(Count(e.shape)));
      }
      blobs.push_back({e.name, "F32", e.shape, reinterpret_cast<const std::byte*>(floats->data()),
                       Count(e.shape) * 4});
      continue;
    }
    const Weight& w = *e.weight;
    if (w.rows != e.shape[0] || w.cols != e.shape[1] || !w.Consistent()) {
      throw InvalidInput("shard: int8 tensor " + e.name + " is [" + std::to_string(w.rows) + ", " +
                         std::to_string(w.cols) + "], its slice needs " + ShapeText(e.shape));
    }
    row_major_q.push_back(w.RowMajorQ());
    row_major_scales.push_back(w.RowMajorScales());
    blobs.push_back({e.name, "I8", e.shape,
                     reinterpret_cast<const std::byte*>(row_major_q.back().data()),
                     Count(e.shape)});
    blobs.push_back({e.name + "_scale",
                     "F32",
                     {w.rows, w.ScalesPerRow()},
                     reinterpret_cast<const std::byte*>(row_major_scales.back().data()),
                     w.rows * w.ScalesPerRow() * 4});
  }
  int64_t offset = 0;
  for (const Blob& b : blobs) {
    header[b.name] = {
        {"dtype", b.dtype}, {"shape", b.shape}, {"data_offsets", {offset, offset + b.bytes}}};
    offset += b.bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  // Appended piece by piece into reserved space: every byte written once, no zero fill.
  std::vector<std::byte> out;
  out.reserve(8 + text.size() + static_cast<size_t>(offset));
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xff));
  const auto* header_bytes = reinterpret_cast<const std::byte*>(text.data());
  out.insert(out.end(), header_bytes, header_bytes + text.size());
  for (const Blob& b : blobs) out.insert(out.end(), b.data, b.data + b.bytes);
  return out;
}

ShardWeights ShardFromBytes(std::span<const std::byte> bytes, const ModelSpec& spec) {
  RequireDenseShards(spec);
  if (bytes.size() < 8) throw InvalidInput("shard buffer: shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(bytes[static_cast<size_t>(i)]) << (8 * i);
  if (n > bytes.size() - 8) throw InvalidInput("shard buffer: header runs past the buffer");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes.data()) + 8,
                                   reinterpret_cast<const char*>(bytes.data()) + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    throw InvalidInput(std::string("shard buffer: malformed header: ") + e.what());
  }
  std::map<std::string, std::string> meta;
  try {
    if (header.contains("__metadata__")) {
      meta = header["__metadata__"].get<std::map<std::string, std::string>>();
    }
  } catch (const nlohmann::json::exception&) {
    throw InvalidInput("shard buffer: __metadata__ is not a map of strings");
  }
  ShardWeights w;
  w.stage = static_cast<int>(MetaInt(meta, "lockstep.stage"));
  w.rank = static_cast<int>(MetaInt(meta, "lockstep.rank"));
  w.units.tp = static_cast<int>(MetaInt(meta, "lockstep.tp"));
  w.units.embedding = MetaInt(meta, "lockstep.embedding") != 0;
  w.units.head = MetaInt(meta, "lockstep.head") != 0;
  w.units.first_layer = MetaInt(meta, "lockstep.first_layer");
  w.units.end_layer = MetaInt(meta, "lockstep.end_layer");
  const auto weights_it = meta.find("lockstep.weights");
  const std::optional<WeightFormat> format =
      weights_it == meta.end() ? WeightFormat::kFp32 : ParseWeightFormat(weights_it->second);
  if (!format) {
    throw InvalidInput("shard buffer: lockstep.weights is '" + weights_it->second +
                       "' (valid: fp32, int8-block32, int8-channel)");
  }
  const bool has_layers = w.units.end_layer > w.units.first_layer;
  if (w.units.tp < 1 || w.units.tp > spec.vocab_size ||
      (has_layers && !partition::TensorParallelProblem(spec, w.units.tp).empty()) || w.rank < 0 ||
      w.rank >= w.units.tp || w.units.first_layer < 0 || w.units.end_layer < w.units.first_layer ||
      w.units.end_layer > spec.num_layers) {
    throw InvalidInput("shard buffer: stage " + std::to_string(w.stage) + " rank " +
                       std::to_string(w.rank) + " of degree " + std::to_string(w.units.tp) +
                       " with layers [" + std::to_string(w.units.first_layer) + ", " +
                       std::to_string(w.units.end_layer) + ") does not fit model " + spec.name);
  }
  SetGeometry(w, spec);
  const std::byte* data = bytes.data() + 8 + n;
  const uint64_t data_size = bytes.size() - 8 - n;
  // The bytes of tensor `name`, which must be `dtype` of `shape` inside the buffer.
  auto find = [&](const std::string& name, const char* dtype, const std::vector<int64_t>& shape,
                  int64_t element_bytes) -> const std::byte* {
    if (!header.contains(name)) throw InvalidInput("shard buffer: tensor " + name + " is missing");
    const nlohmann::json& t = header[name];
    try {
      const auto offsets = t.at("data_offsets").get<std::vector<uint64_t>>();
      if (t.at("dtype").get<std::string>() != dtype ||
          t.at("shape").get<std::vector<int64_t>>() != shape || offsets.size() != 2 ||
          offsets[0] > offsets[1] || offsets[1] > data_size ||
          offsets[1] - offsets[0] != static_cast<uint64_t>(Count(shape) * element_bytes)) {
        throw InvalidInput("shard buffer: tensor " + name + " is not " + dtype + " " +
                           ShapeText(shape) + " inside the buffer");
      }
      return data + offsets[0];
    } catch (const nlohmann::json::exception&) {
      throw InvalidInput("shard buffer: tensor " + name + " has a malformed entry");
    }
  };
  for (const auto& e : Entries(w, spec)) {
    if (e.weight == nullptr || !IsInt8(*format)) {
      const std::byte* at = find(e.name, "F32", e.shape, 4);
      std::vector<float>& dst = e.vector != nullptr ? *e.vector : e.weight->values;
      // One copy, no zero fill first (a fresh gigabyte costs seconds to touch on some hosts).
      dst.reserve(static_cast<size_t>(Count(e.shape)));
      dst.resize(0);
      AppendFloats(dst, at, static_cast<size_t>(Count(e.shape)));
      if (e.weight != nullptr) {
        e.weight->rows = e.shape[0];
        e.weight->cols = e.shape[1];
      }
      continue;
    }
    const std::byte* q = find(e.name, "I8", e.shape, 1);
    const std::vector<int64_t> scale_shape = {e.shape[0], ScalesPerRow(*format, e.shape[1])};
    const std::byte* scale_bytes = find(e.name + "_scale", "F32", scale_shape, 4);
    std::vector<float> scales(static_cast<size_t>(Count(scale_shape)));
    if (!scales.empty()) std::memcpy(scales.data(), scale_bytes, scales.size() * sizeof(float));
    try {
      *e.weight = Weight::Int8(
          *format, e.shape[0], e.shape[1],
          {reinterpret_cast<const int8_t*>(q), static_cast<size_t>(Count(e.shape))}, scales);
    } catch (const Error& err) {
      throw InvalidInput("shard buffer: tensor " + e.name + ": " + err.what());
    }
  }
  return w;
}

}  // namespace lockstep::model
