#include <nlohmann/json.hpp>

#include "lockstep/partition/plan.h"

namespace lockstep::partition {

std::string PlanToJson(const Plan& plan) {
  // nlohmann::json objects keep keys sorted, and numbers print the same way every time: the
  // same plan always gives the same bytes.
  nlohmann::json j;
  j["model"] = plan.model;
  j["topology"] = plan.topology;
  j["chip"] = plan.chip;
  j["objective"] = std::string(ObjectiveName(plan.objective));
  j["workload"] = {{"phase", std::string(PhaseName(plan.workload.phase))},
                   {"batch", plan.workload.batch},
                   {"context", plan.workload.context},
                   {"dtype", std::string(DtypeName(plan.workload.dtype))},
                   {"prompt_len", plan.prompt_len}};
  j["chips_available"] = plan.chips_available;
  j["chips_used"] = plan.chips_used;
  nlohmann::json stages = nlohmann::json::array();
  for (const StagePlan& s : plan.stages) {
    stages.push_back({{"index", s.index},
                      {"first_unit", s.first_unit},
                      {"end_unit", s.end_unit},
                      {"embedding", s.has_embedding},
                      {"lm_head", s.has_head},
                      {"first_layer", s.first_layer},
                      {"end_layer", s.end_layer},
                      {"layers", s.end_layer - s.first_layer},
                      {"tp", s.tp},
                      {"chips", s.chips},
                      {"weight_bytes_per_chip", s.weight_bytes},
                      {"kv_bytes_per_chip", s.kv_bytes},
                      {"activation_bytes_per_chip", s.activation_bytes},
                      {"memory_bytes_per_chip", s.memory_bytes},
                      {"headroom_bytes_per_chip", s.headroom_bytes},
                      {"compute_ns", s.compute_ns},
                      {"collective_ns", s.collective_ns},
                      {"stage_ns", s.stage_ns},
                      {"send_ns", s.send_ns},
                      {"send_hops", s.send_hops},
                      {"ring_chain_hops", s.ring_chain_hops},
                      {"gather_hops", s.gather_hops},
                      {"prefill_ns", s.prefill_ns}});
  }
  j["stages"] = stages;
  const Prediction& p = plan.predicted;
  j["predicted"] = {{"token_latency_ns", p.token_latency_ns},
                    {"tokens_per_s_per_user", p.tokens_per_s_per_user},
                    {"tokens_per_s", p.tokens_per_s},
                    {"interval_ns", p.interval_ns},
                    {"micro_batches_in_flight", p.micro_batches_in_flight},
                    {"time_to_first_token_ns", p.time_to_first_token_ns},
                    {"bottleneck_stage", p.bottleneck_stage},
                    {"lower_bounds",
                     {{"compute_ns", p.compute_bound_ns},
                      {"weight_stream_ns", p.weight_stream_bound_ns},
                      {"link_ns", p.link_bound_ns}}}};
  // What the plan was made from. The JSON form is for reading; the topology appears as a
  // summary (the binary plan carries it whole).
  const ModelSpec& m = plan.spec;
  nlohmann::json spec = {
      {"name", m.name},
      {"model_type", m.model_type},
      {"hidden_size", m.hidden_size},
      {"intermediate_size", m.intermediate_size},
      {"num_hidden_layers", m.num_layers},
      {"num_attention_heads", m.num_heads},
      {"num_key_value_heads", m.num_kv_heads},
      {"head_dim", m.head_dim},
      {"vocab_size", m.vocab_size},
      {"tie_word_embeddings", m.tie_word_embeddings},
      {"qkv_bias", m.qkv_bias},
      {"o_bias", m.o_bias},
      {"mlp_bias", m.mlp_bias},
      {"num_local_experts", m.num_experts},
      {"num_experts_per_tok", m.experts_per_token},
      {"rope_theta", m.rope_theta},
      {"rms_norm_eps", m.rms_norm_eps},
      {"max_position_embeddings", m.max_position_embeddings},
      {"sliding_window", m.sliding_window},
      {"torch_dtype",
       m.torch_dtype ? nlohmann::json(std::string(DtypeName(*m.torch_dtype))) : nlohmann::json()}};
  if (m.rope_scaling) {
    spec["rope_scaling"] = {
        {"type", m.rope_scaling->type},
        {"factor", m.rope_scaling->factor},
        {"low_freq_factor", m.rope_scaling->low_freq_factor},
        {"high_freq_factor", m.rope_scaling->high_freq_factor},
        {"original_max_position_embeddings", m.rope_scaling->original_max_position_embeddings}};
  } else {
    spec["rope_scaling"] = nullptr;
  }
  j["model_spec"] = spec;
  const ChipCostParams& c = plan.chip_params;
  const LinkCostParams& l = plan.link_params;
  const RuntimeCostParams& rt = plan.runtime_params;
  j["cost_params"] = {{"name", plan.cost_params_name},
                      {"runtime",
                       {{"control_hops", rt.control_hops},
                        {"control_hop_ns", rt.control_hop_ns},
                        {"step_overhead_ns", rt.step_overhead_ns},
                        {"cores", rt.cores},
                        {"shared_weight_stream_bytes_per_s", rt.shared_weight_stream_bytes_per_s}}},
                      {"chip",
                       {{"matrix_efficiency", c.matrix_efficiency},
                        {"weight_stream_bytes_per_s", c.weight_stream_bytes_per_s},
                        {"weight_stream_fraction", c.weight_stream_fraction},
                        {"vector_ops_per_s", c.vector_ops_per_s},
                        {"memory_efficiency", c.memory_efficiency},
                        {"op_overhead_ns", c.op_overhead_ns},
                        {"matrix_fill_ns", c.matrix_fill_ns},
                        {"vector_fill_ns", c.vector_fill_ns},
                        {"layer_sync_ns", c.layer_sync_ns}}},
                      {"link",
                       {{"link_efficiency", l.link_efficiency},
                        {"hop_latency_ns", l.hop_latency_ns},
                        {"collective_step_overhead_ns", l.collective_step_overhead_ns}}}};
  const topology::Topology& t = plan.system.topology;
  nlohmann::json down_chips = nlohmann::json::array(), down_links = nlohmann::json::array(),
                 specs = nlohmann::json::array();
  for (const topology::Chip& chip : t.chips()) {
    if (chip.down) down_chips.push_back(chip.id);
  }
  for (const topology::Link& link : t.links()) {
    if (link.down) down_links.push_back(link.id);
  }
  for (const topology::ChipSpec& cs : t.specs()) specs.push_back(cs.name);
  j["system"] = {
      {"name", t.name()},          {"chip_specs", specs},      {"chips", t.chip_count()},
      {"links", t.link_count()},   {"nodes", t.node_count()},  {"racks", t.rack_count()},
      {"spares", t.spare_count()}, {"down_chips", down_chips}, {"down_links", down_links}};
  return j.dump(2) + "\n";
}

}  // namespace lockstep::partition
