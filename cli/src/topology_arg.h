// The `--topology` argument shared by plan, schedule, simulate and run: a topology file written
// by `lockstep topo generate` (or by hand), or a built-in shape by name. The spelling lives in the
// topology library (topology/named.h), which the daemons share; here a misspelt name is a usage
// error (exit 2).
#pragma once

#include <string>

#include "command.h"
#include "lockstep/topology/named.h"

namespace lockstep::cli {

using topology::kTopologyHelp;

// topology::NamedTopology, with a malformed name as UsageError.
inline topology::Topology ResolveTopology(const std::string& arg, const topology::ChipSpec& chip,
                                          int spare_nodes) {
  try {
    return topology::NamedTopology(arg, chip, spare_nodes);
  } catch (const topology::NameError& e) {
    throw UsageError(e.what());
  }
}

}  // namespace lockstep::cli
