#include "route.h"

#include "lockstep/common/error.h"

namespace lockstep::schedule {

const std::vector<RouteHop>& RouteCache::Route(topology::ChipId src, topology::ChipId dst) {
  if (src == dst) return none_;
  auto it = routes_.find({src, dst});
  if (it != routes_.end()) return it->second;
  std::optional<topology::Route> route = router_.FindRoute(src, dst);
  if (!route) {
    throw Error(ErrorCode::kCannotFit, "no route from chip " + std::to_string(src) + " to chip " +
                                           std::to_string(dst) + " on " + topo_.name() +
                                           " (links or chips down)");
  }
  std::vector<RouteHop> hops;
  for (const topology::Hop& h : route->hops) hops.push_back({h.link, h.from.chip, h.to.chip});
  return routes_.emplace(std::make_pair(src, dst), std::move(hops)).first->second;
}

}  // namespace lockstep::schedule
