// The `--topology` argument shared by plan, schedule, simulate and run: a topology file written
// by `lockstep topo generate` (or by hand), or a built-in shape by name.
#pragma once

#include <string>

#include "lockstep/topology/topology.h"

namespace lockstep::cli {

// "node" (8 chips), "rack" (9 nodes, `spare_nodes` of them spare), "racks:N" (a Dragonfly of N
// such racks), or else a path to a topology file (then `chip` and `spare_nodes` are the file's).
// Throws UsageError for a malformed name, lockstep::Error for an unreadable or invalid file.
topology::Topology ResolveTopology(const std::string& arg, const topology::ChipSpec& chip,
                                   int spare_nodes);

// Help text for the option.
inline constexpr const char* kTopologyHelp =
    "a topology file (lockstep topo generate), or node (8 chips), rack (9 nodes, 1 spare) or "
    "racks:N (a Dragonfly system)";

}  // namespace lockstep::cli
