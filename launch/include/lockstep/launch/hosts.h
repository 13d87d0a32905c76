// A run on the hosts of a hosts file (`lockstep deploy`, topology/HOSTS.md): the plan's chips
// mapped onto hosts and cores (coordinator::MapToHosts: a node's chips on one host or NUMA domain,
// neighbouring stages on neighbouring hosts, one chip per core unless shared cores are allowed,
// spares listed but not started), the RunConfig that starts each chip's worker on its host (this
// host directly, the others through `ssh -p PORT [USER@]ADDRESS`), and the pre-flight checks that
// run before any weight moves, each failing the run with its culprit named:
//   routes — the deployment's link table holds together (coordinator::CheckRoutes; before any
//            worker starts);
//   hosts  — every worker registered from the host the mapping put its chip on
//            (coordinator::CheckWorkerHosts; a stray worker is given a moment to show up first);
//   links  — every link opens to the expected chip and port, hellos exchanged
//            (Coordinator::CheckLinks).
// Thread-safety: one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/coordinator/host_map.h"
#include "lockstep/launch/launch.h"
#include "lockstep/topology/hosts_file.h"

namespace lockstep::launch {

struct HostPlacement {
  coordinator::HostMap map;
  std::string this_host;  // this machine's name: what workers on local hosts report
  bool all_local = true;  // every host of the file is this one
};

// Maps every chip with a program in the plan's schedule (forwarders too) onto `hosts`.
// Error(kCannotFit) when the hosts have too few cores and sharing is not allowed.
HostPlacement PlaceOnHosts(const RunInputs& inputs, int32_t slots, const topology::HostsFile& hosts,
                           bool allow_shared_cores);

struct HostLaunchOptions {
  std::string ssh_command = "ssh";  // run as CMD -p PORT [USER@]ADDRESS lockstep-worker ...
  std::string remote_worker;  // lockstep-worker's path on remote hosts; empty: the local one's
};

// Sets `config` to start each chip's worker process on its mapped host, pinned to its mapped
// core, its tcp links on its host's address (127.0.0.1 when every host is this one) and the tcp
// base port of the hosts file when the run gives none. ConfigError for an empty ssh command,
// Error naming the hosts file for two different tcp_base_ports, kNotFound for an ssh command that
// is not on PATH.
void ApplyPlacement(const HostPlacement& placement, const topology::HostsFile& hosts,
                    const HostLaunchOptions& options, RunConfig& config);

struct PreflightCheck {
  std::string check;  // routes, hosts, links
  int64_t ms = 0;
  std::string detail;  // "12 links between 8 chips", ...
};

struct Preflight {
  std::vector<PreflightCheck> checks;  // in the order they ran, every one passed
  int64_t register_ms = 0;             // starting the workers until every one registered
};

// Runs the routes check, starts the launch, runs the hosts and links checks. Error(kInvalidInput)
// "pre-flight CHECK check failed: ..." naming the first problem (and how many more).
Preflight StartWithPreflight(Launch& launch, const HostPlacement& placement,
                             const topology::HostsFile& hosts);

}  // namespace lockstep::launch
