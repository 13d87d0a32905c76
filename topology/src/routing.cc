#include "lockstep/topology/routing.h"

#include <algorithm>
#include <limits>

#include "lockstep/common/error.h"

namespace lockstep::topology {

Router::Router(const Topology& topo) : topo_(topo) {
  const int n = topo.chip_count();
  offsets_.assign(n + 1, 0);
  for (ChipId c = 0; c < n; ++c) {
    std::vector<Adjacent> adj = topo.Neighbors(c);
    std::vector<Edge> mine;
    mine.reserve(adj.size());
    for (const Adjacent& a : adj) mine.push_back(Edge{a.peer, a.port, a.link});
    std::sort(mine.begin(), mine.end(), [](const Edge& x, const Edge& y) {
      return x.peer != y.peer ? x.peer < y.peer : x.port < y.port;
    });
    edges_.insert(edges_.end(), mine.begin(), mine.end());
    offsets_[c + 1] = static_cast<int>(edges_.size());
  }
  stamp_src_.assign(n, 0);
  stamp_dst_.assign(n, 0);
  stamp_on_path_.assign(n, 0);
  dist_src_.assign(n, 0);
  dist_dst_.assign(n, 0);
}

void Router::CheckChip(ChipId c) const {
  if (!topo_.has_chip(c)) {
    throw InvalidInput("unknown chip " + std::to_string(c) + " (chips are 0.." +
                       std::to_string(topo_.chip_count() - 1) + ")");
  }
}

int Router::Search(ChipId src, ChipId dst) {
  ++query_;
  if (query_ == 0) {  // stamp wrapped: clear once every 4 billion queries
    std::fill(stamp_src_.begin(), stamp_src_.end(), 0);
    std::fill(stamp_dst_.begin(), stamp_dst_.end(), 0);
    std::fill(stamp_on_path_.begin(), stamp_on_path_.end(), 0);
    query_ = 1;
  }
  order_src_.clear();
  order_dst_.clear();
  radius_src_ = radius_dst_ = 0;
  if (topo_.chip(src).down || topo_.chip(dst).down) return -1;
  stamp_src_[src] = query_;
  dist_src_[src] = 0;
  order_src_.push_back(src);
  stamp_dst_[dst] = query_;
  dist_dst_[dst] = 0;
  order_dst_.push_back(dst);
  if (src == dst) return 0;

  // Level-synchronous search from both ends; always grow the side whose frontier is smaller
  // (ties: the source side), so both balls stay about half the distance deep.
  size_t src_level_begin = 0, dst_level_begin = 0;
  while (true) {
    const size_t src_frontier = order_src_.size() - src_level_begin;
    const size_t dst_frontier = order_dst_.size() - dst_level_begin;
    if (src_frontier == 0 || dst_frontier == 0) return -1;
    const bool grow_src = src_frontier <= dst_frontier;
    auto& order = grow_src ? order_src_ : order_dst_;
    auto& stamp = grow_src ? stamp_src_ : stamp_dst_;
    auto& dist = grow_src ? dist_src_ : dist_dst_;
    const auto& other_stamp = grow_src ? stamp_dst_ : stamp_src_;
    const auto& other_dist = grow_src ? dist_dst_ : dist_src_;
    size_t& level_begin = grow_src ? src_level_begin : dst_level_begin;
    int& radius = grow_src ? radius_src_ : radius_dst_;

    const size_t level_end = order.size();
    const int next = radius + 1;
    int best = std::numeric_limits<int>::max();
    for (size_t i = level_begin; i < level_end; ++i) {
      const ChipId c = order[i];
      for (int e = offsets_[c]; e < offsets_[c + 1]; ++e) {
        const ChipId p = edges_[e].peer;
        if (stamp[p] == query_) continue;
        stamp[p] = query_;
        dist[p] = next;
        order.push_back(p);
        if (other_stamp[p] == query_) best = std::min(best, next + other_dist[p]);
      }
    }
    level_begin = level_end;
    radius = next;
    if (best != std::numeric_limits<int>::max()) return best;
  }
}

int Router::Distance(ChipId src, ChipId dst) {
  CheckChip(src);
  CheckChip(dst);
  return Search(src, dst);
}

std::optional<Route> Router::FindRoute(ChipId src, ChipId dst) {
  CheckChip(src);
  CheckChip(dst);
  const int d = Search(src, dst);
  if (d < 0) return std::nullopt;

  // Layer k* of the minimal paths is where the source ball ends: the chips at distance k* from
  // src and d - k* from dst. Walking back through the source ball marks every chip at
  // distance k < k* that leads into the marked layer above it.
  const int k_star = std::min(radius_src_, d);
  auto src_dist = [&](ChipId c) { return stamp_src_[c] == query_ ? dist_src_[c] : -1; };
  auto dst_dist = [&](ChipId c) { return stamp_dst_[c] == query_ ? dist_dst_[c] : -1; };
  for (auto it = order_src_.rbegin(); it != order_src_.rend(); ++it) {
    const ChipId c = *it;
    const int k = dist_src_[c];
    if (k > k_star) continue;
    bool on_path = false;
    if (k == k_star) {
      on_path = dst_dist(c) == d - k_star;
    } else {
      for (int e = offsets_[c]; e < offsets_[c + 1] && !on_path; ++e) {
        const ChipId p = edges_[e].peer;
        on_path = stamp_on_path_[p] == query_ && src_dist(p) == k + 1;
      }
    }
    if (on_path) stamp_on_path_[c] = query_;
  }

  // Greedy walk: at each step the smallest-id next chip that is still on a minimal path
  // (edges are sorted by peer then port, so the first match is also the lowest port).
  Route route;
  route.src = src;
  route.dst = dst;
  route.chips.push_back(src);
  route.bottleneck_bandwidth_bytes_per_s = d == 0 ? 0 : std::numeric_limits<int64_t>::max();
  ChipId c = src;
  for (int k = 0; k < d; ++k) {
    const Edge* chosen = nullptr;
    for (int e = offsets_[c]; e < offsets_[c + 1]; ++e) {
      const ChipId p = edges_[e].peer;
      const bool ok = k + 1 <= k_star ? stamp_on_path_[p] == query_ && src_dist(p) == k + 1
                                      : dst_dist(p) == d - k - 1;
      if (ok) {
        chosen = &edges_[e];
        break;
      }
    }
    if (chosen == nullptr) {
      throw Error(ErrorCode::kInternal, "router lost the minimal path from chip " +
                                            std::to_string(src) + " to chip " +
                                            std::to_string(dst) + " at hop " + std::to_string(k));
    }
    const Link& l = topo_.link(chosen->link);
    Hop hop;
    hop.link = l.id;
    hop.from = PortRef{c, chosen->port};
    hop.to = l.Peer(c);
    route.hops.push_back(hop);
    route.latency_ns += l.latency_ns;
    route.bottleneck_bandwidth_bytes_per_s =
        std::min(route.bottleneck_bandwidth_bytes_per_s, l.bandwidth_bytes_per_s);
    c = chosen->peer;
    route.chips.push_back(c);
  }
  return route;
}

}  // namespace lockstep::topology
