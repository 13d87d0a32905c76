// Pre-flight checks of `lockstep deploy`: run after the workers registered and before any weight
// moves, so a miswired deployment fails in seconds with the culprit named, not mid-load.
//
//   CheckWorkerHosts — every registered worker asked for a chip the mapping starts, no chip has
//     two workers, and each worker's host (the hostname it registered with) is the host the
//     mapping put its chip on: "chip 3: worker pid 812 registered from host 'alpha', but the
//     mapping puts chip 3 on host beta (10.0.0.2)".
//   CheckRoutes — the deployment's link table holds together: every link a chip's program uses
//     exists in the topology, is up, joins the ports it names, and leads to a chip that is
//     deployed and uses the same link (so the forwarding chips of each routed hop exist and are
//     linked as planned).
//   Coordinator::CheckLinks (coordinator.h) — the workers open their links and exchange hellos
//     naming chip and port; any mismatch is named by chip and port.
//
// Pure functions of their inputs; each returns the problems found, in chip order (empty: pass).
#pragma once

#include <string>
#include <vector>

#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/coordinator/host_map.h"
#include "lockstep/topology/hosts_file.h"
#include "lockstep/topology/topology.h"

namespace lockstep::coordinator {

// `this_hostname`: the coordinator's host, which is what workers of local hosts (127.0.0.1,
// localhost) report.
std::vector<std::string> CheckWorkerHosts(const std::vector<WorkerInfo>& workers,
                                          const HostMap& map, const topology::HostsFile& hosts,
                                          const std::string& this_hostname);

std::vector<std::string> CheckRoutes(const Deployment& deployment, const topology::Topology& topo);

}  // namespace lockstep::coordinator
