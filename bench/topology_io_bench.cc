// Topology file speed on the largest system GenerateSystem builds with lpu-v1: 145 racks,
// 10,440 chips, ~57,000 links, a ~2 MB file. Run:
//   cmake --build build --target topology_io_bench && build/bench/topology_io_bench
#include <benchmark/benchmark.h>

#include <string>

#include "lockstep/topology/generators.h"
#include "lockstep/topology/io.h"

namespace lockstep::topology {
namespace {

const Topology& LargestSystem() {
  static const Topology topo = GenerateSystem(LpuV1(), MaxSystemRacks(LpuV1()));
  return topo;
}

void BM_GenerateLargestSystem(benchmark::State& state) {
  for (auto _ : state) {
    Topology topo = GenerateSystem(LpuV1(), MaxSystemRacks(LpuV1()));
    benchmark::DoNotOptimize(topo);
  }
}
BENCHMARK(BM_GenerateLargestSystem)->Unit(benchmark::kMillisecond);

void BM_WriteLargestSystem(benchmark::State& state) {
  const Topology& topo = LargestSystem();
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = WriteTopologyYaml(topo);
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["file_bytes"] = static_cast<double>(bytes);
  state.counters["links"] = topo.link_count();
}
BENCHMARK(BM_WriteLargestSystem)->Unit(benchmark::kMillisecond);

void BM_ParseLargestSystem(benchmark::State& state) {
  const std::string text = WriteTopologyYaml(LargestSystem());
  for (auto _ : state) {
    Topology topo = ParseTopologyYaml(text, "system145.yaml");
    benchmark::DoNotOptimize(topo);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseLargestSystem)->Unit(benchmark::kMillisecond);

void BM_WriteAndParseLargestSystem(benchmark::State& state) {
  const Topology& topo = LargestSystem();
  for (auto _ : state) {
    Topology parsed = ParseTopologyYaml(WriteTopologyYaml(topo), "system145.yaml");
    benchmark::DoNotOptimize(parsed);
  }
}
BENCHMARK(BM_WriteAndParseLargestSystem)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lockstep::topology
