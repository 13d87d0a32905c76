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
  so.link_params = options.link_params;
  const schedule::GlobalSchedule global = schedule::Compile(plan, spec, topo, so);
  CheckSchedule(global, topo, options.link_params);  // before any shard is cut or shipped
  d.schedule_token_latency_ns = global.token_latency_ns;
  d.schedule_step_ns = global.makespan_ns;
  for (const schedule::ChipProgram& program : global.programs) {
    for (const schedule::Instruction& in : program.instructions)
      d.schedule_compute_ns += in.duration_ns;
  }
  // Each link direction must buffer a whole step's messages (chips trail each other within a
  // step), or a sender could block on a receiver that waits for it.
  d.transport.queue_capacity = static_cast<int>(
      std::max<int64_t>(d.transport.queue_capacity, schedule::MaxMessagesPerLinkDirection(global)));
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
