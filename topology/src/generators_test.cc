// Generator invariants: counts, full connectivity where promised, port budgets, hop diameters.
#include "lockstep/topology/generators.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "lockstep/common/error.h"
#include "lockstep/topology/routing.h"
#include "lockstep/topology/stats.h"

namespace lockstep::topology {
namespace {

// Every pair of chips in `chips` shares a direct link.
void ExpectFullyConnected(const Topology& topo, const std::vector<ChipId>& chips) {
  for (ChipId a : chips) {
    std::set<ChipId> peers;
    for (const Adjacent& adj : topo.Neighbors(a)) peers.insert(adj.peer);
    for (ChipId b : chips) {
      if (a == b) continue;
      EXPECT_TRUE(peers.count(b)) << "chip " << a << " not linked to chip " << b;
    }
  }
}

void ExpectPortBudgets(const Topology& topo) {
  for (const Chip& c : topo.chips()) EXPECT_LE(topo.PortsUsed(c.id), topo.spec_of(c.id).ports);
  // Each link end is a distinct chip:port.
  std::set<std::pair<ChipId, int>> ends;
  for (const Link& l : topo.links()) {
    EXPECT_TRUE(ends.insert({l.a.chip, l.a.port}).second);
    EXPECT_TRUE(ends.insert({l.b.chip, l.b.port}).second);
  }
}

TEST(GenerateNode, EightChipsFullyConnectedOverSevenPorts) {
  Topology topo = GenerateNode(LpuV1());
  EXPECT_EQ(topo.chip_count(), 8);
  EXPECT_EQ(topo.link_count(), 28);
  ExpectFullyConnected(topo, {0, 1, 2, 3, 4, 5, 6, 7});
  for (const Chip& c : topo.chips()) EXPECT_EQ(topo.PortsUsed(c.id), 7);
  ExpectPortBudgets(topo);
  EXPECT_EQ(ComputeStats(topo).diameter, 1);
}

TEST(GenerateNode, RejectsMoreChipsThanPortsAllow) {
  EXPECT_THROW(GenerateNode(LpuV1(), 18), Error);
  EXPECT_THROW(GenerateNode(LpuV1(), 0), Error);
  EXPECT_EQ(GenerateNode(LpuV1(), 17).link_count(), 17 * 16 / 2);
}

TEST(GenerateRack, NineNodesOfEightWithOneSpareNode) {
  Topology topo = GenerateRack(LpuV1());
  EXPECT_EQ(topo.chip_count(), 72);
  EXPECT_EQ(topo.node_count(), 9);
  EXPECT_EQ(topo.rack_count(), 1);
  EXPECT_EQ(topo.spare_count(), 8);
  for (const Chip& c : topo.chips()) {
    EXPECT_EQ(c.node, c.id / 8);
    EXPECT_EQ(c.spare, c.node == 8);
  }
  for (int node = 0; node < 9; ++node) {
    std::vector<ChipId> chips;
    for (int i = 0; i < 8; ++i) chips.push_back(node * 8 + i);
    ExpectFullyConnected(topo, chips);
  }
  // 9 nodes x 28 local links + 36 node pairs x 2 global links.
  EXPECT_EQ(topo.link_count(), 9 * 28 + 36 * 2);
  ExpectPortBudgets(topo);
}

TEST(GenerateRack, EveryNodePairJoinedTwiceOnDifferentChips) {
  Topology topo = GenerateRack(LpuV1());
  std::map<std::pair<int, int>, std::set<ChipId>> ends;  // node pair -> chips used
  std::map<std::pair<int, int>, int> count;
  for (const Link& l : topo.links()) {
    int na = topo.chip(l.a.chip).node, nb = topo.chip(l.b.chip).node;
    if (na == nb) continue;
    auto key = std::minmax(na, nb);
    ++count[key];
    ends[key].insert(l.a.chip);
    ends[key].insert(l.b.chip);
  }
  EXPECT_EQ(count.size(), 36u);
  for (const auto& [pair, n] : count) {
    EXPECT_EQ(n, 2) << "nodes " << pair.first << "," << pair.second;
    EXPECT_EQ(ends[pair].size(), 4u) << "parallel node links should use distinct chips";
  }
  // Each chip: 7 local + 2 global ports.
  for (const Chip& c : topo.chips()) EXPECT_EQ(topo.PortsUsed(c.id), 9);
}

TEST(GenerateRack, DiameterIsLocalGlobalLocal) {
  TopologyStats s = ComputeStats(GenerateRack(LpuV1()));
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.diameter, 3);
}

TEST(GenerateSystem, EightRacksEveryRackPairJoinedDirectly) {
  Topology topo = GenerateSystem(LpuV1(), 8);
  EXPECT_EQ(topo.chip_count(), 576);
  EXPECT_EQ(topo.spare_count(), 64);
  std::map<std::pair<int, int>, int> count;
  for (const Link& l : topo.links()) {
    int ra = topo.chip(l.a.chip).rack, rb = topo.chip(l.b.chip).rack;
    if (ra != rb) ++count[std::minmax(ra, rb)];
  }
  EXPECT_EQ(count.size(), 28u);
  for (const auto& [pair, n] : count) EXPECT_EQ(n, 144 / 7) << pair.first << "-" << pair.second;
  ExpectPortBudgets(topo);
  TopologyStats s = ComputeStats(topo);
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.diameter, 5);
}

TEST(GenerateSystem, MaximumIs145RacksOf72Chips) {
  EXPECT_EQ(MaxSystemRacks(LpuV1()), 145);
  EXPECT_THROW(GenerateSystem(LpuV1(), 146), Error);
  EXPECT_THROW(GenerateSystem(LpuV1(), 0), Error);
  try {
    GenerateSystem(LpuV1(), 146);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1..145"), std::string::npos) << e.what();
  }
}

TEST(GenerateSystem, FullSizeSystem) {
  Topology topo = GenerateSystem(LpuV1(), 145);
  EXPECT_EQ(topo.chip_count(), 10440);
  EXPECT_EQ(topo.spare_count(), 145 * 8);
  // Every inter-rack port is used exactly once: 145 * 144 / 2 rack links.
  int rack_links = 0;
  for (const Link& l : topo.links())
    rack_links += topo.chip(l.a.chip).rack != topo.chip(l.b.chip).rack;
  EXPECT_EQ(rack_links, 145 * 144 / 2);
  ExpectPortBudgets(topo);
  TopologyStats s = ComputeStats(topo);
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.diameter, 7);
}

TEST(GenerateSystem, OneRackEqualsTheRackGenerator) {
  Topology a = GenerateSystem(LpuV1(), 1);
  Topology b = GenerateRack(LpuV1());
  ASSERT_EQ(a.link_count(), b.link_count());
  for (int i = 0; i < a.link_count(); ++i) {
    EXPECT_EQ(a.link(i).a, b.link(i).a);
    EXPECT_EQ(a.link(i).b, b.link(i).b);
  }
  EXPECT_EQ(ComputeStats(a).diameter, 3);
}

TEST(GenerateRing, RingOfEight) {
  Topology topo = GenerateRing(LpuV1(), 8);
  EXPECT_EQ(topo.link_count(), 8);
  for (const Chip& c : topo.chips()) EXPECT_EQ(topo.Neighbors(c.id).size(), 2u);
  TopologyStats s = ComputeStats(topo);
  EXPECT_EQ(s.diameter, 4);
  // Cutting a ring in two crosses exactly two links.
  EXPECT_EQ(s.bisection_bytes_per_s, 2 * LpuV1().link_bandwidth_bytes_per_s);
  EXPECT_EQ(GenerateRing(LpuV1(), 2).link_count(), 1);
}

TEST(GenerateTorus2d, FourByFourTorus) {
  Topology topo = GenerateTorus2d(LpuV1(), 4, 4);
  EXPECT_EQ(topo.chip_count(), 16);
  EXPECT_EQ(topo.link_count(), 32);
  for (const Chip& c : topo.chips()) EXPECT_EQ(topo.Neighbors(c.id).size(), 4u);
  TopologyStats s = ComputeStats(topo);
  EXPECT_EQ(s.diameter, 4);
  EXPECT_EQ(s.bisection_bytes_per_s, 8 * LpuV1().link_bandwidth_bytes_per_s);
  // Degenerate dimensions: 1 x n is a ring, 2 x 2 a square.
  EXPECT_EQ(GenerateTorus2d(LpuV1(), 1, 5).link_count(), 5);
  EXPECT_EQ(GenerateTorus2d(LpuV1(), 2, 2).link_count(), 4);
  EXPECT_THROW(GenerateTorus2d(LpuV1(), 1, 1), Error);
}

TEST(Generators, RejectPortBudgetOverflowNamingTheNumbers) {
  ChipSpec small = LpuV1();
  small.ports = 8;
  try {
    GenerateRack(small);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("= 9, lpu-v1 has 8"), std::string::npos) << e.what();
  }
}

TEST(Generators, SameInputsSameTopology) {
  Topology a = GenerateSystem(LpuV1(), 3);
  Topology b = GenerateSystem(LpuV1(), 3);
  ASSERT_EQ(a.link_count(), b.link_count());
  for (int i = 0; i < a.link_count(); ++i) {
    EXPECT_EQ(a.link(i).a, b.link(i).a);
    EXPECT_EQ(a.link(i).b, b.link(i).b);
  }
}

}  // namespace
}  // namespace lockstep::topology

namespace lockstep::topology {
namespace {

TEST(GenerateHyperX, FullSizeSystemIsFiveHopsAcross) {
  EXPECT_GE(MaxHyperXRacks(LpuV1()), 145);
  Topology topo = GenerateHyperX(LpuV1(), 145);
  EXPECT_EQ(topo.chip_count(), 10440);
  EXPECT_EQ(topo.spare_count(), 145 * 8);
  for (const Chip& c : topo.chips()) ASSERT_LE(topo.PortsUsed(c.id), 16);
  TopologyStats s = ComputeStats(topo);
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.diameter, 5);
}

TEST(GenerateHyperX, EveryRackIsFullyConnectedAtNodeLevel) {
  Topology topo = GenerateHyperX(LpuV1(), 8);
  std::set<std::pair<int, int>> node_pairs;
  for (const Link& l : topo.links()) {
    int a = topo.chip(l.a.chip).node, b = topo.chip(l.b.chip).node;
    if (a != b) node_pairs.insert(std::minmax(a, b));
  }
  for (int r = 0; r < 8; ++r) {
    for (int x = 0; x < 9; ++x) {
      for (int y = x + 1; y < 9; ++y) EXPECT_TRUE(node_pairs.count({r * 9 + x, r * 9 + y}));
    }
  }
  EXPECT_LE(ComputeStats(topo).diameter, 5);
}

TEST(GenerateHyperX, RejectsTooManyRacks) {
  EXPECT_THROW(GenerateHyperX(LpuV1(), MaxHyperXRacks(LpuV1()) + 1), Error);
  EXPECT_THROW(GenerateHyperX(LpuV1(), 0), Error);
}

}  // namespace
}  // namespace lockstep::topology
