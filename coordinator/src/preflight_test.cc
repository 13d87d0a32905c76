// Pre-flight checks: worker hosts against the mapping, and the link table against the topology.
#include "lockstep/coordinator/preflight.h"

#include <gtest/gtest.h>

#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"

namespace lockstep::coordinator {
namespace {

topology::HostEntry Host(std::string name, std::string address) {
  topology::HostEntry h;
  h.name = std::move(name);
  h.address = std::move(address);
  h.cores = 2;
  return h;
}

topology::HostsFile TwoHosts() {
  topology::HostsFile f;
  f.source = "hosts.yaml";
  f.hosts = {Host("a", "127.0.0.1"), Host("b", "10.0.0.2")};
  return f;
}

HostMap TwoChipsOnTwoHosts() {
  HostMap m;
  m.chips.push_back({.chip = 0, .host = 0});
  m.chips.push_back({.chip = 1, .host = 1});
  return m;
}

WorkerInfo Worker(int64_t pid, std::string host, int32_t chip) {
  WorkerInfo w;
  w.pid = pid;
  w.hostname = std::move(host);
  w.chip = chip;
  return w;
}

TEST(Preflight, WorkersOnTheirMappedHostsPass) {
  // Host a is local: its workers report the coordinator's hostname. Host b reports its name.
  EXPECT_TRUE(CheckWorkerHosts({Worker(10, "box", 0), Worker(11, "b", 1)}, TwoChipsOnTwoHosts(),
                               TwoHosts(), "box")
                  .empty());
  // ... or its address.
  EXPECT_TRUE(CheckWorkerHosts({Worker(10, "box", 0), Worker(11, "10.0.0.2", 1)},
                               TwoChipsOnTwoHosts(), TwoHosts(), "box")
                  .empty());
}

TEST(Preflight, NamesAWorkerOnTheWrongHost) {
  const std::vector<std::string> p = CheckWorkerHosts({Worker(10, "box", 0), Worker(11, "box", 1)},
                                                      TwoChipsOnTwoHosts(), TwoHosts(), "box");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0],
            "chip 1: worker pid 11 registered from host 'box', but the mapping puts chip 1 on "
            "host b (10.0.0.2, reporting hostname 'b')");
}

TEST(Preflight, NamesStrayDuplicateAndMissingWorkers) {
  const std::vector<std::string> p = CheckWorkerHosts(
      {Worker(10, "box", 0), Worker(12, "box", 0), Worker(13, "box", 7), Worker(14, "box", -1)},
      TwoChipsOnTwoHosts(), TwoHosts(), "box");
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0], "chip 0 has 2 workers: worker pid 10 on host 'box', worker pid 12 on host 'box'");
  EXPECT_EQ(p[1], "chip 1: no worker registered (host b)");
  EXPECT_EQ(p[2], "worker pid 13 on host 'box' asked for chip 7, which the mapping does not start");
  EXPECT_NE(p[3].find("worker pid 14 on host 'box' registered without asking for a chip"),
            std::string::npos);
}

TEST(Preflight, RoutesMatchTheTopology) {
  const topology::Topology node = topology::GenerateNode(*topology::ChipPreset("lpu-v1"), 4);
  // Chips 0 and 1 joined by the topology's link on 0's port 0.
  const topology::Link& l = node.link(*node.LinkAt({0, 0}));
  ASSERT_EQ(l.Peer(0).chip, 1);
  transport::LinkSpec spec;
  spec.a = {0, 0};
  spec.b = {1, static_cast<uint32_t>(l.Peer(0).port)};
  Deployment d;
  d.chips.resize(2);
  d.chips[0].chip = 0;
  d.chips[0].links = {spec};
  d.chips[1].chip = 1;
  d.chips[1].links = {spec};
  EXPECT_TRUE(CheckRoutes(d, node).empty());

  // The peer does not use the link.
  Deployment one_sided = d;
  one_sided.chips[1].links.clear();
  ASSERT_EQ(CheckRoutes(one_sided, node).size(), 1u);
  EXPECT_NE(CheckRoutes(one_sided, node)[0].find("chip 0 port 0: chip 1 does not use this link"),
            std::string::npos);

  // A hop to a chip that is not deployed (a forwarding chip missing).
  Deployment missing = d;
  missing.chips.pop_back();
  EXPECT_EQ(CheckRoutes(missing, node),
            std::vector<std::string>{"chip 0 port 0: leads to chip 1, which is not deployed (a "
                                     "routed hop without its forwarding chip)"});

  // The schedule's peer port differs from the topology's wiring.
  Deployment miswired = d;
  miswired.chips[0].links[0].b.port = 9;
  miswired.chips[1].links[0].b.port = 9;
  EXPECT_EQ(CheckRoutes(miswired, node)[0],
            "chip 0 port 0: the schedule expects chip 1 port 9, the topology links chip 1 port " +
                std::to_string(l.Peer(0).port));
}

}  // namespace
}  // namespace lockstep::coordinator
