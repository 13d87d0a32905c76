// Routing: minimal hop counts equal a plain BFS, the tie-break is the lexicographically smallest
// chip sequence (checked by brute force on small graphs), and routes avoid what is down.
#include "lockstep/topology/routing.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <random>

#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"

namespace lockstep::topology {
namespace {

// Reference: plain BFS distances from src over Topology::Neighbors.
std::vector<int> BfsDistances(const Topology& topo, ChipId src) {
  std::vector<int> dist(topo.chip_count(), -1);
  if (topo.chip(src).down) return dist;
  std::deque<ChipId> queue{src};
  dist[src] = 0;
  while (!queue.empty()) {
    ChipId c = queue.front();
    queue.pop_front();
    for (const Adjacent& a : topo.Neighbors(c)) {
      if (dist[a.peer] < 0) {
        dist[a.peer] = dist[c] + 1;
        queue.push_back(a.peer);
      }
    }
  }
  return dist;
}

// Reference: the lexicographically smallest minimal path, by enumerating all of them.
std::vector<ChipId> SmallestMinimalPath(const Topology& topo, ChipId src, ChipId dst) {
  const std::vector<int> to_dst = BfsDistances(topo, dst);
  std::vector<ChipId> best, path{src};
  std::function<void(ChipId)> walk = [&](ChipId c) {
    if (c == dst) {
      if (best.empty() || path < best) best = path;
      return;
    }
    for (const Adjacent& a : topo.Neighbors(c)) {
      if (to_dst[a.peer] == to_dst[c] - 1) {
        path.push_back(a.peer);
        walk(a.peer);
        path.pop_back();
      }
    }
  };
  if (to_dst[src] >= 0) walk(src);
  return best;
}

// A connected random graph: a random spanning tree plus extra edges, ports assigned in order.
Topology RandomTopology(uint32_t seed, int chips, int extra_links) {
  std::mt19937 rng(seed);
  ChipSpec spec = LpuV1();
  spec.ports = 64;
  Topology topo("random");
  int s = topo.AddSpec(spec);
  for (int i = 0; i < chips; ++i) topo.AddChip(i, 0, false, s);
  std::vector<int> next_port(chips, 0);
  auto join = [&](ChipId a, ChipId b) {
    topo.AddLink(PortRef{a, next_port[a]++}, PortRef{b, next_port[b]++}, 1000 + a + b, 10 + a);
  };
  for (int i = 1; i < chips; ++i) join(static_cast<ChipId>(rng() % i), i);
  for (int i = 0; i < extra_links; ++i) {
    ChipId a = rng() % chips, b = rng() % chips;
    if (a != b) join(a, b);
  }
  return topo;
}

void ExpectRouteIsWellFormed(const Topology& topo, const Route& r) {
  ASSERT_EQ(r.chips.size(), r.hops.size() + 1);
  EXPECT_EQ(r.chips.front(), r.src);
  EXPECT_EQ(r.chips.back(), r.dst);
  int64_t latency = 0;
  for (size_t i = 0; i < r.hops.size(); ++i) {
    const Link& l = topo.link(r.hops[i].link);
    EXPECT_FALSE(l.down);
    EXPECT_EQ(r.hops[i].from.chip, r.chips[i]);
    EXPECT_EQ(r.hops[i].to.chip, r.chips[i + 1]);
    EXPECT_EQ(topo.LinkAt(r.hops[i].from), l.id);
    EXPECT_EQ(topo.LinkAt(r.hops[i].to), l.id);
    latency += l.latency_ns;
  }
  EXPECT_EQ(r.latency_ns, latency);
}

TEST(Router, MatchesBfsAndBruteForceTieBreakOnRandomGraphs) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    Topology topo = RandomTopology(seed, 24, 18);
    Router router(topo);
    for (ChipId src = 0; src < topo.chip_count(); ++src) {
      std::vector<int> dist = BfsDistances(topo, src);
      for (ChipId dst = 0; dst < topo.chip_count(); ++dst) {
        std::optional<Route> r = router.FindRoute(src, dst);
        ASSERT_TRUE(r.has_value());
        ASSERT_EQ(r->hop_count(), dist[dst]) << "seed " << seed << " " << src << "->" << dst;
        EXPECT_EQ(r->chips, SmallestMinimalPath(topo, src, dst))
            << "seed " << seed << " " << src << "->" << dst;
        ExpectRouteIsWellFormed(topo, *r);
      }
    }
  }
}

TEST(Router, RackRoutesAreMinimalAndLowestIdFirst) {
  Topology topo = GenerateRack(LpuV1());
  Router router(topo);
  std::optional<Route> same_node = router.FindRoute(0, 7);
  ASSERT_TRUE(same_node);
  EXPECT_EQ(same_node->hop_count(), 1);
  EXPECT_EQ(same_node->latency_ns, LpuV1().link_latency_ns);
  EXPECT_EQ(same_node->bottleneck_bandwidth_bytes_per_s, LpuV1().link_bandwidth_bytes_per_s);
  for (ChipId dst : {9, 35, 63, 71}) {
    std::optional<Route> r = router.FindRoute(0, dst);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->hop_count(), BfsDistances(topo, 0)[dst]);
    EXPECT_EQ(r->chips, SmallestMinimalPath(topo, 0, dst));
  }
  std::optional<Route> self = router.FindRoute(5, 5);
  ASSERT_TRUE(self);
  EXPECT_EQ(self->hop_count(), 0);
  EXPECT_EQ(self->bottleneck_bandwidth_bytes_per_s, 0);
}

TEST(Router, ParallelLinksUseTheLowestPort) {
  ChipSpec spec = LpuV1();
  Topology topo;
  int s = topo.AddSpec(spec);
  topo.AddChip(0, 0, false, s);
  topo.AddChip(0, 0, false, s);
  topo.AddLink(PortRef{0, 5}, PortRef{1, 2});
  topo.AddLink(PortRef{0, 3}, PortRef{1, 9});
  Router router(topo);
  EXPECT_EQ(router.FindRoute(0, 1)->hops[0].from.port, 3);
  EXPECT_EQ(router.FindRoute(1, 0)->hops[0].from.port, 2);
}

TEST(Router, ReroutesAroundAFailedLinkAndChip) {
  Topology topo = GenerateRing(LpuV1(), 8);
  {
    Router router(topo);
    EXPECT_EQ(router.FindRoute(0, 2)->chips, (std::vector<ChipId>{0, 1, 2}));
  }
  topo.SetLinkDown(*topo.LinkAt(PortRef{1, 0}));  // 1 -> 2
  {
    Router router(topo);
    std::optional<Route> r = router.FindRoute(0, 2);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->chips, (std::vector<ChipId>{0, 7, 6, 5, 4, 3, 2}));
  }
  topo.SetChipDown(5);
  {
    Router router(topo);
    EXPECT_FALSE(router.FindRoute(0, 2).has_value());
    EXPECT_EQ(router.Distance(0, 2), -1);
    EXPECT_FALSE(router.FindRoute(0, 5).has_value());  // a down chip is unreachable
    EXPECT_EQ(router.FindRoute(0, 1)->hop_count(), 1);
  }
}

TEST(Router, RackRoutesAvoidADownChipWithoutGettingLonger) {
  Topology topo = GenerateRack(LpuV1());
  Router before(topo);
  Route r = *before.FindRoute(0, 63);
  ASSERT_GE(r.chips.size(), 3u);
  const ChipId middle = r.chips[1];
  topo.SetChipDown(middle);
  Router after(topo);
  Route r2 = *after.FindRoute(0, 63);
  EXPECT_EQ(std::count(r2.chips.begin(), r2.chips.end(), middle), 0);
  EXPECT_EQ(r2.hop_count(), BfsDistances(topo, 0)[63]);
}

TEST(Router, BottleneckIsTheSlowestLink) {
  ChipSpec spec = LpuV1();
  Topology topo;
  int s = topo.AddSpec(spec);
  for (int i = 0; i < 3; ++i) topo.AddChip(0, 0, false, s);
  topo.AddLink(PortRef{0, 0}, PortRef{1, 0}, 100, 7);
  topo.AddLink(PortRef{1, 1}, PortRef{2, 0}, 40, 5);
  Route r = *Router(topo).FindRoute(0, 2);
  EXPECT_EQ(r.latency_ns, 12);
  EXPECT_EQ(r.bottleneck_bandwidth_bytes_per_s, 40);
}

TEST(Router, UnknownChipIsAnError) {
  Topology topo = GenerateNode(LpuV1(), 4);
  Router router(topo);
  EXPECT_THROW(router.FindRoute(0, 4), Error);
  EXPECT_THROW(router.FindRoute(-1, 0), Error);
}

TEST(Router, SystemRoutesMatchBfsFromOneChip) {
  Topology topo = GenerateSystem(LpuV1(), 8);
  Router router(topo);
  std::vector<int> dist = BfsDistances(topo, 3);
  for (ChipId dst = 0; dst < topo.chip_count(); dst += 7) {
    std::optional<Route> r = router.FindRoute(3, dst);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->hop_count(), dist[dst]);
    ExpectRouteIsWellFormed(topo, *r);
  }
}

}  // namespace
}  // namespace lockstep::topology
