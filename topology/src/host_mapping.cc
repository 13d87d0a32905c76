// MapChipsToCores: the chip -> host core pinning rule documented in host.h.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/topology/host.h"

namespace lockstep::topology {

std::vector<ChipPlacement> MapChipsToCores(const Topology& topo, const HostSummary& host,
                                           bool include_spares) {
  // Chips grouped by node; std::map orders the nodes, chips() yields ids in order.
  std::map<int, std::vector<ChipId>> by_node;
  for (const Chip& c : topo.chips()) {
    if (c.spare && !include_spares) continue;
    by_node[c.node].push_back(c.id);
  }
  if (by_node.empty()) {
    throw InvalidInput("host mapping: topology '" + topo.name() + "' has no chips to place" +
                       (include_spares || topo.chip_count() == 0 ? "" : " (all are spares)"));
  }
  std::vector<const NumaDomain*> domains;
  for (const NumaDomain& d : host.numa) {
    if (!d.cores.empty()) domains.push_back(&d);
  }
  if (domains.empty()) {
    throw InvalidInput("host mapping: host '" + host.source +
                       "' has no cores to pin chips to (need at least 1)");
  }

  const int nodes = static_cast<int>(by_node.size());
  const int domain_count = static_cast<int>(domains.size());
  std::vector<ChipPlacement> placements;
  placements.reserve(topo.chip_count());
  auto node_it = by_node.begin();
  for (int d = 0; d < domain_count; ++d) {
    // Rule 2: contiguous blocks, the first nodes % domains domains one node larger.
    const int take = nodes / domain_count + (d < nodes % domain_count ? 1 : 0);
    std::vector<ChipId> chips;
    for (int n = 0; n < take; ++n, ++node_it) {
      chips.insert(chips.end(), node_it->second.begin(), node_it->second.end());
    }
    // Rule 3: chip i of C on core floor(i * K / C).
    const NumaDomain& domain = *domains[d];
    const int64_t k = static_cast<int64_t>(domain.cores.size());
    const int64_t c = static_cast<int64_t>(chips.size());
    for (int64_t i = 0; i < c; ++i) {
      const HostCore& core = domain.cores[static_cast<size_t>(i * k / c)];
      placements.push_back({chips[static_cast<size_t>(i)], domain.index, core.index, core.pus});
    }
  }
  std::sort(placements.begin(), placements.end(),
            [](const ChipPlacement& a, const ChipPlacement& b) { return a.chip < b.chip; });
  return placements;
}

}  // namespace lockstep::topology
