// The host's measured figures as a chip: the slowest core decides every figure, the spec carries
// the cost parameters the cost model reads, and the topology links every chip to every other.
#include "lockstep/hostcal/host_chip.h"

#include <gtest/gtest.h>

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
}

}  // namespace
}  // namespace lockstep::hostcal
