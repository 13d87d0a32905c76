// Host discovery and chip pinning: what `lockstep topo host` and a worker launcher pay at start.
#include <benchmark/benchmark.h>

#include "lockstep/topology/generators.h"
#include "lockstep/topology/host.h"

namespace lockstep::topology {
namespace {

void BM_DiscoverHost(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(DiscoverHost());
}
BENCHMARK(BM_DiscoverHost)->Unit(benchmark::kMillisecond);

void BM_DiscoverSyntheticHost(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(DiscoverSyntheticHost("pack:2 numa:4 l3:1 core:16 pu:2"));
  }
}
BENCHMARK(BM_DiscoverSyntheticHost)->Unit(benchmark::kMillisecond);

// Racks of 72 chips on a 2-socket, 8-domain, 128-core synthetic host.
void BM_MapChipsToCores(benchmark::State& state) {
  const Topology topo = state.range(0) == 1
                            ? GenerateRack(LpuV1())
                            : GenerateSystem(LpuV1(), static_cast<int>(state.range(0)));
  const HostSummary host = DiscoverSyntheticHost("pack:2 numa:4 l3:1 core:16 pu:2");
  for (auto _ : state) benchmark::DoNotOptimize(MapChipsToCores(topo, host));
  state.SetItemsProcessed(state.iterations() * topo.chip_count());
}
BENCHMARK(BM_MapChipsToCores)->Arg(1)->Arg(16)->Arg(145)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lockstep::topology
