// Where a deployment's chips run: chips -> hosts (from a hosts file) and cores. A pure,
// deterministic function of the used chips, the topology and the hosts file (no I/O, no clock):
// the same inputs always give the same mapping.
//
// The rule, in order:
//   1. The unit is a topology node: the chips of one node go to one NUMA domain of one host
//      (a host with `numa_nodes: N` is N domains, its cores split evenly in order). Nodes talk
//      most inside themselves.
//   2. Nodes go in pipeline order (the lowest stage among their chips, then node index;
//      forwarding-only nodes last) into the domains in hosts-file order, filling a domain
//      before the next, so neighbouring stages land on the same or the next host. A node
//      that does not fit in what is left of a domain starts the next one. When the plan only
//      fits by cutting nodes across domains, nodes are cut, and a note says which.
//   3. One chip per core. A host with fewer cores than chips gets chips doubled up on cores only
//      when `allow_shared_cores` (each domain then takes chips in proportion to its cores, and a
//      note says how many per core); otherwise Error(kCannotFit) naming how many chips and cores
//      are missing.
//   4. Spares (the topology's spare chips the plan does not use) are mapped too, after the used
//      chips, onto what is left (or shared cores): they are listed, never started.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/topology/hosts_file.h"
#include "lockstep/topology/topology.h"

namespace lockstep::coordinator {

// A chip the deployment starts a worker for.
struct UsedChip {
  topology::ChipId chip = 0;
  int stage = -1;  // -1: forwards only
  int rank = -1;
};

struct ChipOnHost {
  topology::ChipId chip = 0;
  int host = 0;  // index into the hosts file's hosts
  int numa = 0;  // domain index within the host
  int core = 0;  // core index within the host (0 .. cores-1)
  int node = 0;  // topology node
  int stage = -1;
  int rank = -1;
  bool spare = false;        // mapped, not started
  bool shared_core = false;  // another chip of this host uses the same core
};

struct HostMap {
  std::vector<ChipOnHost> chips;   // the used chips, by chip id
  std::vector<ChipOnHost> spares;  // by chip id
  std::vector<std::string> notes;  // cut nodes, shared cores: what the user should know
  const ChipOnHost* Find(topology::ChipId chip) const;  // used chips only; null if absent
};

struct HostMapOptions {
  // Allow more chips than cores on a host (several workers share a core): slower, but lets a
  // big plan run on a small machine. Off by default: a plan that does not fit is an error.
  bool allow_shared_cores = false;
};

// Throws Error(kInvalidInput) for a used chip outside `topo`, Error(kCannotFit) when the hosts
// have fewer cores than the used chips and sharing is not allowed ("the plan starts 72 workers,
// the hosts in FILE have 64 cores: 8 cores missing").
HostMap MapToHosts(const std::vector<UsedChip>& used, const topology::Topology& topo,
                   const topology::HostsFile& hosts, const HostMapOptions& options = {});

}  // namespace lockstep::coordinator
