// MapToHosts: chips of a node together, stages in hosts order, spares kept spare, sharing only
// when allowed.
#include "lockstep/coordinator/host_map.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "lockstep/common/error.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"

namespace lockstep::coordinator {
namespace {

topology::Topology Rack() { return topology::GenerateRack(*topology::ChipPreset("lpu-v1")); }

topology::HostsFile Hosts(std::vector<std::pair<int, int>> cores_numa) {
  topology::HostsFile f;
  f.source = "hosts.yaml";
  for (size_t i = 0; i < cores_numa.size(); ++i) {
    topology::HostEntry h;
    h.name = "h" + std::to_string(i);
    h.address = "127.0.0.1";
    h.cores = cores_numa[i].first;
    h.numa_nodes = cores_numa[i].second;
    f.hosts.push_back(h);
  }
  return f;
}

// The 64 working chips of a rack as 8 stages x TP 8: stage = node.
std::vector<UsedChip> RackPlan(int stages = 8) {
  std::vector<UsedChip> used;
  for (int chip = 0; chip < stages * 8; ++chip) used.push_back({chip, chip / 8, chip % 8});
  return used;
}

TEST(HostMap, NodesStayTogetherAndStagesFollowHostOrder) {
  const topology::Topology rack = Rack();
  const HostMap map = MapToHosts(RackPlan(), rack, Hosts({{24, 1}, {24, 1}, {24, 1}}));
  ASSERT_EQ(map.chips.size(), 64u);
  std::map<int, std::set<int>> hosts_of_node;
  int last_host = 0;
  std::map<int, std::set<int>> cores_of_host;
  for (const ChipOnHost& c : map.chips) {
    hosts_of_node[c.node].insert(c.host);
    EXPECT_FALSE(c.shared_core);
    EXPECT_TRUE(cores_of_host[c.host].insert(c.core).second) << "chip " << c.chip;
    EXPECT_GE(c.host, last_host) << "stages must not go back to an earlier host";
    last_host = c.host;
  }
  for (const auto& [node, hosts] : hosts_of_node) EXPECT_EQ(hosts.size(), 1u) << "node " << node;
  // 3 nodes per 24-core host: nodes 0-2 on h0, 3-5 on h1, 6-7 on h2.
  EXPECT_EQ(map.Find(23)->host, 0);
  EXPECT_EQ(map.Find(24)->host, 1);
  EXPECT_EQ(map.Find(48)->host, 2);
  EXPECT_EQ(map.Find(63)->core, 15);
  // The spare node (chips 64-71) is listed, on the free cores of the last host.
  ASSERT_EQ(map.spares.size(), 8u);
  for (const ChipOnHost& s : map.spares) {
    EXPECT_TRUE(s.spare);
    EXPECT_EQ(s.host, 2);
    EXPECT_FALSE(s.shared_core);
    EXPECT_EQ(map.Find(s.chip), nullptr);
  }
  EXPECT_EQ(map.spares.front().core, 16);
  EXPECT_TRUE(map.notes.empty());
}

TEST(HostMap, NumaDomainsHoldWholeNodes) {
  // One host, 2 domains of 10 cores: a node of 8 per domain, never split.
  const HostMap map = MapToHosts(RackPlan(2), Rack(), Hosts({{20, 2}}));
  for (const ChipOnHost& c : map.chips) EXPECT_EQ(c.numa, c.node) << "chip " << c.chip;
  EXPECT_EQ(map.Find(8)->core, 10);  // the second domain starts at core 10
  // 4 cores are left for the 8 spares: 4 of them share cores, and only that is noted.
  ASSERT_EQ(map.notes.size(), 1u);
  EXPECT_EQ(map.notes[0],
            "4 spare chip(s) mapped onto cores already in use (spares are not started; a "
            "failover onto one would share its core)");
  int sharing = 0;
  for (const ChipOnHost& s : map.spares) sharing += s.shared_core;
  EXPECT_EQ(sharing, 4);
}

TEST(HostMap, NodesAreCutOnlyWhenTheyMustBe) {
  // 2 hosts of 12 cores, 2 nodes of 8: whole nodes fit (8 + 8), no cut.
  EXPECT_TRUE(MapToHosts(RackPlan(2), Rack(), Hosts({{12, 1}, {12, 1}})).notes.empty());
  // 3 hosts of 6 cores: a node of 8 cannot stay whole; the mapping cuts it and says so.
  const HostMap cut = MapToHosts(RackPlan(2), Rack(), Hosts({{6, 1}, {6, 1}, {6, 1}}));
  ASSERT_FALSE(cut.notes.empty());
  EXPECT_NE(cut.notes.front().find("node 0 is cut across h0, h1"), std::string::npos)
      << cut.notes.front();
}

TEST(HostMap, TooFewCoresIsAnErrorNamingWhatIsMissing) {
  try {
    MapToHosts(RackPlan(), Rack(), Hosts({{16, 1}, {16, 1}}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCannotFit);
    EXPECT_EQ(std::string(e.what()),
              "the plan starts 64 workers (one per chip), the 2 host(s) in hosts.yaml have 32 "
              "cores: 32 cores missing (add hosts or cores, or allow shared cores)");
  }
}

TEST(HostMap, SharedCoresOnlyWhenAllowedAndSaidSo) {
  const HostMap map =
      MapToHosts(RackPlan(2), Rack(), Hosts({{2, 1}, {2, 1}}), {.allow_shared_cores = true});
  ASSERT_EQ(map.chips.size(), 16u);
  std::map<std::pair<int, int>, int> load;
  for (const ChipOnHost& c : map.chips) {
    EXPECT_TRUE(c.shared_core);
    EXPECT_LT(c.core, 2);
    ++load[{c.host, c.core}];
  }
  EXPECT_EQ(load.size(), 4u);
  for (const auto& [where, n] : load) EXPECT_EQ(n, 4);
  EXPECT_EQ(map.Find(0)->host, 0);   // node 0 on h0
  EXPECT_EQ(map.Find(15)->host, 1);  // node 1 on h1
  ASSERT_EQ(map.notes.size(), 3u);   // two hosts sharing, spares on used cores
  EXPECT_EQ(map.notes[0],
            "host h0: 8 chips share 2 cores (up to 4 per core; shared cores allowed)");
}

TEST(HostMap, DeterministicAndForwardersLast) {
  const topology::Topology rack = Rack();
  // Stage 0 on node 1, stage 1 on node 0, a forwarding chip on node 2: node 1 maps first.
  std::vector<UsedChip> used = {{0, 1, 0}, {1, 1, 1}, {8, 0, 0}, {9, 0, 1}, {16, -1, -1}};
  const HostMap a = MapToHosts(used, rack, Hosts({{2, 1}, {2, 1}, {2, 1}}));
  EXPECT_EQ(a.Find(8)->host, 0);
  EXPECT_EQ(a.Find(0)->host, 1);
  EXPECT_EQ(a.Find(16)->host, 2);
  const HostMap b = MapToHosts(used, rack, Hosts({{2, 1}, {2, 1}, {2, 1}}));
  ASSERT_EQ(a.chips.size(), b.chips.size());
  for (size_t i = 0; i < a.chips.size(); ++i) {
    EXPECT_EQ(a.chips[i].host, b.chips[i].host);
    EXPECT_EQ(a.chips[i].core, b.chips[i].core);
  }
}

}  // namespace
}  // namespace lockstep::coordinator
