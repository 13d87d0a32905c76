// ShardWeights <-> a safetensors buffer (the format of safetensors.h, in memory): the shard's
// slices under their Hugging Face names, fp32, and where they sit in the metadata.
#include <cstdint>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "lockstep/common/error.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/partition/cost_model.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;

template <typename Vec>
struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  Vec* data;
};

// Every tensor of a shard whose geometry fields (units, vocab range, per-layer heads and
// intermediate slice) are set, with the shape the spec implies. Shard: (const) ShardWeights.
template <typename Shard, typename Vec = std::conditional_t<
                              std::is_const_v<Shard>, const std::vector<float>, std::vector<float>>>
std::vector<Entry<Vec>> Entries(Shard& w, const ModelSpec& s) {
  const int64_t h = s.hidden_size, hd = s.head_dim;
  std::vector<Entry<Vec>> out;
  if (w.units.embedding) out.push_back({"model.embed_tokens.weight", {w.vocab_count, h}, &w.embed});
  for (size_t i = 0; i < w.layers.size(); ++i) {
    auto& l = w.layers[i];
    const int64_t layer = w.units.first_layer + static_cast<int64_t>(i);
    const int64_t qw = l.q_heads * hd, kvw = l.kv_heads * hd, f = l.f_count;
    auto add = [&](const char* suffix, std::vector<int64_t> shape, Vec* data) {
      out.push_back({LayerTensorName(layer, suffix), std::move(shape), data});
    };
    add("input_layernorm.weight", {h}, &l.input_norm);
    add("self_attn.q_proj.weight", {qw, h}, &l.q);
    add("self_attn.k_proj.weight", {kvw, h}, &l.k);
    add("self_attn.v_proj.weight", {kvw, h}, &l.v);
    if (s.qkv_bias) {
      add("self_attn.q_proj.bias", {qw}, &l.q_bias);
      add("self_attn.k_proj.bias", {kvw}, &l.k_bias);
      add("self_attn.v_proj.bias", {kvw}, &l.v_bias);
    }
    const bool o_rows = RowParallelProjection(s, w.units.tp, false);
    const bool down_rows = RowParallelProjection(s, w.units.tp, true);
    add("self_attn.o_proj.weight",
        o_rows ? std::vector<int64_t>{h, qw} : std::vector<int64_t>{l.out_count, s.q_width()},
        &l.o);
    if (s.o_bias) add("self_attn.o_proj.bias", {h}, &l.o_bias);
    add("post_attention_layernorm.weight", {h}, &l.post_norm);
    add("mlp.gate_proj.weight", {f, h}, &l.gate);
    add("mlp.up_proj.weight", {f, h}, &l.up);
    add("mlp.down_proj.weight",
        down_rows ? std::vector<int64_t>{h, f}
                  : std::vector<int64_t>{l.out_count, s.intermediate_size},
        &l.down);
    if (s.mlp_bias) {
      add("mlp.gate_proj.bias", {f}, &l.gate_bias);
      add("mlp.up_proj.bias", {f}, &l.up_bias);
      add("mlp.down_proj.bias", {h}, &l.down_bias);
    }
  }
  if (w.units.head) {
    out.push_back({"model.norm.weight", {h}, &w.final_norm});
    out.push_back({"lm_head.weight", {w.vocab_count, h}, &w.head});
  }
  return out;
}

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

}  // namespace

std::vector<std::byte> ShardToBytes(const ShardWeights& shard, const ModelSpec& spec) {
  const auto entries = Entries(shard, spec);
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
  };
  header["__metadata__"] = meta;
  int64_t offset = 0;
  for (const auto& e : entries) {
    if (static_cast<int64_t>(e.data->size()) != Count(e.shape)) {
      throw InvalidInput("shard: tensor " + e.name + " has " + std::to_string(e.data->size()) +
                         " elements, its slice needs " + std::to_string(Count(e.shape)));
    }
    const int64_t bytes = Count(e.shape) * 4;
    header[e.name] = {
        {"dtype", "F32"}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
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
  for (const auto& e : entries) {
    const auto* tensor = reinterpret_cast<const std::byte*>(e.data->data());
    out.insert(out.end(), tensor, tensor + e.data->size() * sizeof(float));
  }
  return out;
}

ShardWeights ShardFromBytes(std::span<const std::byte> bytes, const ModelSpec& spec) {
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
  for (const auto& e : Entries(w, spec)) {
    if (!header.contains(e.name)) {
      throw InvalidInput("shard buffer: tensor " + e.name + " is missing");
    }
    const nlohmann::json& t = header[e.name];
    try {
      const auto shape = t.at("dtype").get<std::string>() == "F32"
                             ? t.at("shape").get<std::vector<int64_t>>()
                             : std::vector<int64_t>{};
      const auto offsets = t.at("data_offsets").get<std::vector<uint64_t>>();
      if (shape != e.shape || offsets.size() != 2 || offsets[0] > offsets[1] ||
          offsets[1] > data_size ||
          offsets[1] - offsets[0] != static_cast<uint64_t>(Count(e.shape)) * 4) {
        std::string want;
        for (int64_t d : e.shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
        throw InvalidInput("shard buffer: tensor " + e.name + " is not F32 [" + want +
                           "] inside the buffer");
      }
      // One copy, no zero fill first (a fresh gigabyte costs seconds to touch on some hosts).
      e.data->reserve(static_cast<size_t>(Count(e.shape)));
      e.data->resize(0);
      AppendFloats(*e.data, data + offsets[0], static_cast<size_t>(Count(e.shape)));
    } catch (const nlohmann::json::exception&) {
      throw InvalidInput("shard buffer: tensor " + e.name + " has a malformed entry");
    }
  }
  return w;
}

}  // namespace lockstep::model
