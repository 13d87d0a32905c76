// Stage-to-stage routes for the compiler: topology::Router's deterministic minimal routes
// (fewest hops, smallest chip ids, lowest ports), remembered per (src, dst) pair because the
// compiler asks for the same few pairs for every token and sequence.
#pragma once

#include <map>
#include <utility>
#include <vector>

#include "lockstep/topology/routing.h"
#include "lockstep/topology/topology.h"

namespace lockstep::schedule {

struct RouteHop {
  topology::LinkId link = 0;
  topology::ChipId from = 0;
  topology::ChipId to = 0;
};

class RouteCache {
 public:
  explicit RouteCache(const topology::Topology& topo) : topo_(topo), router_(topo) {}
  // The hops from `src` to `dst` (empty when equal), valid as long as the cache. Throws Error
  // (kCannotFit) when unreachable.
  const std::vector<RouteHop>& Route(topology::ChipId src, topology::ChipId dst);

 private:
  const topology::Topology& topo_;
  topology::Router router_;
  std::map<std::pair<topology::ChipId, topology::ChipId>, std::vector<RouteHop>> routes_;
  const std::vector<RouteHop> none_;
};

}  // namespace lockstep::schedule
