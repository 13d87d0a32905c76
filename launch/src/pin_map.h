// A pin map (`lockstep run --pin-map FILE`, RunConfig::pin_map): which CPUs each chip's worker is
// pinned to, instead of the default (the run's i-th chip on core i % cores of its host). The file
// is what `lockstep topo host --map TOPOLOGY --json` prints (its "placements": chip -> pus), made
// for this host or another and edited at will; only "chip" and "pus" are read. Private to the
// launch library.
//
// The interpretation a user expects from "pin chip c to these CPUs": every chip the run uses must
// have an entry, and every CPU named must be one this process may run on here (hwloc's view,
// cpusets and taskset included). A map that names a CPU this host lacks — typically one made for
// a bigger machine — stops the run before anything starts, naming the file, the chip, the CPU
// and the CPUs there are. Chips the run does not use may be absent or name anything.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lockstep/coordinator/deployment.h"
#include "lockstep/topology/host.h"

namespace lockstep::launch {

// chip -> CPUs. Throws Error (kNotFound / kInvalidInput) naming the file for an unreadable file
// or a malformed entry (no placements, a chip twice, an empty or negative CPU list).
std::map<int32_t, std::vector<int>> ReadPinMap(const std::string& path);

// Sets every chip's `cpus` from `map`. Throws Error (kInvalidInput) as explained above.
void ApplyPinMap(const std::map<int32_t, std::vector<int>>& map, const std::string& path,
                 const topology::HostSummary& host, coordinator::Deployment& deployment);

}  // namespace lockstep::launch
