// Racks of fully connected nodes, and Dragonfly systems of racks (see generators.h).
#include <string>

#include "group_mesh.h"
#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"
#include "node_wiring.h"

namespace lockstep::topology {
namespace {

std::string Num(int64_t v) { return std::to_string(v); }

void CheckShape(const ChipSpec& chip, const RackShape& s, bool system) {
  if (s.chips_per_node < 1 || s.nodes < 1) {
    throw InvalidInput("rack: chips per node and nodes per rack must be >= 1");
  }
  if (s.spare_nodes < 0 || s.spare_nodes >= s.nodes) {
    throw InvalidInput("rack: spare nodes must be 0.." + Num(s.nodes - 1) + ", got " +
                       Num(s.spare_nodes));
  }
  const int needed = (s.chips_per_node - 1) + s.intra_rack_ports + (system ? s.inter_rack_ports : 0);
  if (needed > chip.ports) {
    throw InvalidInput("rack: each chip needs " + Num(s.chips_per_node - 1) + " local + " +
                       Num(s.intra_rack_ports) + " intra-rack" +
                       (system ? " + " + Num(s.inter_rack_ports) + " inter-rack" : "") +
                       " ports = " + Num(needed) + ", " + chip.name + " has " + Num(chip.ports));
  }
  const int slots = s.chips_per_node * s.intra_rack_ports;
  if (s.nodes > 1 && internal::LinksPerPair(s.nodes, slots) < 1) {
    throw InvalidInput("rack: " + Num(s.nodes) + " nodes need " + Num(s.nodes - 1) +
                       " global ports per node to join every other node, a node has " +
                       Num(slots) + " (" + Num(s.chips_per_node) + " chips x " +
                       Num(s.intra_rack_ports) + " intra-rack ports)");
  }
}

// Adds one rack's chips (ids continue from the topology's count) and its node and rack links.
void AddRack(Topology& topo, int spec, int rack, const RackShape& s) {
  const ChipId first = topo.chip_count();
  for (int n = 0; n < s.nodes; ++n) {
    const bool spare = n >= s.nodes - s.spare_nodes;
    for (int c = 0; c < s.chips_per_node; ++c) topo.AddChip(rack * s.nodes + n, rack, spare, spec);
  }
  for (int n = 0; n < s.nodes; ++n) internal::WireNode(topo, first + n * s.chips_per_node, s.chips_per_node);
  const int local_ports = s.chips_per_node - 1;
  const int slots = s.chips_per_node * s.intra_rack_ports;
  // Slot k of a node: port layer k / chips_per_node, and within a layer the chip is shifted by
  // half a node per layer so that the parallel links of one node pair land on different chips.
  auto slot_port = [&](int node, int slot) {
    const int layer = slot / s.chips_per_node;
    const int chip = (slot + layer * (s.chips_per_node / 2)) % s.chips_per_node;
    return PortRef{first + node * s.chips_per_node + chip, local_ports + layer};
  };
  internal::WireGroupMesh(topo, s.nodes, internal::LinksPerPair(s.nodes, slots), slot_port);
}

}  // namespace

Topology GenerateRack(const ChipSpec& chip, const RackShape& shape) {
  CheckShape(chip, shape, /*system=*/false);
  Topology topo("rack");
  int spec = topo.AddSpec(chip);
  AddRack(topo, spec, 0, shape);
  return topo;
}

int MaxSystemRacks(const ChipSpec& chip, const RackShape& shape) {
  (void)chip;
  return shape.chips_per_node * shape.nodes * shape.inter_rack_ports + 1;
}

Topology GenerateSystem(const ChipSpec& chip, int racks, const RackShape& shape) {
  CheckShape(chip, shape, /*system=*/true);
  const int chips_per_rack = shape.chips_per_node * shape.nodes;
  const int slots = chips_per_rack * shape.inter_rack_ports;
  if (racks < 1 || racks > MaxSystemRacks(chip, shape)) {
    throw InvalidInput("system: --racks must be 1.." + Num(MaxSystemRacks(chip, shape)) +
                       " (a rack has " + Num(slots) + " inter-rack ports: " +
                       Num(chips_per_rack) + " chips x " + Num(shape.inter_rack_ports) +
                       "), got " + Num(racks));
  }
  Topology topo("system" + Num(racks));
  int spec = topo.AddSpec(chip);
  for (int r = 0; r < racks; ++r) AddRack(topo, spec, r, shape);
  const int port_base = shape.chips_per_node - 1 + shape.intra_rack_ports;
  // Slot k of a rack: chip k mod chips_per_rack, port layer k / chips_per_rack.
  auto slot_port = [&](int rack, int slot) {
    return PortRef{rack * chips_per_rack + slot % chips_per_rack,
                   port_base + slot / chips_per_rack};
  };
  internal::WireGroupMesh(topo, racks, internal::LinksPerPair(racks, slots), slot_port);
  return topo;
}

}  // namespace lockstep::topology
