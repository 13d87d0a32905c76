// `lockstep topo route FILE SRC DST`: the deterministic minimal route between two chips.
#include <iostream>

#include "command.h"
#include "format.h"
#include "lockstep/common/error.h"
#include "lockstep/topology/io.h"
#include "lockstep/topology/routing.h"

namespace lockstep::cli {
namespace {

using namespace lockstep::topology;

// "A:P" -> PortRef; UsageError naming the option otherwise.
PortRef ParsePortRef(const std::string& option, const std::string& text) {
  size_t colon = text.find(':');
  try {
    size_t used_chip = 0, used_port = 0;
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    int chip = std::stoi(text.substr(0, colon), &used_chip);
    int port = std::stoi(text.substr(colon + 1), &used_port);
    if (used_chip != colon || used_port != text.size() - colon - 1) {
      throw std::invalid_argument("trailing text");
    }
    return PortRef{chip, port};
  } catch (const std::logic_error&) {
    throw UsageError(option + ": expected CHIP:PORT like 3:7, got '" + text + "'");
  }
}

int Run(const std::vector<std::string>& args, Context& ctx) {
  po::options_description opts("options");
  std::string file;
  ChipId src = 0, dst = 0;
  std::vector<ChipId> down_chips;
  std::vector<std::string> down_links;
  opts.add_options()("file", po::value<std::string>(&file)->required(), "topology file")(
      "src", po::value<ChipId>(&src)->required(), "source chip id")(
      "dst", po::value<ChipId>(&dst)->required(), "destination chip id")(
      "down-chip", po::value<std::vector<ChipId>>(&down_chips)->composing(),
      "treat this chip as failed (repeatable)")(
      "down-link", po::value<std::vector<std::string>>(&down_links)->composing(),
      "treat the link on CHIP:PORT as failed (repeatable)");
  po::positional_options_description pos;
  pos.add("file", 1).add("src", 1).add("dst", 1);
  po::variables_map vm;
  if (!ParseOrHelp(args,
                   "lockstep topo route FILE SRC DST [--down-chip C]... [--down-link C:P]... "
                   "[--json]",
                   opts, pos, vm)) {
    return 0;
  }
  Topology topo = LoadTopology(file);
  for (ChipId c : down_chips) {
    if (!topo.has_chip(c)) {
      throw InvalidInput("--down-chip: unknown chip " + std::to_string(c) + " (chips are 0.." +
                         std::to_string(topo.chip_count() - 1) + ")");
    }
    topo.SetChipDown(c);
  }
  for (const std::string& text : down_links) {
    PortRef p = ParsePortRef("--down-link", text);
    std::optional<LinkId> l = topo.LinkAt(p);
    if (!l) throw InvalidInput("--down-link: no link on " + DescribePort(p) + " in " + file);
    topo.SetLinkDown(*l);
  }
  Router router(topo);
  std::optional<Route> route = router.FindRoute(src, dst);
  if (!route) {
    std::string why = topo.chip(src).down   ? " (chip " + std::to_string(src) + " is down)"
                      : topo.chip(dst).down ? " (chip " + std::to_string(dst) + " is down)"
                                            : " (no path over links that are up)";
    throw Error(ErrorCode::kNotFound, "no route from chip " + std::to_string(src) + " to chip " +
                                          std::to_string(dst) + why);
  }
  if (ctx.json) {
    nlohmann::json hops = nlohmann::json::array();
    for (const Hop& h : route->hops) {
      hops.push_back(
          {{"link", h.link}, {"from", FormatPortRef(h.from)}, {"to", FormatPortRef(h.to)}});
    }
    PrintJson({{"src", src},
               {"dst", dst},
               {"hops", route->hop_count()},
               {"path", route->chips},
               {"links", hops},
               {"latency_ns", route->latency_ns},
               {"bottleneck_bandwidth_bytes_per_s", route->bottleneck_bandwidth_bytes_per_s}});
    return 0;
  }
  std::cout << "route chip " << src << " -> chip " << dst << ": " << route->hop_count() << " hop"
            << (route->hop_count() == 1 ? "" : "s") << ", latency " << FormatNs(route->latency_ns)
            << ", bottleneck " << FormatRate(route->bottleneck_bandwidth_bytes_per_s) << "\n";
  for (const Hop& h : route->hops) {
    const Chip& from = topo.chip(h.from.chip);
    const Chip& to = topo.chip(h.to.chip);
    std::cout << "  " << FormatPortRef(h.from) << " -> " << FormatPortRef(h.to) << "   (node "
              << from.node << " -> node " << to.node
              << (from.rack != to.rack ? ", rack " + std::to_string(from.rack) + " -> rack " +
                                             std::to_string(to.rack)
                                       : "")
              << ")\n";
  }
  return 0;
}

}  // namespace

Subcommand TopoRouteSubcommand() {
  return {"route", "minimal deterministic route between two chips: hops, latency, bandwidth", Run};
}

}  // namespace lockstep::cli
