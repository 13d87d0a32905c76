// `lockstep topo generate`: write a standard topology (node, rack, system, ring, torus2d).
#include <iostream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/io.h"

namespace lockstep::cli {
namespace {

constexpr const char* kUsage =
    "lockstep topo generate --preset node|rack|system|hyperx|ring|torus2d [--racks R] "
    "[--chip lpu-v1] -o FILE";

int Run(const std::vector<std::string>& args, Context& ctx) {
  using namespace lockstep::topology;
  po::options_description opts("options");
  std::string preset, chip_name, out, name;
  int racks = 0, chips = 0, width = 0, height = 0;
  RackShape shape;
  opts.add_options()("preset", po::value<std::string>(&preset)->required(),
                     "node (chips fully connected), rack (nodes of a rack, one spare node), "
                     "system (Dragonfly of racks: 4 global ports per chip, 7 hops across 145 "
                     "racks), hyperx (racks as a 2-D HyperX of nodes: all 16 ports, at most 5 "
                     "hops), ring, torus2d")("output,o", po::value<std::string>(&out)->required(),
                                             "topology file to write (YAML)")(
      "chip", po::value<std::string>(&chip_name)->default_value("lpu-v1"), "chip preset")(
      "racks", po::value<int>(&racks)->default_value(8), "system and hyperx: number of racks")(
      "chips", po::value<int>(&chips)->default_value(8), "node and ring: number of chips")(
      "width", po::value<int>(&width)->default_value(4), "torus2d: chips along x")(
      "height", po::value<int>(&height)->default_value(4), "torus2d: chips along y")(
      "chips-per-node", po::value<int>(&shape.chips_per_node)->default_value(8),
      "rack/system: chips per fully connected node")(
      "nodes", po::value<int>(&shape.nodes)->default_value(9),
      "rack/system: nodes per rack, spares included")(
      "spare-nodes", po::value<int>(&shape.spare_nodes)->default_value(1),
      "rack/system: spare nodes per rack (the last ones)")(
      "intra-rack-ports", po::value<int>(&shape.intra_rack_ports)->default_value(2),
      "rack/system: ports per chip joining the nodes of a rack")(
      "inter-rack-ports", po::value<int>(&shape.inter_rack_ports)->default_value(2),
      "system: ports per chip joining racks")("name", po::value<std::string>(&name),
                                              "topology name (default: from the preset)");
  po::variables_map vm;
  if (!ParseOrHelp(args, kUsage, opts, {}, vm)) return 0;

  std::optional<ChipSpec> chip = ChipPreset(chip_name);
  if (!chip) {
    std::string valid;
    for (const std::string& n : ChipPresetNames()) valid += (valid.empty() ? "" : ", ") + n;
    throw UsageError("--chip: unknown chip preset '" + chip_name + "' (valid: " + valid + ")");
  }
  Topology topo;
  if (preset == "node") {
    topo = GenerateNode(*chip, chips);
  } else if (preset == "rack") {
    topo = GenerateRack(*chip, shape);
  } else if (preset == "system") {
    topo = GenerateSystem(*chip, racks, shape);
  } else if (preset == "hyperx") {
    topo = GenerateHyperX(*chip, racks, shape);
  } else if (preset == "ring") {
    topo = GenerateRing(*chip, chips);
  } else if (preset == "torus2d") {
    topo = GenerateTorus2d(*chip, width, height);
  } else {
    std::string valid;
    for (const std::string& n : GeneratorPresetNames()) valid += (valid.empty() ? "" : ", ") + n;
    throw UsageError("--preset: unknown preset '" + preset + "' (valid: " + valid + ")");
  }
  if (!name.empty()) topo.set_name(name);
  ctx.log->debug("generated {}: {} chips, {} links", topo.name(), topo.chip_count(),
                 topo.link_count());
  SaveTopology(topo, out);
  if (ctx.json) {
    PrintJson({{"file", out},
               {"name", topo.name()},
               {"chips", topo.chip_count()},
               {"links", topo.link_count()},
               {"spares", topo.spare_count()},
               {"nodes", topo.node_count()},
               {"racks", topo.rack_count()}});
  } else {
    std::cout << "wrote " << out << ": " << topo.name() << ", " << topo.chip_count() << " chips ("
              << topo.spare_count() << " spare), " << topo.link_count() << " links\n";
  }
  return 0;
}

}  // namespace

Subcommand TopoGenerateSubcommand() {
  return {"generate", "write a standard topology: node, rack, system, ring, torus2d", Run};
}

}  // namespace lockstep::cli
