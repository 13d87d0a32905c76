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
  return j.dump(2) + "\n";
}

}  // namespace lockstep::partition
