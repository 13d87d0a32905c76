#include "lockstep/topology/named.h"

#include "lockstep/topology/generators.h"
#include "lockstep/topology/io.h"

namespace lockstep::topology {

Topology NamedTopology(const std::string& arg, const ChipSpec& chip, int spare_nodes) {
  RackShape shape;
  shape.spare_nodes = spare_nodes;
  if (arg == "node") return GenerateNode(chip);
  if (arg == "rack") return GenerateRack(chip, shape);
  if (arg.rfind("racks:", 0) == 0) {
    int racks = 0;
    try {
      size_t used = 0;
      racks = std::stoi(arg.substr(6), &used);
      if (used != arg.size() - 6) racks = 0;
    } catch (const std::exception&) {
      racks = 0;
    }
    if (racks < 1) throw NameError("--topology racks:N needs a whole N >= 1, got '" + arg + "'");
    Topology t = GenerateSystem(chip, racks, shape);
    t.set_name(arg);
    return t;
  }
  return LoadTopology(arg);
}

}  // namespace lockstep::topology
