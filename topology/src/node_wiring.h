// Fully connecting the chips of one node. Private to topology/.
#pragma once

#include "lockstep/topology/topology.h"

namespace lockstep::topology::internal {

// Joins chips first .. first+chips-1 pairwise over ports 0 .. chips-2.
void WireNode(Topology& topo, ChipId first, int chips);

}  // namespace lockstep::topology::internal
