// All-reduce over whole fully connected nodes (strategies.h): reduce-scatter inside each node,
// an exchange of node sums across nodes, all-gather inside each node.
#include <map>

#include "strategies.h"

namespace lockstep::schedule {
void AllReduceHierarchical(PassBuilder& b, const std::vector<ChipId>& chips, RankDeps& data,
                           int64_t bytes, int64_t overhead) {
  const topology::Topology& topo = b.topology();
  const size_t g = chips.size();
  size_t n = 1;  // ranks per node: the run in rank 0's node (HierarchicalNodeSize checked it)
  while (n < g && topo.chip(chips[n]).node == topo.chip(chips[0]).node) ++n;
  const int64_t segment = (bytes + static_cast<int64_t>(n) - 1) / static_cast<int64_t>(n);
  // Inside the node: node peers r+1, r+2, ... (wrapping within the node).
  auto in_node = [&](size_t r) {
    std::vector<size_t> out;
    const size_t first = r / n * n;
    for (size_t k = 1; k < n; ++k) out.push_back(first + (r - first + k) % n);
    return out;
  };
  // Across: the ranks of the same place in the following nodes (wrapping).
  auto across = [&](size_t r) {
    std::vector<size_t> out;
    for (size_t k = n; k < g; k += n) out.push_back((r + k) % g);
    return out;
  };
  auto direct = [&](Tag tag) {
    return [&b, &chips, segment, tag](size_t r, size_t j, const Deps& deps) {
      return b.Transfer(chips[r], deps, chips[j], segment, tag);
    };
  };
  // Across, each message takes the link joining the two nodes nearest both ends (fewest hops
  // in all), of those the one fewest messages have taken yet, then the first in rank order:
  // the minimal routes alone would all cross on the lowest-numbered link. The topology alone
  // decides, so every pass crosses the same way.
  std::map<std::pair<size_t, size_t>, std::vector<RouteHop>> joins;  // (node, node) -> links
  for (size_t u = 0; u < g; ++u) {
    for (const topology::Adjacent& adj : topo.Neighbors(chips[u])) {
      for (size_t v = 0; v < g; ++v) {
        if (chips[v] == adj.peer && v / n != u / n) {
          joins[{u / n, v / n}].push_back({adj.link, chips[u], chips[v]});
        }
      }
    }
  }
  std::map<std::pair<topology::LinkId, ChipId>, int> taken;  // (link, from) -> messages
  auto spread = [&](size_t r, size_t j, const Deps& deps) {
    auto it = joins.find({r / n, j / n});
    if (it == joins.end()) return b.Transfer(chips[r], deps, chips[j], segment, Tag::kAllReduce);
    const RouteHop* best = nullptr;
    int best_hops = 0;
    for (const RouteHop& x : it->second) {
      const int hops = b.Hops(chips[r], x.from) + 1 + b.Hops(x.to, chips[j]);
      if (best == nullptr || hops < best_hops ||
          (hops == best_hops && taken[{x.link, x.from}] < taken[{best->link, best->from}])) {
        best = &x;
        best_hops = hops;
      }
    }
    ++taken[{best->link, best->from}];
    return b.TransferVia(chips[r], deps, *best, chips[j], segment, Tag::kAllReduce);
  };
  ExchangeStep(b, chips, data, Tag::kReduceScatter, overhead, in_node, direct(Tag::kReduceScatter));
  ExchangeStep(b, chips, data, Tag::kAllReduce, overhead, across, spread);
  ExchangeStep(b, chips, data, Tag::kAllGather, overhead, in_node, direct(Tag::kAllGather));
}

}  // namespace lockstep::schedule
