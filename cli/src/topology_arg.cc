#include "topology_arg.h"

#include "command.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/io.h"

namespace lockstep::cli {

topology::Topology ResolveTopology(const std::string& arg, const topology::ChipSpec& chip,
                                   int spare_nodes) {
  topology::RackShape shape;
  shape.spare_nodes = spare_nodes;
  if (arg == "node") return topology::GenerateNode(chip);
  if (arg == "rack") return topology::GenerateRack(chip, shape);
  if (arg.rfind("racks:", 0) == 0) {
    int racks = 0;
    try {
      size_t used = 0;
      racks = std::stoi(arg.substr(6), &used);
      if (used != arg.size() - 6) racks = 0;
    } catch (const std::exception&) {
      racks = 0;
    }
    if (racks < 1) throw UsageError("--topology racks:N needs a whole N >= 1, got '" + arg + "'");
    topology::Topology t = topology::GenerateSystem(chip, racks, shape);
    t.set_name(arg);
    return t;
  }
  return topology::LoadTopology(arg);
}

}  // namespace lockstep::cli
