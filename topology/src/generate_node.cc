// The fully connected node: chip i's port p leads to the p-th other chip in id order.
#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"
#include "node_wiring.h"

namespace lockstep::topology {

namespace internal {

void WireNode(Topology& topo, ChipId first, int chips) {
  for (int i = 0; i < chips; ++i) {
    for (int j = i + 1; j < chips; ++j) {
      // On chip i, chip j is the (j-1)-th other chip; on chip j, chip i is the i-th.
      topo.AddLink(PortRef{first + i, j - 1}, PortRef{first + j, i});
    }
  }
}

}  // namespace internal

Topology GenerateNode(const ChipSpec& chip, int chips) {
  if (chips < 1) throw InvalidInput("node: --chips must be >= 1, got " + std::to_string(chips));
  if (chips - 1 > chip.ports) {
    throw InvalidInput("node: " + std::to_string(chips) + " fully connected chips need " +
                       std::to_string(chips - 1) + " ports each, " + chip.name + " has " +
                       std::to_string(chip.ports) + " (at most " + std::to_string(chip.ports + 1) +
                       " chips)");
  }
  Topology topo("node" + std::to_string(chips));
  int spec = topo.AddSpec(chip);
  for (int i = 0; i < chips; ++i) topo.AddChip(0, 0, false, spec);
  internal::WireNode(topo, 0, chips);
  return topo;
}

std::vector<std::string> GeneratorPresetNames() {
  return {"node", "rack", "system", "hyperx", "ring", "torus2d"};
}

}  // namespace lockstep::topology
