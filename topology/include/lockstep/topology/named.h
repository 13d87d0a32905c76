// A topology as users name it on a command line: "node" (8 chips), "rack" (9 nodes, `spare_nodes`
// of them spare), "racks:N" (a Dragonfly system of N such racks), or else the path of a topology
// file (then `chip` and `spare_nodes` are the file's). Shared by every command and daemon that
// takes --topology, so the spelling is one. Thread-safe; reads the file when given one.
#pragma once

#include <string>

#include "lockstep/common/error.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/topology.h"

namespace lockstep::topology {

// A built-in name spelled wrong ("racks:x"): the caller's command line is wrong, not a file.
class NameError : public Error {
 public:
  explicit NameError(const std::string& message) : Error(ErrorCode::kInvalidInput, message) {}
};

// NameError for a malformed built-in name; Error for an unreadable or invalid file.
Topology NamedTopology(const std::string& arg, const ChipSpec& chip, int spare_nodes);

// Help text for a --topology option.
inline constexpr const char* kTopologyHelp =
    "a topology file (lockstep topo generate), or node (8 chips), rack (9 nodes, 1 spare) or "
    "racks:N (a Dragonfly system)";

}  // namespace lockstep::topology
