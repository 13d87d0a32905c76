#include "lockstep/viz/report_json.h"

namespace lockstep::viz {
namespace {

nlohmann::json MeasuredJson(const schedule::Measured& m) {
  return {{"value", m.value}, {"bound", m.bound}, {"ratio", m.ratio}};
}

}  // namespace

nlohmann::json ModelJson(const partition::ModelSpec& m, Dtype dtype, int64_t context) {
  const partition::ParameterCounts c = partition::CountParameters(m);
  const int64_t weight_bytes = partition::WeightBytes(m, dtype);
  const int64_t kv_bytes = partition::KvCacheBytesPerToken(m, dtype);
  const int64_t flops = partition::DecodeFlopsPerToken(m, context);
  nlohmann::json j;
  j["name"] = m.name;
  j["model_type"] = m.model_type;
  j["dtype"] = std::string(DtypeName(dtype));
  j["parameters"] = c.total;
  j["parameters_active"] = c.active_total;
  j["parameters_per_layer"] = {{"total", c.per_layer},
                               {"attention", c.attention_per_layer},
                               {"mlp", c.mlp_per_layer},
                               {"norms", c.norms_per_layer},
                               {"active", c.active_per_layer}};
  j["parameters_embedding"] = c.embedding;
  j["parameters_lm_head"] = c.lm_head;
  j["parameters_final_norm"] = c.final_norm;
  j["weight_bytes"] = weight_bytes;
  j["kv_cache_bytes_per_token"] = kv_bytes;
  j["context"] = context;
  j["flops_per_decoded_token"] = flops;
  j["shape"] = {{"hidden_size", m.hidden_size},
                {"intermediate_size", m.intermediate_size},
                {"num_layers", m.num_layers},
                {"num_heads", m.num_heads},
                {"num_kv_heads", m.num_kv_heads},
                {"head_dim", m.head_dim},
                {"vocab_size", m.vocab_size},
                {"tie_word_embeddings", m.tie_word_embeddings},
                {"qkv_bias", m.qkv_bias},
                {"num_experts", m.num_experts},
                {"experts_per_token", m.experts_per_token},
                {"max_position_embeddings", m.max_position_embeddings},
                {"rope_theta", m.rope_theta}};
  if (m.rope_scaling) {
    j["shape"]["rope_scaling"] = {{"type", m.rope_scaling->type},
                                  {"factor", m.rope_scaling->factor}};
  }
  return j;
}

std::vector<schedule::GapShare> GapContributors(const schedule::SimResult& r) {
  std::vector<schedule::GapShare> out;
  for (const schedule::GapShare& g : r.gap) {
    if (g.what != "compute" && g.what != "collective reduce steps") out.push_back(g);
  }
  return out;
}

namespace {

nlohmann::json SharesJson(const std::vector<schedule::GapShare>& shares) {
  nlohmann::json out = nlohmann::json::array();
  for (const schedule::GapShare& g : shares) {
    out.push_back({{"what", g.what}, {"ns", g.ns}, {"stage", g.stage}, {"stage_ns", g.stage_ns}});
  }
  return out;
}

// The schedule's part: both forms carry the same summary.
template <typename Schedule>
nlohmann::json Simulated(const partition::Plan& plan, const Schedule& schedule,
                         const schedule::SimResult& r) {
  const schedule::SimMetrics& m = r.metrics;
  return {{"model", schedule.model},
          {"topology", schedule.topology},
          {"tokens", schedule.tokens},
          {"sequences", schedule.sequences},
          {"token_latency_ns", m.token_latency_ns.value},
          {"tokens_per_s", m.tokens_per_s.value},
          {"tokens_per_s_per_user", m.tokens_per_s_per_user.value},
          {"predicted_token_latency_ns", plan.predicted.token_latency_ns},
          {"scheduled_token_latency_ns", schedule.token_latency_ns},
          {"time_to_first_token_ns",
           schedule.prefill ? nlohmann::json(m.time_to_first_token_ns.value) : nlohmann::json()},
          {"predicted_time_to_first_token_ns", plan.predicted.time_to_first_token_ns},
          {"compute_utilization", m.compute_utilization.value},
          {"compute_utilization_max", m.compute_utilization_max},
          {"link_utilization", m.link_utilization.value},
          {"link_utilization_max", m.link_utilization_max},
          {"bubble_fraction", m.bubble_fraction.value},
          {"makespan_ns", m.makespan_ns},
          {"events", m.events},
          {"bounds",
           {{"token_latency_ns", MeasuredJson(m.token_latency_ns)},
            {"tokens_per_s", MeasuredJson(m.tokens_per_s)},
            {"tokens_per_s_per_user", MeasuredJson(m.tokens_per_s_per_user)},
            {"compute_utilization", MeasuredJson(m.compute_utilization)},
            {"link_utilization", MeasuredJson(m.link_utilization)},
            {"time_to_first_token_ns", MeasuredJson(m.time_to_first_token_ns)},
            {"bubble_fraction", MeasuredJson(m.bubble_fraction)}}},
          {"critical_path", SharesJson(r.gap)},
          {"gap",
           {{"ns", m.token_latency_ns.value - m.token_latency_ns.bound},
            {"contributors", SharesJson(GapContributors(r))}}}};
}

}  // namespace

nlohmann::json SimulateJson(const partition::Plan& plan, const schedule::CompactSchedule& schedule,
                            const schedule::SimResult& r) {
  return Simulated(plan, schedule, r);
}

nlohmann::json SimulateJson(const partition::Plan& plan, const schedule::GlobalSchedule& schedule,
                            const schedule::SimResult& r) {
  return Simulated(plan, schedule, r);
}

}  // namespace lockstep::viz
