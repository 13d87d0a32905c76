// A stage's activation to the next stage across few links (strategies.h: RelayActivations).
#include <algorithm>
#include <map>

#include "strategies.h"

namespace lockstep::schedule {

void RelayActivations(PassBuilder& b, const std::vector<ChipId>& from, size_t active,
                      const std::vector<ChipId>& to, RankDeps& data, int64_t bytes, Tag tag) {
  const topology::Topology& topo = b.topology();
  std::vector<size_t> used(active, 0);  // transfers each sender has started
  RankDeps moved(to.size());
  std::vector<bool> served(to.size(), false);
  // The sender nearest `chip`: fewest hops, then least used, then lowest rank.
  auto nearest = [&](ChipId chip) {
    size_t best = 0;
    int best_hops = INT32_MAX;
    for (size_t s = 0; s < active; ++s) {
      const int h = b.Hops(from[s], chip);
      if (h < best_hops || (h == best_hops && used[s] < used[best])) best = s, best_hops = h;
    }
    return std::make_pair(best, best_hops);
  };
  auto send = [&](size_t s, size_t r) {
    ++used[s];
    moved[r] = b.Transfer(from[s], data[s], to[r], bytes, tag);
    served[r] = true;
  };
  // Receivers a sender reaches in one hop (or is): directly.
  for (size_t r = 0; r < to.size(); ++r) {
    const auto [s, hops] = nearest(to[r]);
    if (hops <= 1) send(s, r);
  }
  // The others, node by node: once into the node, then on from there.
  std::map<int, std::vector<size_t>> by_node;  // node -> receivers not yet served
  for (size_t r = 0; r < to.size(); ++r) {
    if (!served[r]) by_node[topo.chip(to[r]).node].push_back(r);
  }
  for (const auto& [node, waiting] : by_node) {
    // The relay: the receiver of this node nearest a sender (one that has it already is at most
    // one hop from one; ties: the lowest rank) — chosen by the topology alone, so every phase
    // (prompt chunks, decode) uses the same links. A relay not yet served gets it first.
    size_t relay = to.size();
    int best_hops = INT32_MAX;
    for (size_t r = 0; r < to.size(); ++r) {
      if (topo.chip(to[r]).node != node) continue;
      const int h = nearest(to[r]).second;
      if (h < best_hops) relay = r, best_hops = h;
    }
    if (!served[relay]) send(nearest(to[relay]).first, relay);
    for (size_t r : waiting) {
      if (r == relay) continue;
      if (b.Hops(to[relay], to[r]) == 1) {
        moved[r] = b.Transfer(to[relay], moved[relay], to[r], bytes, tag);
        served[r] = true;
      } else {
        send(nearest(to[r]).first, r);
      }
    }
  }
  data = std::move(moved);
}

}  // namespace lockstep::schedule
