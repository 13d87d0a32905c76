#include <nlohmann/json.hpp>

#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {
namespace {

using nlohmann::ordered_json;

ordered_json InstructionsJson(const std::vector<Instruction>& instructions) {
  ordered_json instrs = ordered_json::array();
  for (const Instruction& in : instructions) {
    ordered_json j = {{"kind", InstrKindName(in.kind)},
                      {"what", in.tag == Tag::kOp ? partition::OpKindName(in.op) : TagName(in.tag)},
                      {"token", in.token},
                      {"sequence", in.sequence},
                      {"stage", in.stage},
                      {"layer", in.layer},
                      {"start_ns", in.start_ns},
                      {"end_ns", in.end_ns}};
    if (in.kind == InstrKind::kCompute || in.kind == InstrKind::kReduce) {
      j["duration_ns"] = in.duration_ns;
    } else {
      j["bytes"] = in.bytes;
    }
    if (in.link >= 0) j["out"] = {{"link", in.link}, {"to", in.peer}, {"msg", in.msg}};
    if (in.in_link >= 0) j["in"] = {{"link", in.in_link}, {"from", in.in_peer}, {"msg", in.in_msg}};
    if (!in.deps.empty()) j["deps"] = in.deps;
    instrs.push_back(std::move(j));
  }
  return instrs;
}

}  // namespace

std::string ScheduleToJson(const GlobalSchedule& s) {
  ordered_json programs = ordered_json::array();
  for (const ChipProgram& p : s.programs) {
    programs.push_back({{"chip", p.chip},
                        {"stage", p.stage},
                        {"rank", p.rank},
                        {"resident_bytes", p.resident_bytes},
                        {"instructions", InstructionsJson(p.instructions)}});
  }
  ordered_json links = ordered_json::array();
  for (const LinkTable& t : s.links) {
    ordered_json r = ordered_json::array();
    for (const Reservation& x : t.reservations) r.push_back({x.start_ns, x.end_ns, x.msg});
    links.push_back(
        {{"link", t.link}, {"from", t.from}, {"to", t.to}, {"reservations", std::move(r)}});
  }
  ordered_json j = {{"model", s.model},
                    {"topology", s.topology},
                    {"tokens", s.tokens},
                    {"sequences", s.sequences},
                    {"batch", s.batch},
                    {"stages", s.stages},
                    {"token_latency_ns", s.token_latency_ns},
                    {"cycle_ns", s.cycle_ns},
                    {"period_ns", s.period_ns},
                    {"makespan_ns", s.makespan_ns},
                    {"prefill", s.prefill},
                    {"iterations", s.iterations},
                    {"repeat_ns", s.repeat_ns},
                    {"msg_stride", s.msg_stride},
                    {"prompt_len", s.prompt_len},
                    {"prompt_bucket", s.prompt_bucket},
                    {"prefill_chunks", s.prefill_chunks},
                    {"prefill_chunk_tokens", s.prefill_chunk_tokens},
                    {"prefill_peak_bytes", s.prefill_peak_bytes},
                    {"time_to_first_token_ns", s.time_to_first_token_ns},
                    {"programs", std::move(programs)},
                    {"links", std::move(links)}};
  return j.dump() + "\n";
}

std::string ScheduleToJson(const CompactSchedule& s) {
  ordered_json phases = ordered_json::array();
  for (const Phase& ph : s.phases) {
    phases.push_back({{"kind", PhaseKindName(ph.kind)},
                      {"first_token", ph.first_token},
                      {"passes", ph.passes},
                      {"slots", ph.slots},
                      {"slot_ns", ph.slot_ns},
                      {"start_ns", ph.start_ns},
                      {"messages", ph.messages},
                      {"msg_base", ph.msg_base},
                      {"token_latency_ns", ph.token_latency_ns}});
  }
  ordered_json chips = ordered_json::array();
  for (const CompactChip& c : s.chips) {
    ordered_json bodies = ordered_json::array();
    for (const std::vector<Instruction>& body : c.bodies) bodies.push_back(InstructionsJson(body));
    chips.push_back({{"chip", c.chip},
                     {"stage", c.stage},
                     {"rank", c.rank},
                     {"resident_bytes", c.resident_bytes},
                     {"bodies", std::move(bodies)}});
  }
  ordered_json j = {{"model", s.model},
                    {"topology", s.topology},
                    {"plan_digest", s.plan_digest},
                    {"tokens", s.tokens},
                    {"sequences", s.sequences},
                    {"batch", s.batch},
                    {"stages", s.stages},
                    {"token_latency_ns", s.token_latency_ns},
                    {"cycle_ns", s.cycle_ns},
                    {"period_ns", s.period_ns},
                    {"makespan_ns", s.makespan_ns},
                    {"prefill", s.prefill},
                    {"prompt_len", s.prompt_len},
                    {"prompt_bucket", s.prompt_bucket},
                    {"prefill_chunks", s.prefill_chunks},
                    {"prefill_chunk_tokens", s.prefill_chunk_tokens},
                    {"prefill_peak_bytes", s.prefill_peak_bytes},
                    {"time_to_first_token_ns", s.time_to_first_token_ns},
                    {"phases", std::move(phases)},
                    {"chips", std::move(chips)}};
  return j.dump() + "\n";
}

}  // namespace lockstep::schedule
