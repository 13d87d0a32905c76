// ProbeRuntime (calibrate_runtime.h): a small model's decode steps run by worker processes, beside
// their prediction.
#include "calibrate_runtime.h"

#include <algorithm>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/launch/launch.h"
#include "lockstep/partition/plan.h"

namespace lockstep::cli {
namespace {

// Eight layers of width 128: microseconds of compute per step, and 17 collectives at TP 2 (two
// per layer and the embedding's) for the per-collective figure. Each rank's slice of the
// projections' contraction is a whole 64-element chunk (row-parallel, one-shot all-reduces, as
// a large model's are).
partition::ModelSpec ProbeModel() {
  return partition::ParseModelSpec(
      R"({"_name_or_path": "calibrate-probe", "model_type": "llama", "hidden_size": 128,
          "intermediate_size": 256, "num_hidden_layers": 8, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-5,
          "max_position_embeddings": 128})",
      "calibrate-probe");
}

constexpr int64_t kPromptTokens = 4;

partition::Plan PlanProbe(const partition::ModelSpec& spec, const topology::Topology& topo, int tp,
                          int64_t max_new) {
  partition::PlanOptions o;
  o.tp = tp;
  o.pp = 1;
  o.workload = {.phase = partition::Phase::kDecode,
                .batch = 1,
                .context = kPromptTokens + max_new / 2,
                .dtype = Dtype::kFp32};
  return partition::MakePlan(spec, topo, o);
}

struct Measured {
  int64_t step_ns = 0;     // the mean decode step
  int64_t compute_ns = 0;  // of it, the workers' compute (the slowest rank's)
  int64_t hops = 0;        // link messages in a row on the step's critical path
};

// One request of `max_new` tokens over worker processes.
Measured RunProbe(const partition::ModelSpec& spec, const topology::Topology& topo,
                  const partition::Plan& plan, const std::string& backend, int64_t max_new,
                  const std::shared_ptr<spdlog::logger>& log) {
  launch::RunConfig config;
  config.inputs.spec = spec;
  config.inputs.weights.seed = 1;
  config.inputs.topo = topo;
  config.inputs.plan = plan;
  config.deploy.transport.backend = backend;
  config.workers = launch::Workers::kProcesses;
  config.keep_logits = false;
  config.log = log;
  launch::Launch launch(std::move(config));
  coordinator::Coordinator& coord = launch.Start();
  launch.Deploy();
  Measured m;
  m.hops = coordinator::CriticalHops(launch.deployment());
  std::vector<int32_t> prompt;
  for (int64_t i = 0; i < kPromptTokens; ++i) prompt.push_back(static_cast<int32_t>(i + 1));
  coord.Generate({{0, prompt, max_new, {}}});  // step by step: the workers report their compute
  const coordinator::RunStats stats = coord.stats();
  launch.Stop();
  if (stats.decode_steps <= 0) {
    throw Error(ErrorCode::kInternal, "calibrate --host: the runtime probe ran no decode step");
  }
  m.step_ns = stats.decode_wall_ns / stats.decode_steps;
  m.compute_ns = stats.decode_compute_ns / stats.decode_steps;
  return m;
}

}  // namespace

RuntimeProbe ProbeRuntime(const topology::Topology& topo, const std::string& backend, bool quick,
                          const std::shared_ptr<spdlog::logger>& log) {
  const partition::ModelSpec spec = ProbeModel();
  const int64_t max_new = quick ? 16 : 64;
  RuntimeProbe p;
  log->info("calibrate --host: the runtime's own costs: a small model over 1 worker process");
  const partition::Plan single = PlanProbe(spec, topo, 1, max_new);
  const Measured one = RunProbe(spec, topo, single, backend, max_new, log);
  p.single_measured_ns = one.step_ns;
  p.single_compute_ns = one.compute_ns;
  // Beyond the compute the worker measured and the control hops the plan prices.
  p.step_overhead_ns =
      std::max<int64_t>(0, one.step_ns - one.compute_ns - partition::RuntimeTokenNs(single));
  log->info("calibrate --host: 1 chip: step {} us, of it {} us compute: step overhead {} us",
            one.step_ns / 1000, one.compute_ns / 1000, p.step_overhead_ns / 1000);
  if (topo.chip_count() < 2) return p;
  log->info("calibrate --host: the runtime's own costs: a small model over 2 worker processes");
  partition::Plan pair = PlanProbe(spec, topo, 2, max_new);
  const Measured two = RunProbe(spec, topo, pair, backend, max_new, log);
  pair.runtime_params.step_overhead_ns = p.step_overhead_ns;
  p.pair_measured_ns = two.step_ns;
  p.pair_compute_ns = two.compute_ns;
  p.pair_hops = two.hops;
  if (two.hops > 0) {
    // Beyond compute, the runtime's per-step terms and each message's link latency and the
    // collective step cost the plan already prices (the op overhead of adding the partials).
    const topology::ChipSpec& chip = topo.spec_of(pair.stages.front().chips.front());
    const int64_t priced =
        partition::RuntimeTokenNs(pair) +
        two.hops * (chip.link_latency_ns + pair.link_params.collective_step_overhead_ns);
    p.collective_overhead_ns =
        std::max<int64_t>(0, two.step_ns - two.compute_ns - priced) / two.hops;
  }
  log->info(
      "calibrate --host: TP 2: step {} us, of it {} us compute, {} messages in a row: {} us more "
      "per collective step",
      two.step_ns / 1000, two.compute_ns / 1000, two.hops, p.collective_overhead_ns / 1000);
  return p;
}

}  // namespace lockstep::cli
