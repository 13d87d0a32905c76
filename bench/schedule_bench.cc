// Schedule benchmarks (issue #4): compile + validate Llama-2-70B's latency plan on 8 racks (576
// chips, INT8, 4k context) — target < 1 s — and the simulator's event rate on that schedule —
// target >= 2 million events/s.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>

#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/simulate.h"
#include "lockstep/schedule/validate.h"
#include "lockstep/topology/generators.h"

namespace lockstep::schedule {
namespace {

struct Setup {
  partition::ModelSpec spec;
  topology::Topology topo;
  partition::Plan plan;
};

const Setup& Llama70bOn8Racks() {
  static const Setup setup = [] {
    Setup s;
    s.spec = partition::LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" /
                                      "models" / "llama-2-70b");
    topology::RackShape shape;
    shape.spare_nodes = 0;
    s.topo = topology::GenerateSystem(topology::LpuV1(), 8, shape);
    partition::PlanOptions o;
    o.workload.dtype = Dtype::kInt8;
    o.workload.context = 4096;
    s.plan = partition::MakePlan(s.spec, s.topo, o);
    return s;
  }();
  return setup;
}

void BM_CompileValidateLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  ScheduleOptions o;  // one token, sequences to fill the pipeline
  size_t instructions = 0, problems = 0;
  for (auto _ : state) {
    const GlobalSchedule g = Compile(s.plan, s.spec, s.topo, o);
    problems = Validate(g, s.topo).size();
    instructions = g.instruction_count();
    benchmark::DoNotOptimize(problems);
  }
  state.counters["instructions"] = static_cast<double>(instructions);
  state.counters["problems"] = static_cast<double>(problems);
}
BENCHMARK(BM_CompileValidateLlama2_70b_576Chips)->Unit(benchmark::kMillisecond);

void BM_CompileLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  for (auto _ : state) {
    const GlobalSchedule g = Compile(s.plan, s.spec, s.topo, {});
    benchmark::DoNotOptimize(g.makespan_ns);
  }
}
BENCHMARK(BM_CompileLlama2_70b_576Chips)->Unit(benchmark::kMillisecond);

void BM_SimulateLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  ScheduleOptions o;
  o.tokens = 2;
  const GlobalSchedule g = Compile(s.plan, s.spec, s.topo, o);
  SimulateOptions so;
  so.keep_times = false;
  int64_t events = 0;
  for (auto _ : state) {
    const SimResult r = Simulate(g, s.topo, so);
    events += r.metrics.events;
    benchmark::DoNotOptimize(r.metrics.makespan_ns);
  }
  state.counters["events_per_s"] =
      benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
  state.counters["instructions"] = static_cast<double>(g.instruction_count());
}
BENCHMARK(BM_SimulateLlama2_70b_576Chips)->Unit(benchmark::kMillisecond);

// Memory of the modulo form: bytes of the compiled schedule (proto/schedule.capnp, what workers
// read) against chips x ops per period, for 2 and 1,000,000 tokens (the same bytes), beside the
// explicit form of 2 tokens. Counters, not time, are the result.
void BM_ModuloScheduleBytesLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  ScheduleOptions o;
  o.modulo = state.range(0) > 0;
  o.tokens = o.modulo ? state.range(0) : 2;
  size_t bytes = 0, instructions = 0, problems = 0, chips = 0;
  for (auto _ : state) {
    const GlobalSchedule g = Compile(s.plan, s.spec, s.topo, o);
    problems = Validate(g, s.topo).size();
    bytes = SerializeSchedule(g).size();
    instructions = g.instruction_count();
    chips = g.programs.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["tokens"] = static_cast<double>(o.tokens);
  state.counters["schedule_bytes"] = static_cast<double>(bytes);
  state.counters["instructions"] = static_cast<double>(instructions);
  state.counters["chips"] = static_cast<double>(chips);
  state.counters["bytes_per_instruction"] =
      static_cast<double>(bytes) / static_cast<double>(std::max<size_t>(1, instructions));
  state.counters["problems"] = static_cast<double>(problems);
}
// 0 = explicit form of 2 tokens; otherwise the modulo form of that many tokens.
BENCHMARK(BM_ModuloScheduleBytesLlama2_70b_576Chips)
    ->Arg(0)
    ->Arg(2)
    ->Arg(1000000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
}  // namespace lockstep::schedule
