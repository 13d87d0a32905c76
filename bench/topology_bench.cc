// Topology benchmarks: generating the largest system and answering route queries on it.
// Targets (issue #2): generate + validate the 145-rack system < 1 s; a route query < 20 us.
#include <benchmark/benchmark.h>

#include <random>

#include "lockstep/topology/generators.h"
#include "lockstep/topology/routing.h"
#include "lockstep/topology/stats.h"

namespace lockstep::topology {
namespace {

// Generation checks every link as it is added (port range, reuse, bandwidth).
void BM_GenerateSystem(benchmark::State& state) {
  const int racks = static_cast<int>(state.range(0));
  for (auto _ : state) {
    Topology topo = GenerateSystem(LpuV1(), racks);
    benchmark::DoNotOptimize(topo.link_count());
  }
  state.counters["chips"] = racks * 72;
}
BENCHMARK(BM_GenerateSystem)->Arg(8)->Arg(145)->Unit(benchmark::kMillisecond);

// Generation plus the whole-topology check: connectivity, diameter, average hops, bisection.
void BM_GenerateAndCheckSystem(benchmark::State& state) {
  const int racks = static_cast<int>(state.range(0));
  for (auto _ : state) {
    Topology topo = GenerateSystem(LpuV1(), racks);
    TopologyStats s = ComputeStats(topo);
    if (!s.connected) state.SkipWithError("not connected");
    benchmark::DoNotOptimize(s.diameter);
  }
}
BENCHMARK(BM_GenerateAndCheckSystem)->Arg(8)->Arg(145)->Unit(benchmark::kMillisecond);

// Random chip pairs (seeded), one FindRoute each.
void BM_RouteQuery(benchmark::State& state) {
  const int racks = static_cast<int>(state.range(0));
  Topology topo = GenerateSystem(LpuV1(), racks);
  Router router(topo);
  std::mt19937 rng(42);
  std::uniform_int_distribution<ChipId> chip(0, topo.chip_count() - 1);
  int64_t hops = 0;
  for (auto _ : state) {
    std::optional<Route> r = router.FindRoute(chip(rng), chip(rng));
    hops += r->hop_count();
  }
  state.counters["avg_hops"] =
      benchmark::Counter(static_cast<double>(hops), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_RouteQuery)->Arg(1)->Arg(8)->Arg(145)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lockstep::topology
