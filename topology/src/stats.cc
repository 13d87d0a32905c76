#include "lockstep/topology/stats.h"

#include <algorithm>
#include <bit>
#include <vector>

namespace lockstep::topology {
namespace {

struct HopTotals {
  bool connected = true;
  int diameter = 0;
  int64_t pairs = 0;
  int64_t sum = 0;
};

// All-pairs BFS, 64 sources per pass: reach[v] has bit s set once source s has reached v.
HopTotals AllPairsHops(const Topology& topo) {
  const int n = topo.chip_count();
  std::vector<int> offsets(n + 1, 0);
  std::vector<ChipId> peers;
  std::vector<ChipId> up;
  for (ChipId c = 0; c < n; ++c) {
    for (const Adjacent& a : topo.Neighbors(c)) peers.push_back(a.peer);
    offsets[c + 1] = static_cast<int>(peers.size());
    if (!topo.chip(c).down) up.push_back(c);
  }
  HopTotals t;
  std::vector<uint64_t> reach(n), frontier(n), next(n);
  for (size_t base = 0; base < up.size(); base += 64) {
    std::fill(reach.begin(), reach.end(), 0);
    std::fill(frontier.begin(), frontier.end(), 0);
    const size_t batch = std::min<size_t>(64, up.size() - base);
    for (size_t s = 0; s < batch; ++s) {
      reach[up[base + s]] |= uint64_t{1} << s;
      frontier[up[base + s]] |= uint64_t{1} << s;
    }
    const uint64_t all = batch == 64 ? ~uint64_t{0} : (uint64_t{1} << batch) - 1;
    for (int level = 1;; ++level) {
      int64_t newly = 0;
      for (ChipId v = 0; v < n; ++v) {
        uint64_t bits = 0;
        for (int e = offsets[v]; e < offsets[v + 1]; ++e) bits |= frontier[peers[e]];
        bits &= ~reach[v];
        next[v] = bits;
        newly += std::popcount(bits);
      }
      if (newly == 0) break;
      for (ChipId v = 0; v < n; ++v) reach[v] |= next[v];
      std::swap(frontier, next);
      t.diameter = level;
      t.pairs += newly;
      t.sum += newly * level;
    }
    for (ChipId v : up) {
      if ((reach[v] & all) != all) t.connected = false;
    }
  }
  return t;
}

// Bandwidth of up links with exactly one end in chips [0, cut).
int64_t CutBandwidth(const Topology& topo, ChipId cut) {
  int64_t sum = 0;
  for (const Link& l : topo.links()) {
    if (l.down || topo.chip(l.a.chip).down || topo.chip(l.b.chip).down) continue;
    if ((l.a.chip < cut) != (l.b.chip < cut)) sum += l.bandwidth_bytes_per_s;
  }
  return sum;
}

}  // namespace

TopologyStats ComputeStats(const Topology& topo) {
  TopologyStats s;
  s.chips = topo.chip_count();
  s.spares = topo.spare_count();
  s.nodes = topo.node_count();
  s.racks = topo.rack_count();
  s.links = topo.link_count();
  for (const Chip& c : topo.chips()) {
    const ChipSpec& spec = topo.spec_of(c.id);
    s.chips_up += c.down ? 0 : 1;
    s.ports_total += spec.ports;
    const int used = topo.PortsUsed(c.id);
    s.ports_used += used;
    s.max_ports_used = std::max(s.max_ports_used, used);
    s.sram_bytes_total += spec.sram_bytes;
    if (!c.spare) s.sram_bytes_working += spec.sram_bytes;
  }
  for (const Link& l : topo.links()) s.links_up += l.down ? 0 : 1;

  HopTotals hops = AllPairsHops(topo);
  s.connected = hops.connected;
  s.diameter = hops.diameter;
  s.hop_pairs = hops.pairs;
  s.hop_sum = hops.sum;

  // Chips in id order are laid out rack by rack and node by node, so the id halves keep racks
  // (and, where the halves allow, nodes) whole: the natural cut of these shapes.
  if (s.chips >= 2) {
    const ChipId half = s.chips / 2;
    s.bisection_bytes_per_s = CutBandwidth(topo, half);
    s.bisection_cut = "chips 0.." + std::to_string(half - 1) + " | " + std::to_string(half) + ".." +
                      std::to_string(s.chips - 1);
  }
  return s;
}

}  // namespace lockstep::topology
