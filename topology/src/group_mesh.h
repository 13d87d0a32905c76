// Wiring every pair of groups (nodes of a rack, racks of a system) directly, with the same
// number of links per pair, from a fixed pool of port "slots" per group. Private to topology/.
#pragma once

#include <functional>

#include "lockstep/topology/topology.h"

namespace lockstep::topology::internal {

// Each of `groups` groups owns `slots` port slots; `slot_port(group, slot)` says which chip:port
// slot `slot` of `group` is. Joins every pair of groups with links_per_pair links. Link l
// between groups x and y uses slot l * (groups - 1) + (index of y among x's partners) on x's
// side and the mirror on y's: interleaving by l spreads one pair's links over many chips.
// Requires links_per_pair * (groups - 1) <= slots.
void WireGroupMesh(Topology& topo, int groups, int links_per_pair,
                   const std::function<PortRef(int group, int slot)>& slot_port);

// Links per pair the pool allows: slots / (groups - 1), or 0 for a single group.
int LinksPerPair(int groups, int slots);

}  // namespace lockstep::topology::internal
