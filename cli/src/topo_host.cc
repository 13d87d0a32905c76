// `lockstep topo host`: what this machine (or an hwloc synthetic host) offers for running
// simulated chips, and with --map-rack where the chips of a default rack would be pinned.
#include <algorithm>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/host.h"
#include "lockstep/topology/io.h"

namespace lockstep::cli {
namespace {

using topology::ChipPlacement;
using topology::HostSummary;

// "0-3,6,8-9" for an ascending list.
std::string Ranges(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(v[i]);
    if (j > i) out += "-" + std::to_string(v[j]);
    i = j + 1;
  }
  return out.empty() ? "none" : out;
}

std::string Bytes(int64_t b) {
  std::ostringstream s;
  if (b >= (int64_t{1} << 30)) {
    s.precision(1);
    s << std::fixed << static_cast<double>(b) / static_cast<double>(int64_t{1} << 30) << " GiB";
  } else if (b >= (int64_t{1} << 20)) {
    s << b / (int64_t{1} << 20) << " MiB";
  } else {
    s << b / 1024 << " KiB";
  }
  return s.str();
}

nlohmann::json HostJson(const HostSummary& host) {
  nlohmann::json j = {{"source", host.source},
                      {"packages", host.packages},
                      {"numa_nodes", host.numa_nodes},
                      {"cores", host.cores},
                      {"pus", host.pus},
                      {"caches", nlohmann::json::array()},
                      {"numa", nlohmann::json::array()}};
  for (const topology::HostCache& c : host.caches) {
    j["caches"].push_back(
        {{"name", c.name}, {"level", c.level}, {"size_bytes", c.size_bytes}, {"count", c.count}});
  }
  for (const topology::NumaDomain& d : host.numa) {
    nlohmann::json cores = nlohmann::json::array();
    for (const topology::HostCore& c : d.cores)
      cores.push_back({{"index", c.index}, {"pus", c.pus}});
    j["numa"].push_back({{"index", d.index}, {"memory_bytes", d.memory_bytes}, {"cores", cores}});
  }
  return j;
}

void PrintHost(const HostSummary& host) {
  std::cout << "host: " << host.source << "\n"
            << "  " << host.packages << " package(s), " << host.numa_nodes << " NUMA node(s), "
            << host.cores << " core(s), " << host.pus << " PU(s)\n";
  std::cout << "  caches:";
  if (host.caches.empty()) std::cout << " none reported";
  for (size_t i = 0; i < host.caches.size(); ++i) {
    const topology::HostCache& c = host.caches[i];
    std::cout << (i ? ", " : " ") << c.name << " " << Bytes(c.size_bytes) << " x" << c.count;
  }
  std::cout << "\n";
  for (const topology::NumaDomain& d : host.numa) {
    std::vector<int> cores, pus;
    for (const topology::HostCore& c : d.cores) {
      cores.push_back(c.index);
      pus.insert(pus.end(), c.pus.begin(), c.pus.end());
    }
    std::sort(pus.begin(), pus.end());
    std::cout << "  numa " << d.index << ": "
              << (d.memory_bytes > 0 ? Bytes(d.memory_bytes) : "memory unknown") << ", "
              << d.cores.size() << " core(s) " << Ranges(cores) << " (PUs " << Ranges(pus) << ")\n";
  }
}

// Per domain: which nodes and chips, then "chips a-b -> core k" runs, wrapped.
void PrintPlacements(const topology::Topology& topo, const HostSummary& host,
                     const std::vector<ChipPlacement>& ps) {
  std::set<int> nodes_placed, spare_nodes;
  for (const ChipPlacement& p : ps) {
    nodes_placed.insert(topo.chip(p.chip).node);
    if (topo.chip(p.chip).spare) spare_nodes.insert(topo.chip(p.chip).node);
  }
  std::cout << "placement of " << topo.name() << ": " << ps.size() << " chips of "
            << nodes_placed.size() << " nodes (" << spare_nodes.size() << " spare) on "
            << host.cores << " core(s)\n";
  for (const topology::NumaDomain& d : host.numa) {
    std::vector<int> nodes, chips;
    std::vector<std::pair<int, std::vector<int>>> runs;  // core -> its chips, in chip order
    for (const ChipPlacement& p : ps) {
      if (p.numa != d.index) continue;
      const int node = topo.chip(p.chip).node;
      if (nodes.empty() || nodes.back() != node) nodes.push_back(node);
      chips.push_back(p.chip);
      if (runs.empty() || runs.back().first != p.core) runs.push_back({p.core, {}});
      runs.back().second.push_back(p.chip);
    }
    if (chips.empty()) continue;
    std::cout << "  numa " << d.index << ": nodes " << Ranges(nodes) << " = chips " << Ranges(chips)
              << " on " << d.cores.size() << " core(s)\n";
    std::string line = "   ";
    for (size_t i = 0; i < runs.size(); ++i) {
      std::string entry = " " + Ranges(runs[i].second) + " -> core " +
                          std::to_string(runs[i].first) + (i + 1 < runs.size() ? "," : "");
      if (line.size() + entry.size() > 96) {
        std::cout << line << "\n";
        line = "   ";
      }
      line += entry;
    }
    std::cout << line << "\n";
  }
}

int Run(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("topo host options");
  std::string synthetic, map_file;
  opts.add_options()("synthetic", po::value<std::string>(&synthetic),
                     "describe an hwloc synthetic host instead of this machine, e.g. "
                     "\"pack:2 numa:2 l3:1 core:4 pu:2\"")(
      "map-rack", "also show where the 72 chips of a default lpu-v1 rack would be pinned")(
      "map", po::value<std::string>(&map_file),
      "also show where the chips of this topology file would be pinned")(
      "no-spares", "with --map-rack or --map: leave the spare chips out");
  po::variables_map vm;
  if (!ParseOrHelp(
          args,
          "lockstep topo host [--synthetic DESC] [--map-rack | --map TOPOLOGY] [--no-spares] "
          "[--json]",
          opts, {}, vm)) {
    return 0;
  }
  const bool mapping = vm.count("map-rack") || vm.count("map");
  if (vm.count("map-rack") && vm.count("map")) {
    throw UsageError("--map-rack and --map exclude each other (see: lockstep topo host --help)");
  }
  if (vm.count("no-spares") && !mapping) {
    throw UsageError("--no-spares needs --map-rack or --map (see: lockstep topo host --help)");
  }
  const HostSummary host =
      vm.count("synthetic") ? topology::DiscoverSyntheticHost(synthetic) : topology::DiscoverHost();
  ctx.log->debug("host: {} cores, {} PUs from {}", host.cores, host.pus, host.source);

  std::vector<ChipPlacement> placements;
  topology::Topology rack;
  if (mapping) {
    rack = vm.count("map") ? topology::LoadTopology(map_file)
                           : topology::GenerateRack(topology::LpuV1());
    placements = topology::MapChipsToCores(rack, host, vm.count("no-spares") == 0);
  }
  if (ctx.json) {
    nlohmann::json j = HostJson(host);
    if (mapping) {
      j["placements"] = nlohmann::json::array();
      for (const ChipPlacement& p : placements) {
        const topology::Chip& chip = rack.chip(p.chip);
        j["placements"].push_back({{"chip", p.chip},
                                   {"node", chip.node},
                                   {"spare", chip.spare},
                                   {"numa", p.numa},
                                   {"core", p.core},
                                   {"pus", p.pus}});
      }
    }
    PrintJson(j);
    return 0;
  }
  PrintHost(host);
  if (mapping) PrintPlacements(rack, host, placements);
  return 0;
}

}  // namespace

Subcommand TopoHostSubcommand() {
  return {"host", "describe this host (or a synthetic one) and where chips would be pinned", Run};
}

}  // namespace lockstep::cli
