// Content comparison of the inputs a Plan carries (its topology and model spec), for plan
// equality and for the CLI's "does this --model/--topology match the plan" check.
#include <sstream>

#include "lockstep/partition/plan.h"

namespace lockstep::partition {
namespace {

template <typename T>
std::string Differs(const char* field, const T& a, const T& b) {
  if (a == b) return "";
  std::ostringstream s;
  s << field << " " << a << " vs " << b;
  return s.str();
}

std::string Flag(bool on, const char* yes, const char* no) { return on ? yes : no; }

}  // namespace

bool operator==(const TopologyValue& a, const TopologyValue& b) {
  return TopologyDifference(a.topology, b.topology).empty();
}

std::string TopologyDifference(const topology::Topology& a, const topology::Topology& b) {
  const std::string theirs = "'" + b.name() + "'";
  if (a.name() != b.name()) return "topology name '" + a.name() + "' vs " + theirs;
  if (a.specs().size() != b.specs().size()) {
    return std::to_string(a.specs().size()) + " chip specs vs " + std::to_string(b.specs().size());
  }
  for (size_t i = 0; i < a.specs().size(); ++i) {
    if (!(a.specs()[i] == b.specs()[i])) {
      return "chip spec " + std::to_string(i) + " ('" + a.specs()[i].name + "') differs from " +
             theirs + "'s ('" + b.specs()[i].name + "')";
    }
  }
  if (a.chip_count() != b.chip_count()) {
    return std::to_string(a.chip_count()) + " chips vs " + std::to_string(b.chip_count()) + " in " +
           theirs;
  }
  for (int i = 0; i < a.chip_count(); ++i) {
    const topology::Chip& x = a.chips()[static_cast<size_t>(i)];
    const topology::Chip& y = b.chips()[static_cast<size_t>(i)];
    const std::string chip = "chip " + std::to_string(i) + " ";
    if (x.down != y.down) {
      return chip + "is " + Flag(x.down, "down", "up") + " in the plan's topology, " +
             Flag(y.down, "down", "up") + " in " + theirs;
    }
    if (x.spare != y.spare) {
      return chip + "is " + Flag(x.spare, "a spare", "not a spare") + " in the plan's topology, " +
             Flag(y.spare, "a spare", "not a spare") + " in " + theirs;
    }
    if (x.node != y.node || x.rack != y.rack || x.spec != y.spec) {
      return chip + "sits in node " + std::to_string(x.node) + " rack " + std::to_string(x.rack) +
             " in the plan's topology, node " + std::to_string(y.node) + " rack " +
             std::to_string(y.rack) + " in " + theirs;
    }
  }
  if (a.link_count() != b.link_count()) {
    return std::to_string(a.link_count()) + " links vs " + std::to_string(b.link_count()) + " in " +
           theirs;
  }
  for (int i = 0; i < a.link_count(); ++i) {
    const topology::Link& x = a.links()[static_cast<size_t>(i)];
    const topology::Link& y = b.links()[static_cast<size_t>(i)];
    const std::string link = "link " + std::to_string(i) + " ";
    if (x.down != y.down) {
      return link + "is " + Flag(x.down, "down", "up") + " in the plan's topology, " +
             Flag(y.down, "down", "up") + " in " + theirs;
    }
    if (!(x.a == y.a) || !(x.b == y.b)) {
      return link + "joins " + topology::FormatPortRef(x.a) + "-" + topology::FormatPortRef(x.b) +
             " in the plan's topology, " + topology::FormatPortRef(y.a) + "-" +
             topology::FormatPortRef(y.b) + " in " + theirs;
    }
    if (x.bandwidth_bytes_per_s != y.bandwidth_bytes_per_s || x.latency_ns != y.latency_ns) {
      return link + "has " + std::to_string(x.bandwidth_bytes_per_s) + " B/s, " +
             std::to_string(x.latency_ns) + " ns in the plan's topology, " +
             std::to_string(y.bandwidth_bytes_per_s) + " B/s, " + std::to_string(y.latency_ns) +
             " ns in " + theirs;
    }
  }
  return "";
}

std::string ModelSpecDifference(const ModelSpec& a, const ModelSpec& b) {
  for (const std::string& d : {
           Differs("model_type", a.model_type, b.model_type),
           Differs("hidden_size", a.hidden_size, b.hidden_size),
           Differs("intermediate_size", a.intermediate_size, b.intermediate_size),
           Differs("num_hidden_layers", a.num_layers, b.num_layers),
           Differs("num_attention_heads", a.num_heads, b.num_heads),
           Differs("num_key_value_heads", a.num_kv_heads, b.num_kv_heads),
           Differs("head_dim", a.head_dim, b.head_dim),
           Differs("vocab_size", a.vocab_size, b.vocab_size),
           Differs("tie_word_embeddings", a.tie_word_embeddings, b.tie_word_embeddings),
           Differs("qkv_bias", a.qkv_bias, b.qkv_bias),
           Differs("o_bias", a.o_bias, b.o_bias),
           Differs("mlp_bias", a.mlp_bias, b.mlp_bias),
           Differs("num_local_experts", a.num_experts, b.num_experts),
           Differs("num_experts_per_tok", a.experts_per_token, b.experts_per_token),
           Differs("rope_theta", a.rope_theta, b.rope_theta),
           Differs("rms_norm_eps", a.rms_norm_eps, b.rms_norm_eps),
           Differs("max_position_embeddings", a.max_position_embeddings, b.max_position_embeddings),
           Differs("sliding_window", a.sliding_window, b.sliding_window),
       }) {
    if (!d.empty()) return d;
  }
  if (a.rope_scaling != b.rope_scaling) return "rope_scaling differs";
  if (a.torch_dtype != b.torch_dtype) return "torch_dtype differs";
  return "";
}

}  // namespace lockstep::partition
