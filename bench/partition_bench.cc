// Partitioner benchmarks (issue #3): plan Llama-2-70B on 8 racks (576 chips) — target < 200 ms —
// and Llama-3.1-405B on 145 racks (10,440 chips) — target < 2 s. INT8, 4k context, batch 1.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "lockstep/partition/plan.h"
#include "lockstep/topology/generators.h"

namespace lockstep::partition {
namespace {

ModelSpec Example(const char* name) {
  return LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" / "models" / name);
}

void PlanOn(benchmark::State& state, const char* model, int racks, Objective objective) {
  const ModelSpec spec = Example(model);
  topology::RackShape shape;
  shape.spare_nodes = 0;  // Groq's 576-chip figure uses all nine nodes of each rack
  const topology::Topology topo = topology::GenerateSystem(topology::LpuV1(), racks, shape);
  PlanOptions options;
  options.objective = objective;
  options.workload.dtype = Dtype::kInt8;
  options.workload.context = 4096;
  Plan plan;
  for (auto _ : state) {
    plan = MakePlan(spec, topo, options);
    benchmark::DoNotOptimize(plan.chips_used);
  }
  state.counters["chips_used"] = plan.chips_used;
  state.counters["stages"] = static_cast<double>(plan.stages.size());
  state.counters["tok_s_user"] = plan.predicted.tokens_per_s_per_user;
}

void BM_PlanLlama2_70b_8Racks(benchmark::State& state) {
  PlanOn(state, "llama-2-70b", 8, Objective::kLatency);
}
BENCHMARK(BM_PlanLlama2_70b_8Racks)->Unit(benchmark::kMillisecond);

void BM_PlanLlama2_70b_8Racks_Throughput(benchmark::State& state) {
  PlanOn(state, "llama-2-70b", 8, Objective::kThroughput);
}
BENCHMARK(BM_PlanLlama2_70b_8Racks_Throughput)->Unit(benchmark::kMillisecond);

void BM_PlanLlama31_405b_145Racks(benchmark::State& state) {
  PlanOn(state, "llama-3.1-405b", 145, Objective::kLatency);
}
BENCHMARK(BM_PlanLlama31_405b_145Racks)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lockstep::partition
