// Topology generators: the standard shapes, built deterministically from a few numbers.
// (GenerateHyperX, below, has its own port layout: local ports as here, all others global.)
//
// Chip ids are assigned rack by rack, node by node, chip by chip, so chip id =
// (rack * nodes_per_rack + node_in_rack) * chips_per_node + chip_in_node for node/rack/system.
// Port layout of a rack chip (lpu-v1, 16 ports):
//   0 .. chips_per_node-2   local links, fully connecting the node
//   next intra_rack_ports   global links joining the nodes of the rack (every node pair, the
//                           same number of links each)
//   next inter_rack_ports   global links joining racks in a system (every rack pair directly
//                           while ports allow)
// Remaining ports stay free. Each generator throws Error (kInvalidInput) for an impossible
// request (too few ports, zero chips) with the numbers that would work. Pure functions.
#pragma once

#include <string>
#include <vector>

#include "lockstep/topology/topology.h"

namespace lockstep::topology {

struct RackShape {
  int chips_per_node = 8;    // fully connected inside a node
  int nodes = 9;             // nodes per rack, including spares
  int spare_nodes = 1;       // the last `spare_nodes` nodes of each rack are spares
  int intra_rack_ports = 2;  // global ports per chip used to join the nodes of a rack
  int inter_rack_ports = 2;  // global ports per chip used to join racks (system only)
};

// n chips, fully connected. One node, one rack, no spares.
Topology GenerateNode(const ChipSpec& chip, int chips = 8);
// One rack: `shape.nodes` fully connected nodes, every pair of nodes joined by the same number
// of links (chips_per_node * intra_rack_ports / (nodes - 1)).
Topology GenerateRack(const ChipSpec& chip, const RackShape& shape = {});
// R racks in a Dragonfly: each rack as GenerateRack, every pair of racks joined directly by
// floor(rack inter-rack ports / (R - 1)) links. With lpu-v1 and the default shape a rack has
// 72 * 2 = 144 inter-rack ports, so at most 145 racks (10,440 chips).
Topology GenerateSystem(const ChipSpec& chip, int racks, const RackShape& shape = {});
// R racks whose nodes form a 2-D HyperX (a Hamming graph): racks are laid out in rows of k
// racks; every node is joined directly to every other node of its row (its own rack included)
// and to the node in the same position of every other row. Any two nodes are then at most two
// node-to-node links apart, so any two chips at most local + link + local + link + local = 5
// hops apart. It uses every port of the chip beyond the local ones (9 on lpu-v1: the 4 "global"
// links DESIGN.md names plus the 5 the Dragonfly leaves idle), which is what reaching 5 hops at
// 145 racks takes: with 4 global ports a node has 32 neighbours, and no graph of degree 32 and
// diameter 2 has more than 32^2 + 1 = 1025 vertices, fewer than 1,305 nodes. k is the smallest
// row width whose links fit the ports; links leave a node round-robin over its chips.
Topology GenerateHyperX(const ChipSpec& chip, int racks, const RackShape& shape = {});
// The largest number of racks GenerateHyperX accepts.
int MaxHyperXRacks(const ChipSpec& chip, const RackShape& shape = {});

// n chips in a ring (port 0 to the next chip, port 1 to the previous).
Topology GenerateRing(const ChipSpec& chip, int chips);
// width x height torus (ports 0/1: +x/-x, 2/3: +y/-y); a dimension of 2 gets one link per pair.
Topology GenerateTorus2d(const ChipSpec& chip, int width, int height);

// The largest number of racks GenerateSystem accepts for this chip and shape.
int MaxSystemRacks(const ChipSpec& chip, const RackShape& shape = {});

// Preset names accepted by `lockstep topo generate --preset`, in help order.
std::vector<std::string> GeneratorPresetNames();

}  // namespace lockstep::topology
