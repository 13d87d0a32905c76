#include "lockstep/coordinator/host_map.h"

#include <algorithm>
#include <climits>
#include <map>

#include "lockstep/common/error.h"

namespace lockstep::coordinator {
namespace {

struct Domain {
  int host = 0;
  int numa = 0;
  int first_core = 0;  // within the host
  int cores = 0;
};

std::vector<Domain> Domains(const topology::HostsFile& hosts) {
  std::vector<Domain> out;
  for (size_t h = 0; h < hosts.hosts.size(); ++h) {
    const topology::HostEntry& e = hosts.hosts[h];
    int first = 0;
    for (int k = 0; k < e.numa_nodes; ++k) {
      const int cores = e.cores / e.numa_nodes + (k < e.cores % e.numa_nodes ? 1 : 0);
      out.push_back({static_cast<int>(h), k, first, cores});
      first += cores;
    }
  }
  return out;
}

// Splits `chips` (in order, grouped by node) into per-domain lists of at most cap[d] chips,
// keeping a node's chips in one domain whenever it fits in an empty one. Returns false when the
// chips do not fit that way (then the caller cuts nodes).
bool PackWholeNodes(const std::vector<std::vector<ChipOnHost>>& nodes, const std::vector<int>& cap,
                    std::vector<std::vector<ChipOnHost>>& out) {
  out.assign(cap.size(), {});
  size_t d = 0;
  for (const std::vector<ChipOnHost>& node : nodes) {
    const int size = static_cast<int>(node.size());
    while (d < cap.size() && size > cap[d] - static_cast<int>(out[d].size()) &&
           (!out[d].empty() || size <= *std::max_element(cap.begin() + d, cap.end()))) {
      ++d;  // does not fit here, but would in an emptier domain further on
    }
    if (d == cap.size()) return false;
    if (size > cap[d] - static_cast<int>(out[d].size())) return false;  // bigger than any domain
    out[d].insert(out[d].end(), node.begin(), node.end());
  }
  return true;
}

// Fills the domains in order, cutting nodes where a domain is full. False if they do not fit.
bool PackCut(const std::vector<std::vector<ChipOnHost>>& nodes, const std::vector<int>& cap,
             std::vector<std::vector<ChipOnHost>>& out) {
  out.assign(cap.size(), {});
  size_t d = 0;
  for (const std::vector<ChipOnHost>& node : nodes) {
    for (const ChipOnHost& c : node) {
      while (d < cap.size() && static_cast<int>(out[d].size()) >= cap[d]) ++d;
      if (d == cap.size()) return false;
      out[d].push_back(c);
    }
  }
  return true;
}

std::vector<std::vector<ChipOnHost>> Pack(const std::vector<std::vector<ChipOnHost>>& nodes,
                                          const std::vector<int>& cap, bool& cut) {
  std::vector<std::vector<ChipOnHost>> out;
  cut = false;
  if (PackWholeNodes(nodes, cap, out)) return out;
  cut = true;
  if (PackCut(nodes, cap, out)) return out;
  return {};
}

std::vector<std::vector<ChipOnHost>> ByNode(std::vector<ChipOnHost> chips) {
  // Pipeline order: the lowest stage on the node (forwarding-only nodes after), then node index.
  std::map<int, std::vector<ChipOnHost>> nodes;
  for (const ChipOnHost& c : chips) nodes[c.node].push_back(c);
  std::vector<std::pair<std::pair<int, int>, std::vector<ChipOnHost>>> keyed;
  for (auto& [node, list] : nodes) {
    int first = INT_MAX;
    for (const ChipOnHost& c : list) {
      if (c.stage >= 0) first = std::min(first, c.stage);
    }
    keyed.push_back({{first, node}, std::move(list)});
  }
  std::sort(keyed.begin(), keyed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::vector<ChipOnHost>> out;
  for (auto& k : keyed) out.push_back(std::move(k.second));
  return out;
}

}  // namespace

const ChipOnHost* HostMap::Find(topology::ChipId chip) const {
  for (const ChipOnHost& c : chips) {
    if (c.chip == chip) return &c;
  }
  return nullptr;
}

namespace {

// The plan's chips, checked against the topology (each once), in the order given; `is_used`
// marks them by chip id.
std::vector<ChipOnHost> UsedChips(const std::vector<UsedChip>& used, const topology::Topology& topo,
                                  std::vector<bool>& is_used) {
  std::vector<ChipOnHost> chips;
  is_used.assign(static_cast<size_t>(topo.chip_count()), false);
  for (const UsedChip& u : used) {
    if (!topo.has_chip(u.chip)) {
      throw InvalidInput("chip " + std::to_string(u.chip) + " is not in topology '" + topo.name() +
                         "' (" + std::to_string(topo.chip_count()) + " chips)");
    }
    if (is_used[static_cast<size_t>(u.chip)]) {
      throw InvalidInput("chip " + std::to_string(u.chip) + " is listed twice");
    }
    is_used[static_cast<size_t>(u.chip)] = true;
    ChipOnHost c;
    c.chip = u.chip;
    c.node = topo.chip(u.chip).node;
    c.stage = u.stage;
    c.rank = u.rank;
    chips.push_back(c);
  }
  return chips;
}

// Chips per domain: its cores, or (more chips than cores, if allowed) its share of the chips by
// cores.
std::vector<int> Capacities(const std::vector<Domain>& domains, int64_t n,
                            const topology::HostsFile& hosts, const HostMapOptions& options) {
  int64_t total_cores = 0;
  for (const Domain& d : domains) total_cores += d.cores;
  const bool shared = n > total_cores;
  if (shared && !options.allow_shared_cores) {
    throw Error(ErrorCode::kCannotFit,
                "the plan starts " + std::to_string(n) + " workers (one per chip), the " +
                    std::to_string(hosts.hosts.size()) + " host(s) in " + hosts.source + " have " +
                    std::to_string(total_cores) + " cores: " + std::to_string(n - total_cores) +
                    " cores missing (add hosts or cores, or allow shared cores)");
  }
  std::vector<int> cap;
  int64_t given = 0;
  for (size_t d = 0; d < domains.size(); ++d) {
    int64_t c = domains[d].cores;
    if (shared) c = n * domains[d].cores / total_cores;
    cap.push_back(static_cast<int>(c));
    given += c;
  }
  for (size_t d = 0; given < n; d = (d + 1) % domains.size(), ++given) ++cap[d];
  return cap;
}

// The packed chips onto their domains' cores (spread over them when more chips than cores);
// `free_from[d]`: domain d's first core left free. Returns, per host whose cores are shared,
// (chips, cores).
std::map<int, std::pair<int, int>> PlaceChips(const std::vector<std::vector<ChipOnHost>>& packed,
                                              const std::vector<Domain>& domains, HostMap& map,
                                              std::vector<int>& free_from) {
  free_from.assign(domains.size(), 0);
  std::map<int, std::pair<int, int>> per_host_load;  // host -> (chips, cores) when shared
  for (size_t d = 0; d < domains.size(); ++d) {
    const Domain& dom = domains[d];
    const int count = static_cast<int>(packed[d].size());
    for (int i = 0; i < count; ++i) {
      ChipOnHost c = packed[d][static_cast<size_t>(i)];
      c.host = dom.host;
      c.numa = dom.numa;
      c.core = dom.first_core +
               (count <= dom.cores ? i : static_cast<int>(int64_t{i} * dom.cores / count));
      c.shared_core = count > dom.cores;
      map.chips.push_back(c);
    }
    free_from[d] = std::min(count, dom.cores);
    if (count > dom.cores) {
      auto& load = per_host_load[dom.host];
      load.first += count;
      load.second += dom.cores;
    }
  }
  return per_host_load;
}

// A note for each host whose cores the chips share.
void NoteSharedHosts(const std::map<int, std::pair<int, int>>& per_host_load,
                     const topology::HostsFile& hosts, HostMap& map) {
  for (const auto& [host, load] : per_host_load) {
    map.notes.push_back("host " + hosts.hosts[static_cast<size_t>(host)].name + ": " +
                        std::to_string(load.first) + " chips share " + std::to_string(load.second) +
                        " cores (up to " +
                        std::to_string((load.first + load.second - 1) / load.second) +
                        " per core; shared cores allowed)");
  }
}

// A note for each node whose chips landed in more than one domain.
void NoteCutNodes(const std::vector<std::vector<ChipOnHost>>& packed,
                  const std::vector<Domain>& domains, const topology::HostsFile& hosts,
                  HostMap& map) {
  std::map<int, std::vector<int>> node_domains;
  for (size_t d = 0; d < packed.size(); ++d) {
    for (const ChipOnHost& c : packed[d]) {
      std::vector<int>& ds = node_domains[c.node];
      if (ds.empty() || ds.back() != static_cast<int>(d)) ds.push_back(static_cast<int>(d));
    }
  }
  for (const auto& [node, ds] : node_domains) {
    if (ds.size() < 2) continue;
    std::string where;
    for (int d : ds) {
      const Domain& dom = domains[static_cast<size_t>(d)];
      where += (where.empty() ? "" : ", ") + hosts.hosts[static_cast<size_t>(dom.host)].name +
               (hosts.hosts[static_cast<size_t>(dom.host)].numa_nodes > 1
                    ? " numa " + std::to_string(dom.numa)
                    : "");
    }
    map.notes.push_back("node " + std::to_string(node) + " is cut across " + where +
                        " (no domain has room for all its chips)");
  }
}

// Spares: onto the cores left free, whole nodes where they fit; the rest share cores.
void PlaceSpares(const topology::Topology& topo, const std::vector<bool>& is_used,
                 const std::vector<Domain>& domains, const std::vector<int>& free_from,
                 HostMap& map) {
  std::vector<ChipOnHost> spares;
  for (const topology::Chip& c : topo.chips()) {
    if (!c.spare || is_used[static_cast<size_t>(c.id)]) continue;
    ChipOnHost s;
    s.chip = c.id;
    s.node = c.node;
    s.spare = true;
    spares.push_back(s);
  }
  std::vector<int> left;
  for (size_t d = 0; d < domains.size(); ++d) left.push_back(domains[d].cores - free_from[d]);
  std::vector<std::vector<ChipOnHost>> placed(domains.size());
  std::vector<ChipOnHost> overflow;
  size_t next = 0;
  for (const std::vector<ChipOnHost>& node : ByNode(spares)) {
    for (const ChipOnHost& s : node) {
      while (next < domains.size() && static_cast<int>(placed[next].size()) >= left[next]) ++next;
      if (next == domains.size()) {
        overflow.push_back(s);
      } else {
        placed[next].push_back(s);
      }
    }
  }
  for (size_t d = 0; d < domains.size(); ++d) {
    for (size_t i = 0; i < placed[d].size(); ++i) {
      ChipOnHost s = placed[d][i];
      s.host = domains[d].host;
      s.numa = domains[d].numa;
      s.core = domains[d].first_core + free_from[d] + static_cast<int>(i);
      map.spares.push_back(s);
    }
  }
  for (size_t i = 0; i < overflow.size(); ++i) {
    const Domain& dom = domains[i % domains.size()];
    ChipOnHost s = overflow[i];
    s.host = dom.host;
    s.numa = dom.numa;
    s.core =
        dom.first_core + static_cast<int>((i / domains.size()) % static_cast<size_t>(dom.cores));
    s.shared_core = true;
    map.spares.push_back(s);
  }
  if (!overflow.empty()) {
    map.notes.push_back(std::to_string(overflow.size()) +
                        " spare chip(s) mapped onto cores already in use (spares are not "
                        "started; a failover onto one would share its core)");
  }
}

}  // namespace

HostMap MapToHosts(const std::vector<UsedChip>& used, const topology::Topology& topo,
                   const topology::HostsFile& hosts, const HostMapOptions& options) {
  if (hosts.hosts.empty()) throw InvalidInput("hosts file " + hosts.source + " lists no hosts");
  const std::vector<Domain> domains = Domains(hosts);
  std::vector<bool> is_used;
  const std::vector<ChipOnHost> chips = UsedChips(used, topo, is_used);
  const std::vector<int> cap =
      Capacities(domains, static_cast<int64_t>(chips.size()), hosts, options);
  HostMap map;
  bool cut = false;
  std::vector<std::vector<ChipOnHost>> packed = Pack(ByNode(chips), cap, cut);
  if (packed.empty()) packed = Pack(ByNode(chips), cap, cut);  // unreachable: capacities sum to n
  std::vector<int> free_from;
  const std::map<int, std::pair<int, int>> per_host_load =
      PlaceChips(packed, domains, map, free_from);
  if (cut) NoteCutNodes(packed, domains, hosts, map);
  NoteSharedHosts(per_host_load, hosts, map);
  std::sort(map.chips.begin(), map.chips.end(),
            [](const ChipOnHost& a, const ChipOnHost& b) { return a.chip < b.chip; });
  PlaceSpares(topo, is_used, domains, free_from, map);
  std::sort(map.spares.begin(), map.spares.end(),
            [](const ChipOnHost& a, const ChipOnHost& b) { return a.chip < b.chip; });
  return map;
}

}  // namespace lockstep::coordinator
