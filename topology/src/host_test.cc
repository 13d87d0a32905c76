// Host discovery: this machine (loose invariants, any host) and hwloc synthetic hosts (exact).
#include "lockstep/topology/host.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <set>
#include <string>

#include "lockstep/common/error.h"

namespace lockstep::topology {
namespace {

// Cores over all domains.
int CoresIn(const HostSummary& host) {
  int n = 0;
  for (const NumaDomain& d : host.numa) n += static_cast<int>(d.cores.size());
  return n;
}

// Every core index and every PU appears once over the whole host.
void ExpectCoresAndPusUnique(const HostSummary& host) {
  std::set<int> cores, pus;
  int pu_count = 0;
  for (const NumaDomain& d : host.numa) {
    for (const HostCore& c : d.cores) {
      EXPECT_TRUE(cores.insert(c.index).second) << "core " << c.index << " listed twice";
      EXPECT_FALSE(c.pus.empty()) << "core " << c.index << " has no PUs";
      for (int pu : c.pus) {
        EXPECT_TRUE(pus.insert(pu).second) << "PU " << pu << " on two cores";
        ++pu_count;
      }
      EXPECT_TRUE(std::is_sorted(c.pus.begin(), c.pus.end()));
    }
  }
  EXPECT_EQ(pu_count, host.pus);
}

TEST(HostTest, ThisMachine) {
  const HostSummary host = DiscoverHost();
  EXPECT_EQ(host.source, "this machine");
  EXPECT_GE(host.cores, 1);
  EXPECT_GE(host.pus, host.cores);
  EXPECT_GE(host.numa_nodes, 1);
  EXPECT_EQ(host.numa_nodes, static_cast<int>(host.numa.size()));
  EXPECT_EQ(CoresIn(host), host.cores);
  EXPECT_FALSE(host.caches.empty());
  for (const HostCache& c : host.caches) {
    EXPECT_GE(c.level, 1);
    EXPECT_GE(c.count, 1);
    EXPECT_EQ(c.name.rfind("L" + std::to_string(c.level), 0), 0u) << c.name;
  }
  ExpectCoresAndPusUnique(host);
  // Same machine, same summary (but for memory: a VM's balloon may change it meanwhile).
  auto without_memory = [](HostSummary h) {
    for (NumaDomain& d : h.numa) d.memory_bytes = 0;
    return h;
  };
  EXPECT_EQ(without_memory(DiscoverHost()), without_memory(host));
}

// Binding the (single-threaded) test process to one CPU, as taskset would, leaves one core.
TEST(HostTest, ThisMachineHonoursCpuBinding) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "needs 2 CPUs";
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  const HostSummary host = DiscoverHost();
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  EXPECT_EQ(host.cores, 1);
  int found = 0;
  for (const NumaDomain& d : host.numa) {
    for (const HostCore& c : d.cores) {
      EXPECT_EQ(std::count(c.pus.begin(), c.pus.end(), first), 1);
      ++found;
    }
  }
  EXPECT_EQ(found, 1);
}

TEST(HostTest, SyntheticTwoDomainsWithSmt) {
  const HostSummary host = DiscoverSyntheticHost("numa:2 core:8 pu:2");
  EXPECT_EQ(host.source, "synthetic: numa:2 core:8 pu:2");
  EXPECT_EQ(host.numa_nodes, 2);
  EXPECT_EQ(host.cores, 16);
  EXPECT_EQ(host.pus, 32);
  EXPECT_TRUE(host.caches.empty());
  ASSERT_EQ(host.numa.size(), 2u);
  for (int d = 0; d < 2; ++d) {
    const NumaDomain& domain = host.numa[d];
    EXPECT_EQ(domain.index, d);
    EXPECT_GT(domain.memory_bytes, 0);
    ASSERT_EQ(domain.cores.size(), 8u);
    for (int i = 0; i < 8; ++i) {
      const HostCore& core = domain.cores[i];
      EXPECT_EQ(core.index, d * 8 + i);
      EXPECT_EQ(core.pus, (std::vector<int>{2 * core.index, 2 * core.index + 1}));
    }
  }
  ExpectCoresAndPusUnique(host);
}

TEST(HostTest, SyntheticPackagesOfDomains) {
  const HostSummary host = DiscoverSyntheticHost("pack:2 numa:2 core:4 pu:1");
  EXPECT_EQ(host.packages, 2);
  EXPECT_EQ(host.numa_nodes, 4);
  EXPECT_EQ(host.cores, 16);
  EXPECT_EQ(host.pus, 16);
  for (int d = 0; d < 4; ++d) {
    ASSERT_EQ(host.numa[d].cores.size(), 4u);
    EXPECT_EQ(host.numa[d].cores.front().index, 4 * d);
  }
  ExpectCoresAndPusUnique(host);
}

TEST(HostTest, SyntheticCachesByLevel) {
  const HostSummary host = DiscoverSyntheticHost("pack:2 numa:2 l3:1 l2:4 l1d:1 l1i:1 core:1 pu:2");
  EXPECT_EQ(host.cores, 16);
  EXPECT_EQ(host.pus, 32);
  ASSERT_EQ(host.caches.size(), 3u);  // the instruction cache is left out
  EXPECT_EQ(host.caches[0].name, "L1d");
  EXPECT_EQ(host.caches[0].count, 16);
  EXPECT_EQ(host.caches[1].name, "L2");
  EXPECT_EQ(host.caches[1].count, 16);
  EXPECT_EQ(host.caches[2].name, "L3");
  EXPECT_EQ(host.caches[2].level, 3);
  EXPECT_EQ(host.caches[2].count, 4);
  EXPECT_GT(host.caches[2].size_bytes, host.caches[0].size_bytes);
}

TEST(HostTest, SyntheticWithoutNumaLevelIsOneDomain) {
  const HostSummary host = DiscoverSyntheticHost("core:4 pu:2");
  EXPECT_EQ(host.numa_nodes, 1);
  ASSERT_EQ(host.numa.size(), 1u);
  EXPECT_EQ(host.numa[0].cores.size(), 4u);
  EXPECT_EQ(host.packages, 0);
}

TEST(HostTest, SyntheticWithoutCoreLevelCountsPusAsCores) {
  const HostSummary host = DiscoverSyntheticHost("numa:2 pu:3");
  EXPECT_EQ(host.cores, 6);
  EXPECT_EQ(host.pus, 6);
  ASSERT_EQ(host.numa.size(), 2u);
  EXPECT_EQ(host.numa[1].cores.size(), 3u);
  ExpectCoresAndPusUnique(host);
}

void ExpectInvalid(const std::string& description, const std::string& why) {
  try {
    DiscoverSyntheticHost(description);
    ADD_FAILURE() << "'" << description << "' was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'" + description + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(why), std::string::npos) << msg;
    EXPECT_NE(msg.find("valid example: \"pack:2 numa:2 l3:1 core:4 pu:2\""), std::string::npos)
        << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

TEST(HostTest, InvalidSyntheticDescriptions) {
  ExpectInvalid("bogus:3", "not valid hwloc synthetic syntax");
  ExpectInvalid("core:x pu:2", "not valid hwloc synthetic syntax");
  ExpectInvalid("pu:2 core:2", "not valid hwloc synthetic syntax");
  ExpectInvalid("core:0 pu:1", "not valid hwloc synthetic syntax");
  // Not tested: a rejected description with a bracketed memory child ("[numa] core:2") makes
  // hwloc 2.9 leak 32 bytes, which LeakSanitizer reports; the error itself is the same.
  ExpectInvalid("", "is empty");
  ExpectInvalid("  ", "is empty");
  ExpectInvalid("numa:64 core:1000 pu:4", "more than 65536 PUs");
}

}  // namespace
}  // namespace lockstep::topology
