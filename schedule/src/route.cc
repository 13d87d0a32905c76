#include "route.h"

#include <algorithm>
#include <deque>

#include "lockstep/common/error.h"

namespace lockstep::schedule {

std::vector<RouteHop> RouteCache::Route(topology::ChipId src, topology::ChipId dst) {
  if (src == dst) return {};
  auto it = trees_.find(src);
  if (it == trees_.end()) {
    std::vector<Parent> tree(static_cast<size_t>(topo_.chip_count()));
    std::vector<bool> seen(tree.size(), false);
    std::deque<topology::ChipId> queue{src};
    seen[static_cast<size_t>(src)] = true;
    while (!queue.empty()) {
      const topology::ChipId c = queue.front();
      queue.pop_front();
      for (const topology::Adjacent& a : topo_.Neighbors(c)) {
        if (seen[static_cast<size_t>(a.peer)]) continue;
        seen[static_cast<size_t>(a.peer)] = true;
        tree[static_cast<size_t>(a.peer)] = {c, a.link};
        queue.push_back(a.peer);
      }
    }
    it = trees_.emplace(src, std::move(tree)).first;
  }
  const std::vector<Parent>& tree = it->second;
  std::vector<RouteHop> hops;
  for (topology::ChipId c = dst; c != src;) {
    const Parent& p = tree[static_cast<size_t>(c)];
    if (p.chip < 0) {
      throw Error(ErrorCode::kCannotFit, "no route from chip " + std::to_string(src) + " to chip " +
                                             std::to_string(dst) + " on " + topo_.name() +
                                             " (links or chips down)");
    }
    hops.push_back({p.link, p.chip, c});
    c = p.chip;
  }
  std::reverse(hops.begin(), hops.end());
  return hops;
}

}  // namespace lockstep::schedule
