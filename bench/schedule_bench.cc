// Schedule benchmarks (issues #4, #24): compile + validate Llama-2-70B's latency plan on 8 racks
// (576 chips, INT8, 4k context) — target < 1 s — and Llama-3.1-405B's on the largest Dragonfly
// (145 racks, 10,440 chips) — target < 2 s CPU (peak memory < 1 GB: measure the CLI with
// /usr/bin/time -v) — its schedule file (< 100 MB) and one chip's program read from it
// (< 10 ms); the simulator's event rate — target >= 2 million events/s.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "lockstep/partition/plan.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/schedule_file.h"
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

const Setup& Llama405bOn145Racks() {
  static const Setup setup = [] {
    Setup s;
    s.spec = partition::LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" /
                                      "models" / "llama-3.1-405b");
    s.topo = topology::GenerateSystem(topology::LpuV1(), 145);
    partition::PlanOptions o;
    o.workload.dtype = Dtype::kInt8;
    o.workload.context = 4096;
    s.plan = partition::MakePlan(s.spec, s.topo, o);
    return s;
  }();
  return setup;
}

// The compact schedule (one pass per phase and its repeat pattern) and its validation.
void BM_CompileValidateLlama3_405b_145Racks(benchmark::State& state) {
  const Setup& s = Llama405bOn145Racks();
  size_t stored = 0, problems = 0;
  int64_t run = 0;
  for (auto _ : state) {
    const CompactSchedule g = CompileCompact(s.plan, s.spec, s.topo, {});
    problems = Validate(g, s.topo).size();
    stored = g.body_instruction_count();
    run = g.instruction_count();
    benchmark::DoNotOptimize(problems);
  }
  state.counters["stored_instructions"] = static_cast<double>(stored);
  state.counters["run_instructions"] = static_cast<double>(run);
  state.counters["problems"] = static_cast<double>(problems);
}
BENCHMARK(BM_CompileValidateLlama3_405b_145Racks)->Unit(benchmark::kMillisecond)->Iterations(2);

// One chip's program for one decode step, read from the indexed schedule file (page cache warm):
// preamble, header and that chip's message, then its explicit program and incoming tables.
void BM_ReadOneChipLlama3_405b_145Racks(benchmark::State& state) {
  const Setup& s = Llama405bOn145Racks();
  const CompactSchedule g = CompileCompact(s.plan, s.spec, s.topo, {});
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("lockstep_bench_" + std::to_string(::getpid()) + ".schedule"))
                               .string();
  WriteScheduleFile(path, g);
  const ChipId chip = s.plan.stages[s.plan.stages.size() / 2].chips.front();
  size_t instructions = 0;
  for (auto _ : state) {
    const ChipScheduleFile one = ReadChipSchedule(path, chip, &s.plan);
    const ChipProgram p = DecodePeriodProgram(one.schedule, chip);
    const std::vector<LinkTable> in = DecodePeriodIncoming(one.schedule, one.incoming);
    instructions = p.instructions.size();
    benchmark::DoNotOptimize(in.size());
  }
  state.counters["file_bytes"] = static_cast<double>(std::filesystem::file_size(path));
  state.counters["chip_instructions"] = static_cast<double>(instructions);
  std::filesystem::remove(path);
}
BENCHMARK(BM_ReadOneChipLlama3_405b_145Racks)->Unit(benchmark::kMillisecond);

void BM_CompileValidateLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  ScheduleOptions o;  // one token, sequences to fill the pipeline
  size_t instructions = 0, problems = 0;
  for (auto _ : state) {
    const CompactSchedule g = CompileCompact(s.plan, s.spec, s.topo, o);
    problems = Validate(g, s.topo).size();
    instructions = g.body_instruction_count();
    benchmark::DoNotOptimize(problems);
  }
  state.counters["instructions"] = static_cast<double>(instructions);
  state.counters["problems"] = static_cast<double>(problems);
}
BENCHMARK(BM_CompileValidateLlama2_70b_576Chips)->Unit(benchmark::kMillisecond);

void BM_CompileLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  for (auto _ : state) {
    const CompactSchedule g = CompileCompact(s.plan, s.spec, s.topo, {});
    benchmark::DoNotOptimize(g.makespan_ns);
  }
}
BENCHMARK(BM_CompileLlama2_70b_576Chips)->Unit(benchmark::kMillisecond);

void BM_SimulateLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  ScheduleOptions o;
  o.tokens = 2;
  const CompactSchedule g = CompileCompact(s.plan, s.spec, s.topo, o);
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

// Size of the compact form: the schedule file (proto/schedule.capnp: what `lockstep schedule -o`
// writes and workers read a chip of) against the instructions stored (one pass per phase) and
// those of the run they stand for, for 2 and 1,000,000 tokens (the same bytes). Counters, not
// time, are the result.
void BM_CompactScheduleBytesLlama2_70b_576Chips(benchmark::State& state) {
  const Setup& s = Llama70bOn8Racks();
  ScheduleOptions o;
  o.tokens = state.range(0);
  size_t bytes = 0, stored = 0, problems = 0, chips = 0;
  int64_t run = 0;
  for (auto _ : state) {
    const CompactSchedule g = CompileCompact(s.plan, s.spec, s.topo, o);
    problems = Validate(g, s.topo).size();
    bytes = SerializeScheduleFile(g).size();
    stored = g.body_instruction_count();
    run = g.instruction_count();
    chips = g.chips.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["tokens"] = static_cast<double>(o.tokens);
  state.counters["schedule_bytes"] = static_cast<double>(bytes);
  state.counters["stored_instructions"] = static_cast<double>(stored);
  state.counters["run_instructions"] = static_cast<double>(run);
  state.counters["chips"] = static_cast<double>(chips);
  state.counters["bytes_per_stored_instruction"] =
      static_cast<double>(bytes) / static_cast<double>(std::max<size_t>(1, stored));
  state.counters["problems"] = static_cast<double>(problems);
}
BENCHMARK(BM_CompactScheduleBytesLlama2_70b_576Chips)
    ->Arg(2)
    ->Arg(1000000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
}  // namespace lockstep::schedule
