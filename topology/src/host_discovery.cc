// Host discovery with hwloc (see host.h). hwloc is used only here.
#include <hwloc.h>
#include <sched.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/topology/host.h"

namespace lockstep::topology {
namespace {

constexpr int64_t kMaxSyntheticPus = 65536;
constexpr const char* kSyntheticExample = "\"pack:2 numa:2 l3:1 core:4 pu:2\"";

// Owns one hwloc topology.
struct HwlocDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using HwlocTopology = std::unique_ptr<hwloc_topology, HwlocDeleter>;

HwlocTopology NewTopology() {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) {
    throw Error(ErrorCode::kUnavailable, "host: hwloc could not initialise a topology");
  }
  return HwlocTopology(raw);
}

int Count(hwloc_topology_t t, hwloc_obj_type_t type) {
  return std::max(0, hwloc_get_nbobjs_by_type(t, type));
}

std::vector<hwloc_obj_t> Objects(hwloc_topology_t t, hwloc_obj_type_t type) {
  std::vector<hwloc_obj_t> objs;
  for (int i = 0; i < Count(t, type); ++i) objs.push_back(hwloc_get_obj_by_type(t, type, i));
  return objs;
}

std::vector<HostCache> Caches(hwloc_topology_t t) {
  // (level, size) -> (name, count); std::map keeps the output ordered.
  std::map<std::pair<int, int64_t>, HostCache> by_level;
  const hwloc_obj_type_t types[] = {HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L3CACHE,
                                    HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L5CACHE};
  for (hwloc_obj_type_t type : types) {
    for (hwloc_obj_t obj : Objects(t, type)) {
      const auto& attr = obj->attr->cache;
      if (attr.type == HWLOC_OBJ_CACHE_INSTRUCTION) continue;
      const int level = static_cast<int>(attr.depth);
      const int64_t size = static_cast<int64_t>(attr.size);
      HostCache& c = by_level[{level, size}];
      c.level = level;
      c.size_bytes = size;
      c.name = "L" + std::to_string(level) + (attr.type == HWLOC_OBJ_CACHE_DATA ? "d" : "");
      ++c.count;
    }
  }
  std::vector<HostCache> caches;
  for (auto& [key, cache] : by_level) caches.push_back(std::move(cache));
  return caches;
}

HostSummary Summarize(hwloc_topology_t t, std::string source) {
  HostSummary host;
  host.source = std::move(source);
  host.packages = Count(t, HWLOC_OBJ_PACKAGE);
  host.pus = Count(t, HWLOC_OBJ_PU);
  host.caches = Caches(t);

  std::vector<hwloc_obj_t> nodes = Objects(t, HWLOC_OBJ_NUMANODE);
  for (hwloc_obj_t n : nodes) {
    NumaDomain d;
    d.index = static_cast<int>(n->logical_index);
    d.memory_bytes = static_cast<int64_t>(n->attr->numanode.local_memory);
    host.numa.push_back(std::move(d));
  }
  if (host.numa.empty()) host.numa.push_back(NumaDomain{});  // no NUMA information: one domain
  host.numa_nodes = static_cast<int>(host.numa.size());

  // Cores; without a core level, each PU stands for a core.
  std::vector<hwloc_obj_t> cores = Objects(t, HWLOC_OBJ_CORE);
  if (cores.empty()) cores = Objects(t, HWLOC_OBJ_PU);
  host.cores = static_cast<int>(cores.size());
  for (hwloc_obj_t core : cores) {
    HostCore hc;
    hc.index = static_cast<int>(core->logical_index);
    hwloc_obj_t pu = nullptr;
    while ((pu = hwloc_get_next_obj_inside_cpuset_by_type(t, core->cpuset, HWLOC_OBJ_PU, pu))) {
      hc.pus.push_back(static_cast<int>(pu->os_index));
    }
    std::sort(hc.pus.begin(), hc.pus.end());
    // The first domain whose CPUs include the core; failing that, the first that shares a CPU
    // with it; failing that, the first domain.
    size_t domain = nodes.size();
    for (size_t i = 0; i < nodes.size() && domain == nodes.size(); ++i) {
      if (hwloc_bitmap_isincluded(core->cpuset, nodes[i]->cpuset)) domain = i;
    }
    for (size_t i = 0; i < nodes.size() && domain == nodes.size(); ++i) {
      if (hwloc_bitmap_intersects(core->cpuset, nodes[i]->cpuset)) domain = i;
    }
    if (domain == nodes.size()) domain = 0;
    host.numa[domain].cores.push_back(std::move(hc));
  }
  for (NumaDomain& d : host.numa) {
    std::sort(d.cores.begin(), d.cores.end(),
              [](const HostCore& a, const HostCore& b) { return a.index < b.index; });
  }
  return host;
}

// Upper bound of the PUs a synthetic description asks for: the product of its arities (the
// number after "type:" or a bare number), so a typo like "core:80000 pu:8000" is refused before
// hwloc tries to build it.
int64_t SyntheticPuBound(const std::string& description) {
  int64_t product = 1;
  size_t i = 0;
  while (i < description.size()) {
    while (i < description.size() && std::isspace(static_cast<unsigned char>(description[i]))) ++i;
    size_t end = i;
    while (end < description.size() && !std::isspace(static_cast<unsigned char>(description[end])))
      ++end;
    std::string token = description.substr(i, end - i);
    i = end;
    token = token.substr(0, token.find('('));
    const size_t colon = token.rfind(':');
    if (colon != std::string::npos) token = token.substr(colon + 1);
    int64_t arity = 0;
    size_t digits = 0;
    while (digits < token.size() && std::isdigit(static_cast<unsigned char>(token[digits])) &&
           arity <= kMaxSyntheticPus) {
      arity = arity * 10 + (token[digits] - '0');
      ++digits;
    }
    if (digits > 0)
      product = std::min<int64_t>(product * std::max<int64_t>(arity, 1), kMaxSyntheticPus + 1);
  }
  return product;
}

}  // namespace

HostSummary DiscoverHost() {
  HwlocTopology t = NewTopology();
  // Honour taskset/numactl: cores outside this process's CPU binding are not ours to pin to.
  // (cgroup cpusets are honoured by hwloc's default "allowed" filtering.)
  hwloc_topology_set_flags(
      t.get(), HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM | HWLOC_TOPOLOGY_FLAG_RESTRICT_TO_CPUBINDING);
  if (hwloc_topology_load(t.get()) != 0) {
    throw Error(ErrorCode::kUnavailable, "host: hwloc could not read this machine's topology");
  }
  return Summarize(t.get(), "this machine");
}

HostSummary DiscoverSyntheticHost(const std::string& description) {
  auto invalid = [&](const std::string& why) {
    return InvalidInput("host: synthetic description '" + description + "' " + why +
                        " (valid example: " + kSyntheticExample + ")");
  };
  if (description.find_first_not_of(" \t\n") == std::string::npos) {
    throw invalid("is empty");
  }
  if (SyntheticPuBound(description) > kMaxSyntheticPus) {
    throw invalid("describes more than " + std::to_string(kMaxSyntheticPus) + " PUs");
  }
  HwlocTopology t = NewTopology();
  if (hwloc_topology_set_synthetic(t.get(), description.c_str()) != 0) {
    throw invalid("is not valid hwloc synthetic syntax");
  }
  if (hwloc_topology_load(t.get()) != 0) throw invalid("could not be built by hwloc");
  return Summarize(t.get(), "synthetic: " + description);
}

bool PinCallingThread(const std::vector<int>& pus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int pu : pus) {
    if (pu >= 0 && pu < CPU_SETSIZE) CPU_SET(pu, &set);
  }
  return CPU_COUNT(&set) > 0 && sched_setaffinity(0, sizeof(set), &set) == 0;
}

}  // namespace lockstep::topology
