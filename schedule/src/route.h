// Minimal routes between chips: breadth first over Topology::Neighbors (ports in order), so the
// same topology always gives the same route. Private to schedule/ until topology/ has a Router.
#pragma once

#include <map>
#include <vector>

#include "lockstep/topology/topology.h"

namespace lockstep::schedule {

struct RouteHop {
  topology::LinkId link = 0;
  topology::ChipId from = 0;
  topology::ChipId to = 0;
};

class RouteCache {
 public:
  explicit RouteCache(const topology::Topology& topo) : topo_(topo) {}
  // The hops from `src` to `dst` (empty when equal). Throws Error (kCannotFit) when unreachable.
  std::vector<RouteHop> Route(topology::ChipId src, topology::ChipId dst);

 private:
  struct Parent {
    topology::ChipId chip = -1;
    topology::LinkId link = -1;
  };
  const topology::Topology& topo_;
  std::map<topology::ChipId, std::vector<Parent>> trees_;  // BFS tree per source
};

}  // namespace lockstep::schedule
