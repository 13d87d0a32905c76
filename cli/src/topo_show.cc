// `lockstep topo show` and `lockstep topo validate`: read a topology file and report on it.
#include <iostream>
#include <map>

#include "command.h"
#include "format.h"
#include "lockstep/common/error.h"
#include "lockstep/topology/io.h"
#include "lockstep/topology/routing.h"
#include "lockstep/topology/stats.h"

namespace lockstep::cli {
namespace {

using namespace lockstep::topology;

nlohmann::json StatsJson(const Topology& topo, const TopologyStats& s) {
  nlohmann::json specs = nlohmann::json::array();
  for (const ChipSpec& spec : topo.specs()) {
    nlohmann::json peak;
    for (Dtype d : kAllDtypes) {
      if (spec.peak_ops(d) > 0) peak[std::string(DtypeName(d))] = spec.peak_ops(d);
    }
    specs.push_back({{"name", spec.name},
                     {"sram_bytes", spec.sram_bytes},
                     {"peak_ops_per_s", peak},
                     {"memory_bandwidth_bytes_per_s", spec.memory_bandwidth_bytes_per_s},
                     {"clock_hz", spec.clock_hz},
                     {"ports", spec.ports},
                     {"link_bandwidth_bytes_per_s", spec.link_bandwidth_bytes_per_s},
                     {"link_latency_ns", spec.link_latency_ns}});
  }
  // Histogram of ports used per chip, ascending.
  std::map<int, int> port_use;
  for (const Chip& c : topo.chips()) ++port_use[topo.PortsUsed(c.id)];
  nlohmann::json hist = nlohmann::json::object();
  for (const auto& [used, count] : port_use) hist[std::to_string(used)] = count;
  return {{"name", topo.name()},
          {"chips", s.chips},
          {"chips_up", s.chips_up},
          {"spares", s.spares},
          {"nodes", s.nodes},
          {"racks", s.racks},
          {"links", s.links},
          {"links_up", s.links_up},
          {"ports_total", s.ports_total},
          {"ports_used", s.ports_used},
          {"max_ports_used", s.max_ports_used},
          {"chips_by_ports_used", hist},
          {"sram_bytes_total", s.sram_bytes_total},
          {"sram_bytes_working", s.sram_bytes_working},
          {"connected", s.connected},
          {"diameter_hops", s.diameter},
          {"average_hops", s.average_hops()},
          {"bisection_bytes_per_s", s.bisection_bytes_per_s},
          {"bisection_cut", s.bisection_cut},
          {"chip_specs", specs}};
}

void PrintStats(const std::string& file, const Topology& topo, const TopologyStats& s) {
  std::cout << file << ": " << topo.name() << "\n"
            << "  " << Label("chips") << s.chips << " (" << s.spares << " spare, "
            << s.chips - s.chips_up << " down) in " << s.nodes << " nodes, " << s.racks << " rack"
            << (s.racks == 1 ? "" : "s") << "\n"
            << "  " << Label("links") << s.links << " (" << s.links - s.links_up << " down)\n"
            << "  " << Label("ports used") << s.ports_used << " of " << s.ports_total
            << " (busiest chip: " << s.max_ports_used << ")\n"
            << "  " << Label("SRAM") << FormatBytes(s.sram_bytes_total) << " ("
            << FormatBytes(s.sram_bytes_working) << " without spares)\n"
            << "  " << Label("connected") << (s.connected ? "yes" : "NO") << "\n"
            << "  " << Label("diameter") << s.diameter << " hops\n";
  char avg[32];
  std::snprintf(avg, sizeof avg, "%.2f", s.average_hops());
  std::cout << "  " << Label("average hops") << avg << "\n"
            << "  " << Label("bisection (estimate)") << FormatRate(s.bisection_bytes_per_s)
            << " per direction (" << s.bisection_cut << ")\n";
  for (const ChipSpec& spec : topo.specs()) {
    std::cout << "  " << Label("chip " + spec.name) << FormatBytes(spec.sram_bytes) << " SRAM, "
              << spec.ports << " ports, links " << FormatRate(spec.link_bandwidth_bytes_per_s)
              << " / " << FormatNs(spec.link_latency_ns) << "\n";
  }
}

int RunShow(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string file;
  opts.add_options()("file", po::value<std::string>(&file)->required(), "topology file");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (!ParseOrHelp(args, "lockstep topo show FILE [--json]", opts, pos, vm)) return 0;
  Topology topo = LoadTopology(file);
  TopologyStats s = ComputeStats(topo);
  if (ctx.json) {
    nlohmann::json j = StatsJson(topo, s);
    j["file"] = file;
    PrintJson(j);
  } else {
    PrintStats(file, topo, s);
  }
  return 0;
}

// The first up chip that the first up chip cannot reach, as a message; empty when connected.
std::string FindUnreachable(const Topology& topo) {
  Router router(topo);
  ChipId first = -1;
  for (const Chip& c : topo.chips()) {
    if (c.down) continue;
    if (first < 0) {
      first = c.id;
    } else if (router.Distance(first, c.id) < 0) {
      return "chip " + std::to_string(c.id) + " cannot be reached from chip " +
             std::to_string(first);
    }
  }
  return {};
}

int RunValidate(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string file;
  opts.add_options()("file", po::value<std::string>(&file)->required(), "topology file")(
      "allow-disconnected", "accept chips that cannot reach each other");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (!ParseOrHelp(args, "lockstep topo validate FILE [--allow-disconnected] [--json]", opts, pos,
                   vm)) {
    return 0;
  }
  Topology topo = LoadTopology(file);
  std::string unreachable = FindUnreachable(topo);
  if (!unreachable.empty() && !vm.count("allow-disconnected")) {
    throw InvalidInput(file + ": not connected: " + unreachable +
                       " (mark the chip down, add links, or pass --allow-disconnected)");
  }
  if (ctx.json) {
    PrintJson({{"file", file},
               {"valid", true},
               {"chips", topo.chip_count()},
               {"links", topo.link_count()},
               {"connected", unreachable.empty()}});
  } else {
    std::cout << file << ": valid (" << topo.chip_count() << " chips, " << topo.link_count()
              << " links" << (unreachable.empty() ? "" : "; not connected: " + unreachable)
              << ")\n";
  }
  return 0;
}

}  // namespace

Subcommand TopoShowSubcommand() {
  return {"show", "counts, diameter, bisection, spares and port use of a topology file", RunShow};
}

Subcommand TopoValidateSubcommand() {
  return {"validate", "check a topology file; errors name file, line and field", RunValidate};
}

}  // namespace lockstep::cli
