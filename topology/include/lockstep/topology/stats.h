// Whole-topology statistics for `lockstep topo show` and for sizing decisions.
//
// Hop figures (diameter, average hops) are exact: an all-pairs breadth-first search over links
// that are up between chips that are up, run 64 sources at a time with bit sets, so a 10,440-chip
// system takes a fraction of a second. The bisection figure is an estimate: the link bandwidth
// across the cut of the chips, in id order, into two equal halves — an upper bound on the true
// minimum bisection, exact for rings and tori. Pure function, deterministic.
#pragma once

#include <cstdint>
#include <string>

#include "lockstep/topology/topology.h"

namespace lockstep::topology {

struct TopologyStats {
  int chips = 0;
  int chips_up = 0;
  int spares = 0;
  int nodes = 0;
  int racks = 0;
  int links = 0;
  int links_up = 0;
  int64_t ports_total = 0;  // sum of every chip's port count
  int64_t ports_used = 0;   // ports carrying a link (2 per link)
  int max_ports_used = 0;   // on the busiest chip
  int64_t sram_bytes_total = 0;
  int64_t sram_bytes_working = 0;     // spares excluded
  bool connected = false;             // every up chip reaches every other
  int diameter = 0;                   // largest hop distance between connected up chips
  int64_t hop_pairs = 0;              // ordered pairs of distinct connected up chips
  int64_t hop_sum = 0;                // sum of their hop distances
  int64_t bisection_bytes_per_s = 0;  // per direction, see above
  std::string bisection_cut;          // which cut gave it

  double average_hops() const {
    return hop_pairs == 0 ? 0.0 : static_cast<double>(hop_sum) / static_cast<double>(hop_pairs);
  }
};

TopologyStats ComputeStats(const Topology& topo);

}  // namespace lockstep::topology
