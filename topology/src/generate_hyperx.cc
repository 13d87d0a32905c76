// Racks of nodes wired as a 2-D HyperX (see generators.h): rows of racks, every node joined to
// its row and to its column, one link per node pair.
#include <string>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"
#include "node_wiring.h"

namespace lockstep::topology {
namespace {

std::string Num(int64_t v) { return std::to_string(v); }

// Links per node for `racks` racks in rows of k racks.
int NodeDegree(const RackShape& s, int racks, int k) {
  const int row_nodes = k * s.nodes;
  const int rows = (racks + k - 1) / k;
  return (row_nodes - 1) + (rows - 1);
}

int GlobalSlots(const ChipSpec& chip, const RackShape& s) {
  return s.chips_per_node * (chip.ports - (s.chips_per_node - 1));
}

// The smallest row width (in racks) whose node degree fits the node's global ports; 0 if none.
int RowWidth(const ChipSpec& chip, const RackShape& s, int racks) {
  for (int k = 1; k <= racks; ++k) {
    if (NodeDegree(s, racks, k) <= GlobalSlots(chip, s)) return k;
  }
  return 0;
}

}  // namespace

int MaxHyperXRacks(const ChipSpec& chip, const RackShape& shape) {
  int best = 0;
  // Degree grows with k (row) and with rows; for each k the largest R whose rows still fit.
  for (int k = 1; (k * shape.nodes - 1) <= GlobalSlots(chip, shape); ++k) {
    const int max_rows = GlobalSlots(chip, shape) - (k * shape.nodes - 1) + 1;
    best = std::max(best, k * max_rows);
  }
  return best;
}

Topology GenerateHyperX(const ChipSpec& chip, int racks, const RackShape& shape) {
  const RackShape& s = shape;
  if (s.chips_per_node < 1 || s.nodes < 1 || s.spare_nodes < 0 || s.spare_nodes >= s.nodes) {
    throw InvalidInput("hyperx: need chips per node >= 1, nodes >= 1 and spare nodes 0.." +
                       Num(s.nodes - 1));
  }
  if (s.chips_per_node - 1 >= chip.ports) {
    throw InvalidInput("hyperx: " + chip.name + " has " + Num(chip.ports) +
                       " ports, the node alone needs " + Num(s.chips_per_node - 1));
  }
  const int max_racks = MaxHyperXRacks(chip, s);
  if (racks < 1 || racks > max_racks) {
    throw InvalidInput("hyperx: --racks must be 1.." + Num(max_racks) + " (a node has " +
                       Num(GlobalSlots(chip, s)) + " global ports), got " + Num(racks));
  }
  const int k = RowWidth(chip, s, racks);
  const int row_nodes = k * s.nodes;
  const int nodes = racks * s.nodes;
  Topology topo("hyperx" + Num(racks));
  const int spec = topo.AddSpec(chip);
  for (int r = 0; r < racks; ++r) {
    for (int n = 0; n < s.nodes; ++n) {
      for (int c = 0; c < s.chips_per_node; ++c) {
        topo.AddChip(r * s.nodes + n, r, n >= s.nodes - s.spare_nodes, spec);
      }
    }
  }
  for (int n = 0; n < nodes; ++n) internal::WireNode(topo, n * s.chips_per_node, s.chips_per_node);

  // Node g sits in row g / row_nodes, column g % row_nodes. Each node hands out its global slots
  // in order; slot i is chip i % chips_per_node, port (chips_per_node - 1) + i / chips_per_node.
  std::vector<int> next_slot(nodes, 0);
  auto take = [&](int node) {
    const int slot = next_slot[node]++;
    return PortRef{node * s.chips_per_node + slot % s.chips_per_node,
                   s.chips_per_node - 1 + slot / s.chips_per_node};
  };
  for (int a = 0; a < nodes; ++a) {
    for (int b = a + 1; b < nodes; ++b) {
      const bool same_row = a / row_nodes == b / row_nodes;
      const bool same_column = a % row_nodes == b % row_nodes;
      if (!same_row && !same_column) continue;
      PortRef pa = take(a);
      PortRef pb = take(b);
      topo.AddLink(pa, pb);
    }
  }
  return topo;
}

}  // namespace lockstep::topology
