// MapChipsToCores: the pinning rule of host.h, checked as invariants on synthetic hosts.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/host.h"

namespace lockstep::topology {
namespace {

// Chips per core (every core of the host, 0 for unused ones).
std::map<int, int> LoadPerCore(const HostSummary& host, const std::vector<ChipPlacement>& ps,
                               int only_domain = -1) {
  std::map<int, int> load;
  for (const NumaDomain& d : host.numa) {
    if (only_domain >= 0 && d.index != only_domain) continue;
    for (const HostCore& c : d.cores) load[c.index] = 0;
  }
  for (const ChipPlacement& p : ps) {
    if (only_domain < 0 || p.numa == only_domain) ++load.at(p.core);
  }
  return load;
}

int Spread(const std::map<int, int>& load) {
  int lo = load.begin()->second, hi = lo;
  for (const auto& [core, n] : load) lo = std::min(lo, n), hi = std::max(hi, n);
  return hi - lo;
}

// Every chip once, in id order, on a core that exists in the domain named, with its PUs.
void ExpectWellFormed(const Topology& topo, const HostSummary& host,
                      const std::vector<ChipPlacement>& ps) {
  std::map<int, const HostCore*> core_of;
  std::map<int, int> domain_of;
  for (const NumaDomain& d : host.numa) {
    for (const HostCore& c : d.cores) core_of[c.index] = &c, domain_of[c.index] = d.index;
  }
  ASSERT_EQ(static_cast<int>(ps.size()), topo.chip_count());
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(ps[i].chip, static_cast<ChipId>(i));
    ASSERT_EQ(core_of.count(ps[i].core), 1u) << "chip " << i << " on unknown core";
    EXPECT_EQ(domain_of[ps[i].core], ps[i].numa) << "chip " << i;
    EXPECT_EQ(ps[i].pus, core_of[ps[i].core]->pus) << "chip " << i;
  }
}

TEST(HostMappingTest, RackOnTwoDomains) {
  const Topology rack = GenerateRack(LpuV1());
  const HostSummary host = DiscoverSyntheticHost("numa:2 core:8 pu:2");
  const std::vector<ChipPlacement> ps = MapChipsToCores(rack, host);
  ExpectWellFormed(rack, host, ps);

  // The chips of a node share a domain; the nodes fall into contiguous blocks, split 5/4.
  std::map<int, int> node_domain;
  for (const ChipPlacement& p : ps) {
    const int node = rack.chip(p.chip).node;
    auto [it, fresh] = node_domain.emplace(node, p.numa);
    EXPECT_EQ(it->second, p.numa) << "node " << node << " split across domains";
  }
  ASSERT_EQ(node_domain.size(), 9u);
  std::map<int, int> nodes_per_domain;
  int previous = -1;
  for (const auto& [node, domain] : node_domain) {
    EXPECT_GE(domain, previous) << "node " << node << " breaks the contiguous blocks";
    previous = domain;
    ++nodes_per_domain[domain];
  }
  ASSERT_EQ(nodes_per_domain.size(), 2u);
  EXPECT_EQ(std::abs(nodes_per_domain[0] - nodes_per_domain[1]), 1);

  // Balanced per domain and over the host (40 chips on 8 cores, 32 on 8).
  EXPECT_LE(Spread(LoadPerCore(host, ps)), 1);
  EXPECT_EQ(Spread(LoadPerCore(host, ps, 0)), 0);
  EXPECT_EQ(Spread(LoadPerCore(host, ps, 1)), 0);
  // A core's chips are consecutive, so the node's local traffic mostly stays on one core.
  for (size_t i = 1; i < ps.size(); ++i) EXPECT_GE(ps[i].core, ps[i - 1].core);

  EXPECT_EQ(MapChipsToCores(rack, host), ps);  // deterministic
}

TEST(HostMappingTest, WithoutSpares) {
  const Topology rack = GenerateRack(LpuV1());
  const HostSummary host = DiscoverSyntheticHost("numa:2 core:8 pu:2");
  const std::vector<ChipPlacement> ps = MapChipsToCores(rack, host, /*include_spares=*/false);
  ASSERT_EQ(ps.size(), 64u);
  for (const ChipPlacement& p : ps) EXPECT_FALSE(rack.chip(p.chip).spare);
  // 8 nodes split 4/4: 32 chips on each domain, 4 per core.
  for (const auto& [core, n] : LoadPerCore(host, ps)) EXPECT_EQ(n, 4) << "core " << core;
}

TEST(HostMappingTest, SmallNodeSpreadsOverCores) {
  const Topology node = GenerateNode(LpuV1(), 4);
  const HostSummary host = DiscoverSyntheticHost("core:16 pu:1");
  const std::vector<ChipPlacement> ps = MapChipsToCores(node, host);
  ExpectWellFormed(node, host, ps);
  std::set<int> cores;
  for (const ChipPlacement& p : ps) cores.insert(p.core);
  EXPECT_EQ(cores, (std::set<int>{0, 4, 8, 12}));
}

TEST(HostMappingTest, UnevenChipsPerCoreStayWithinOne) {
  // 72 chips on 2 domains of 5 cores: 40 chips on 5 cores, 32 on 5 (6 or 7 each).
  const Topology rack = GenerateRack(LpuV1());
  const HostSummary host = DiscoverSyntheticHost("numa:2 core:5 pu:1");
  const std::vector<ChipPlacement> ps = MapChipsToCores(rack, host);
  ExpectWellFormed(rack, host, ps);
  EXPECT_EQ(Spread(LoadPerCore(host, ps, 0)), 0);
  EXPECT_EQ(Spread(LoadPerCore(host, ps, 1)), 1);
  for (const auto& [core, n] : LoadPerCore(host, ps)) EXPECT_LE(n, 8) << "core " << core;
}

TEST(HostMappingTest, OneNodeStaysOnOneDomain) {
  const Topology node = GenerateNode(LpuV1(), 8);
  const HostSummary host = DiscoverSyntheticHost("numa:4 core:2 pu:1");
  const std::vector<ChipPlacement> ps = MapChipsToCores(node, host);
  ExpectWellFormed(node, host, ps);
  for (const ChipPlacement& p : ps) EXPECT_EQ(p.numa, 0);
  EXPECT_EQ(LoadPerCore(host, ps, 0), (std::map<int, int>{{0, 4}, {1, 4}}));
}

TEST(HostMappingTest, MemoryOnlyDomainsTakeNoChips) {
  HostSummary host;
  host.numa = {NumaDomain{0, 1 << 30, {}}, NumaDomain{1, 1 << 30, {{0, {0}}, {1, {1}}}}};
  host.numa_nodes = 2;
  host.cores = host.pus = 2;
  const Topology node = GenerateNode(LpuV1(), 8);
  const std::vector<ChipPlacement> ps = MapChipsToCores(node, host);
  ExpectWellFormed(node, host, ps);
  for (const ChipPlacement& p : ps) EXPECT_EQ(p.numa, 1);
}

TEST(HostMappingTest, RackOnThisMachine) {
  const Topology rack = GenerateRack(LpuV1());
  const HostSummary host = DiscoverHost();
  const std::vector<ChipPlacement> ps = MapChipsToCores(rack, host);
  ExpectWellFormed(rack, host, ps);
  for (const NumaDomain& d : host.numa) {
    if (!d.cores.empty()) {
      EXPECT_LE(Spread(LoadPerCore(host, ps, d.index)), 1);
    }
  }
}

TEST(HostMappingTest, NothingToPlaceOrNowhereToPlaceIt) {
  const HostSummary host = DiscoverSyntheticHost("core:2 pu:1");
  EXPECT_THROW(MapChipsToCores(Topology("empty"), host), Error);
  RackShape all_spare;
  all_spare.nodes = 2;
  all_spare.spare_nodes = 1;
  Topology rack = GenerateRack(LpuV1(), all_spare);
  EXPECT_EQ(MapChipsToCores(rack, host, false).size(), 8u);

  HostSummary coreless;
  coreless.source = "test";
  coreless.numa = {NumaDomain{}};
  try {
    MapChipsToCores(rack, coreless);
    ADD_FAILURE() << "a host without cores was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("no cores"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep::topology
