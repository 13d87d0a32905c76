#include "lockstep/coordinator/deployment.h"

#include <algorithm>

#include "lockstep/common/error.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/schedule/queries.h"
#include "lockstep/schedule/validate.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::coordinator {

uint64_t Deployment::shard_bytes() const {
  uint64_t total = 0;
  for (const ChipDeployment& c : chips) total += c.shard.size();
  return total;
}

void CheckSchedule(const schedule::GlobalSchedule& schedule, const topology::Topology& topo,
                   const partition::LinkCostParams& link_params) {
  schedule::ValidateOptions vo;
  vo.link_params = link_params;
  vo.max_problems = 10;
  const std::vector<std::string> problems = schedule::Validate(schedule, topo, vo);
  if (problems.empty()) return;
  std::string more;
  if (problems.size() > 1) {
    more = " (and " + std::to_string(problems.size() - 1) +
           (problems.size() >= vo.max_problems ? " or more" : "") + " other problems)";
  }
  throw InvalidInput(
      "the compiled schedule fails validation (nothing deployed): " + problems.front() + more);
}

namespace {

ScheduleStep StepOf(const schedule::GlobalSchedule& global) {
  ScheduleStep t;
  t.step_ns = global.makespan_ns;
  for (const schedule::ChipProgram& program : global.programs) {
    for (const schedule::Instruction& in : program.instructions) t.compute_ns += in.duration_ns;
  }
  return t;
}

}  // namespace

ScheduleStep InFlightStep(const partition::Plan& plan, const partition::ModelSpec& spec,
                          const topology::Topology& topo, int32_t sequences) {
  if (sequences < 1) throw InvalidInput("InFlightStep: sequences must be >= 1");
  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = sequences;
  so.chip_params = plan.chip_params;  // as the deployment compiles it
  so.link_params = plan.link_params;
  return StepOf(schedule::Compile(plan, spec, topo, so));
}

namespace {

// The deployment of `plan` with each used chip's shard filled in by `shard(stages, chip)`.
template <typename ShardFn>
Deployment Make(const partition::Plan& plan, const partition::ModelSpec& spec,
                const topology::Topology& topo, const DeployOptions& options, ShardFn shard) {
  if (plan.topology != topo.name()) {
    throw InvalidInput("plan was made for topology '" + plan.topology + "', not '" + topo.name() +
                       "' (plan again for this topology, or pass the plan's topology)");
  }
  if (plan.model != spec.name) {
    throw InvalidInput("plan was made for model '" + plan.model + "', not '" + spec.name + "'");
  }
  const std::vector<std::string> problems = partition::VerifyPlan(plan, spec, topo);
  if (!problems.empty()) {
    throw InvalidInput("plan does not fit topology '" + topo.name() + "': " + problems.front());
  }
  if (options.slots < 0) throw InvalidInput("slots must be >= 1");
  Deployment d;
  d.spec = spec;
  d.slots = options.slots > 0 ? options.slots : static_cast<int32_t>(plan.stages.size());
  d.max_positions =
      options.max_positions > 0 ? options.max_positions : spec.max_position_embeddings;
  d.transport = options.transport;
  d.predicted_token_latency_ns = plan.predicted.token_latency_ns;
  // The schedule id is a digest of the plan: frames of another deployment never match.
  const std::string plan_bytes = partition::SerializePlan(plan);
  d.schedule_id = transport::Crc32c(std::as_bytes(std::span(plan_bytes))) | (uint64_t{1} << 32);

  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = d.slots;
  // The plan's own figures (a calibrated host's, --cost-params'), not the chip's defaults: the
  // schedule then keeps the times the plan predicted.
  so.chip_params = plan.chip_params;
  so.link_params = plan.link_params;
  d.link_params = plan.link_params;
  // A self-clocked run repeats the period as the modulo schedule does (same programs, plus the
  // repeat interval); the validator then checks the overlapping periods too.
  so.modulo = !options.prompt_buckets.empty();
  const schedule::GlobalSchedule global = schedule::Compile(plan, spec, topo, so);
  CheckSchedule(global, topo, plan.link_params);  // before any shard is cut or shipped
  std::vector<schedule::GlobalSchedule> prefill;
  for (int64_t bucket : options.prompt_buckets) {
    schedule::ScheduleOptions po;
    po.sequences = 1;
    po.chip_params = plan.chip_params;
    po.link_params = plan.link_params;
    po.prefill = true;
    po.prompt_len = bucket;
    po.prompt_buckets = options.prompt_buckets;
    po.prefill_chunk = options.prefill_chunk;
    const schedule::GlobalSchedule compiled = schedule::Compile(plan, spec, topo, po);
    CheckSchedule(compiled, topo, plan.link_params);
    prefill.push_back(schedule::PrefillPass(compiled));
  }
  if (so.modulo) {
    d.prompt_buckets = options.prompt_buckets;
    d.repeat_ns = global.repeat_ns;
    d.decode_makespan_ns = global.makespan_ns;
    d.lookahead = options.lookahead;
  }
  d.schedule_token_latency_ns = global.token_latency_ns;
  const ScheduleStep step = StepOf(global);
  d.schedule_step_ns = step.step_ns;
  d.schedule_compute_ns = step.compute_ns;
  // Each link direction must buffer a whole step's messages (chips trail each other within a
  // step), or a sender could block on a receiver that waits for it.
  // A self-clocked run overlaps consecutive periods (and a prefill pass follows a period):
  // twice a period's messages, plus the largest pass's.
  int64_t per_link = schedule::MaxMessagesPerLinkDirection(global);
  if (so.modulo) {
    int64_t prefill_most = 0;
    for (const schedule::GlobalSchedule& p : prefill) {
      prefill_most = std::max(prefill_most, schedule::MaxMessagesPerLinkDirection(p));
    }
    per_link = 2 * per_link + prefill_most;
  }
  d.transport.queue_capacity =
      static_cast<int>(std::max<int64_t>(d.transport.queue_capacity, per_link));
  const std::vector<model::StageUnits> stages = model::StagesFromPlan(plan);
  d.sampling_chip = static_cast<uint32_t>(plan.stages.back().chips.front());
  int index = 0;
  for (const schedule::ChipProgram& program : global.programs) {
    ChipDeployment c;
    c.chip = static_cast<uint32_t>(program.chip);
    c.stage = program.stage;
    c.rank = program.rank;
    c.index = index++;
    c.links = control::LinkSpecs(topo, schedule::ProgramLinks(program));
    if (program.stage >= 0) shard(stages, c);
    c.program = program;
    if (program.stage >= 0) c.group = plan.stages[static_cast<size_t>(program.stage)].chips;
    c.incoming = schedule::IncomingTables(global, program.chip);
    for (size_t b = 0; b < prefill.size(); ++b) {
      control::AssignmentMsg::Prefill p;
      p.bucket = options.prompt_buckets[b];
      p.chunk_tokens = prefill[b].prefill_chunk_tokens;
      p.makespan_ns = prefill[b].makespan_ns;
      for (const schedule::ChipProgram& q : prefill[b].programs) {
        if (q.chip == program.chip) p.program = q;
      }
      p.program.chip = program.chip;
      c.prefill.push_back(std::move(p));
    }
    d.chips.push_back(std::move(c));
  }
  return d;
}

}  // namespace

Deployment MakeDeployment(const partition::Plan& plan, const partition::ModelSpec& spec,
                          const topology::Topology& topo, const model::LlamaWeights& weights,
                          const DeployOptions& options) {
  return Make(plan, spec, topo, options,
              [&](const std::vector<model::StageUnits>& stages, ChipDeployment& c) {
                c.shard = model::ShardToBytes(
                    model::ExtractShard(weights, spec, stages, c.stage, c.rank), spec);
              });
}

Deployment MakeDeployment(const partition::Plan& plan, const partition::ModelSpec& spec,
                          const topology::Topology& topo, const model::ShardSource& weights,
                          const DeployOptions& options) {
  model::RequireDenseShards(spec);
  if (!weights.checkpoint.empty()) {
    model::CheckLlamaWeights(model::Checkpoint::Open(weights.checkpoint), spec);
  }
  return Make(plan, spec, topo, options,
              [&](const std::vector<model::StageUnits>& stages, ChipDeployment& c) {
                model::ShardSource source = weights;
                source.stages = stages;
                source.stage = c.stage;
                source.rank = c.rank;
                c.shard_source = model::EncodeShardSource(source);
              });
}

void MaterializeShard(const partition::ModelSpec& spec, ChipDeployment& c) {
  if (c.shard_source.empty()) return;
  c.shard =
      model::ShardToBytes(model::LoadShard(model::DecodeShardSource(c.shard_source), spec), spec);
  c.shard_source.clear();
}

}  // namespace lockstep::coordinator
