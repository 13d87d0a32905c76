// Statistics: hop figures against hand-computed values, port use, spares, bisection cuts.
#include "lockstep/topology/stats.h"

#include <gtest/gtest.h>

#include "lockstep/topology/generators.h"

namespace lockstep::topology {
namespace {

TEST(Stats, RingOfSixByHand) {
  // From any chip of a 6-ring: two chips at 1 hop, two at 2, one at 3 -> 9 / 5 per source.
  TopologyStats s = ComputeStats(GenerateRing(LpuV1(), 6));
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.diameter, 3);
  EXPECT_EQ(s.hop_pairs, 30);
  EXPECT_EQ(s.hop_sum, 54);
  EXPECT_DOUBLE_EQ(s.average_hops(), 1.8);
  EXPECT_EQ(s.ports_used, 12);
  EXPECT_EQ(s.max_ports_used, 2);
  EXPECT_EQ(s.ports_total, 6 * 16);
}

TEST(Stats, NodeIsOneHopEverywhere) {
  TopologyStats s = ComputeStats(GenerateNode(LpuV1(), 8));
  EXPECT_EQ(s.diameter, 1);
  EXPECT_DOUBLE_EQ(s.average_hops(), 1.0);
  // Halving a fully connected node of 8 cuts 4 x 4 links.
  EXPECT_EQ(s.bisection_bytes_per_s, 16 * LpuV1().link_bandwidth_bytes_per_s);
}

TEST(Stats, RackCountsSparesAndWorkingMemory) {
  TopologyStats s = ComputeStats(GenerateRack(LpuV1()));
  EXPECT_EQ(s.chips, 72);
  EXPECT_EQ(s.spares, 8);
  EXPECT_EQ(s.nodes, 9);
  EXPECT_EQ(s.sram_bytes_total, 72 * LpuV1().sram_bytes);
  EXPECT_EQ(s.sram_bytes_working, 64 * LpuV1().sram_bytes);
  EXPECT_GT(s.bisection_bytes_per_s, 0);
}

TEST(Stats, TwoRackBisectionIsEveryRackLink) {
  // The id halves of a 2-rack system are the racks; all 144 inter-rack links cross.
  TopologyStats s = ComputeStats(GenerateSystem(LpuV1(), 2));
  EXPECT_EQ(s.bisection_bytes_per_s, 144 * LpuV1().link_bandwidth_bytes_per_s);
  EXPECT_EQ(s.bisection_cut, "chips 0..71 | 72..143");
}

TEST(Stats, DisconnectedWhenAChipIsCutOff) {
  Topology topo = GenerateRing(LpuV1(), 4);
  topo.SetLinkDown(*topo.LinkAt(PortRef{0, 0}));
  topo.SetLinkDown(*topo.LinkAt(PortRef{0, 1}));
  TopologyStats s = ComputeStats(topo);
  EXPECT_FALSE(s.connected);
  EXPECT_EQ(s.links_up, 2);
  EXPECT_EQ(s.diameter, 2);  // among the chips 1-2-3 still joined
  // A chip that is down is not counted as disconnected.
  topo.SetChipDown(0);
  EXPECT_TRUE(ComputeStats(topo).connected);
}

}  // namespace
}  // namespace lockstep::topology
