// The host's measured figures as a chip: the slowest core decides every figure, the spec carries
// the cost parameters the cost model reads, and the topology links every chip to every other.
#include "lockstep/hostcal/host_chip.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace lockstep::hostcal {
namespace {

CoreFigures Core(int index, double scale) {
  CoreFigures f;
  f.core = index;
  f.pus = {index};
  f.read_bytes_per_s = 10e9 * scale;
  f.fp32_weight_bytes_per_s = 8e9 * scale;
  f.fp32_ops_per_s_1 = 4e9 * scale;
  f.fp32_ops_per_s_16 = 20e9 * scale;
  f.int8_block32_ops_per_s_1 = 12e9 * scale;
  f.int8_block32_ops_per_s_16 = 40e9 * scale;
  f.int8_channel_ops_per_s_1 = 13e9 * scale;
  f.int8_channel_ops_per_s_16 = 38e9 * scale;
  f.op_overhead_ns = 900 / scale;
  f.vector_ops_per_s = 2e9 * scale;
  return f;
}

HostMeasurements TwoCores() {
  HostMeasurements m;
  m.cores.resize(2);
  m.cores[0].index = 0;
  m.cores[1].index = 1;
  // Core 1 is slower in every rate and so has the larger fixed cost.
  m.per_core = {Core(0, 1.0), Core(1, 0.5)};
  m.link = {35'400, 0.9e9};
  m.concurrent_weight_bytes_per_s = 6e9;  // less than the two cores' own 8 + 4
  m.rounds.push_back({m.per_core, m.link, m.concurrent_weight_bytes_per_s});
  return m;
}

TEST(HostChip, TheSlowestCoreSetsEveryFigure) {
  const CoreFigures slow = Slowest(TwoCores().per_core);
  EXPECT_DOUBLE_EQ(slow.read_bytes_per_s, 5e9);
  EXPECT_DOUBLE_EQ(slow.fp32_ops_per_s_16, 10e9);
  EXPECT_DOUBLE_EQ(slow.int8_channel_ops_per_s_16, 19e9);
  EXPECT_DOUBLE_EQ(slow.op_overhead_ns, 1800);  // the most, not the least
  EXPECT_DOUBLE_EQ(slow.vector_ops_per_s, 1e9);
}

TEST(HostChip, TheSpecHoldsTheMeasuredFiguresAndCostParameters) {
  const HostChip h = MakeHostChip(TwoCores(), 0, int64_t{8} << 30);
  EXPECT_EQ(h.chips, 2);  // 0: one per measured core
  EXPECT_EQ(h.spec.name, "host-core");
  EXPECT_EQ(h.spec.sram_bytes, int64_t{4} << 30);  // the memory shared by the chips
  EXPECT_EQ(h.spec.peak_ops(Dtype::kFp32), 10'000'000'000);
  EXPECT_EQ(h.spec.peak_ops(Dtype::kInt8), 19'000'000'000);  // the slower int8 scheme
  EXPECT_EQ(h.spec.memory_bandwidth_bytes_per_s, 5'000'000'000);
  EXPECT_EQ(h.spec.link_latency_ns, 35'400);
  EXPECT_EQ(h.spec.link_bandwidth_bytes_per_s, 900'000'000);
  EXPECT_EQ(h.spec.ports, 1);
  EXPECT_EQ(h.spec.cost_params.at("weight_stream_bytes_per_s"), "4000000000");
  EXPECT_EQ(h.spec.cost_params.at("op_overhead_ns"), "1800");
  EXPECT_EQ(h.spec.cost_params.at("control_hop_ns"), "35400");
  EXPECT_EQ(h.spec.cost_params.at("step_overhead_ns"), "0");  // not measured
  EXPECT_EQ(h.spec.cost_params.at("cores"), "2");
  EXPECT_EQ(h.spec.cost_params.at("shared_weight_stream_bytes_per_s"), "6000000000");
}

TEST(HostChip, TheRuntimesCostsArePricedPerStepAndPerCollectiveStep) {
  const HostChip h =
      WithRuntimeCosts(MakeHostChip(TwoCores(), 0, int64_t{8} << 30), 250'000, 40'000);
  EXPECT_EQ(h.spec.cost_params.at("step_overhead_ns"), "250000");
  // The op overhead (the slowest core's small product) plus the measured hand-offs.
  EXPECT_EQ(h.spec.cost_params.at("collective_step_overhead_ns"), "41800");
  const std::string header = HostTopologyHeader(TwoCores(), h, "ipc", false);
  EXPECT_NE(header.find("250000 ns per step, 40000 ns per collective step"), std::string::npos)
      << header;
  EXPECT_EQ(header.find("not measured"), std::string::npos) << header;
  // A residual below the prediction is no cost.
  EXPECT_EQ(WithRuntimeCosts(h, -5, -7).spec.cost_params.at("step_overhead_ns"), "0");
}

TEST(HostChip, EachFigureIsTheMedianOverTheRounds) {
  // Three rounds of one core: every figure's median is the middle round's, whichever round
  // holds it (the fast round's op overhead is the least).
  const CoreFigures median = MedianFigures({Core(3, 1.0), Core(3, 0.5), Core(3, 2.0)});
  EXPECT_EQ(median.core, 3);
  EXPECT_DOUBLE_EQ(median.read_bytes_per_s, 10e9);
  EXPECT_DOUBLE_EQ(median.fp32_weight_bytes_per_s, 8e9);
  EXPECT_DOUBLE_EQ(median.int8_block32_ops_per_s_16, 40e9);
  EXPECT_DOUBLE_EQ(median.vector_ops_per_s, 2e9);
  EXPECT_DOUBLE_EQ(median.op_overhead_ns, 900);
  // An even count: the mean of the middle two.
  EXPECT_DOUBLE_EQ(MedianFigures({Core(0, 1.0), Core(0, 0.5)}).read_bytes_per_s, 7.5e9);
}

TEST(HostChip, TheSpreadIsTheRoundsLeastMedianAndGreatest) {
  HostMeasurements m = TwoCores();
  m.rounds = {{{Core(0, 1.0), Core(1, 0.5)}, {40'000, 1e9}, 6e9},
              {{Core(0, 1.0), Core(1, 0.25)}, {30'000, 2e9}, 5e9},
              {{Core(0, 1.0), Core(1, 1.0)}, {50'000, 3e9}, 7e9}};
  m.per_core = {MedianFigures({Core(0, 1.0), Core(0, 1.0), Core(0, 1.0)}),
                MedianFigures({Core(1, 0.5), Core(1, 0.25), Core(1, 1.0)})};
  std::map<std::string, Spread> by_name;
  for (const auto& [name, s] : Spreads(m)) by_name[name] = s;
  // Core 1's median is the slower: its rounds give 5, 2.5 and 10 GB/s of read.
  EXPECT_DOUBLE_EQ(by_name.at("read_bytes_per_s").min, 2.5e9);
  EXPECT_DOUBLE_EQ(by_name.at("read_bytes_per_s").median, 5e9);
  EXPECT_DOUBLE_EQ(by_name.at("read_bytes_per_s").max, 10e9);
  EXPECT_DOUBLE_EQ(by_name.at("op_overhead_ns").max, 3600);
  EXPECT_DOUBLE_EQ(by_name.at("link_one_way_ns").median, 40'000);
  EXPECT_DOUBLE_EQ(by_name.at("link_bytes_per_s").min, 1e9);
  EXPECT_DOUBLE_EQ(by_name.at("concurrent_weight_bytes_per_s").max, 7e9);
  EXPECT_EQ(by_name.size(), 11u);
}

TEST(HostChip, TheTopologyLinksEveryChipToEveryOther) {
  const HostChip h = MakeHostChip(TwoCores(), 5, int64_t{10} << 30);
  EXPECT_EQ(h.spec.ports, 4);
  const topology::Topology t = HostTopology(h, "tcp");
  EXPECT_EQ(t.name(), "host-tcp");
  ASSERT_EQ(t.chip_count(), 5);
  ASSERT_EQ(t.links().size(), 10u);  // 5 choose 2
  std::set<std::pair<int, int>> pairs;
  for (const topology::Link& l : t.links()) {
    pairs.insert({l.a.chip, l.b.chip});
    EXPECT_EQ(l.latency_ns, 35'400);
  }
  EXPECT_EQ(pairs.size(), 10u);
  EXPECT_EQ(t.spec_of(4).name, "host-core");
  const std::string header = HostTopologyHeader(TwoCores(), h, "tcp", true);
  EXPECT_EQ(header.rfind("# lockstep calibrate --host --transport tcp --quick: 5 chip(s) on 2 "
                         "core(s) of this host\n",
                         0),
            0u)
      << header;
  EXPECT_NE(header.find("not measured: the workers' step bookkeeping"), std::string::npos);
  EXPECT_NE(header.find("all 2 core(s) at once 6.00 GB/s of weights; medians of 1 round(s)"),
            std::string::npos)
      << header;
}

}  // namespace
}  // namespace lockstep::hostcal
