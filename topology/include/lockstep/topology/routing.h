// Deterministic minimal routing between chips.
//
// A route is a path of fewest hops over links that are up, through chips that are up. Among
// all minimal paths the router returns the one whose sequence of chip ids is lexicographically
// smallest, and between two chips joined by parallel links it takes the lowest port of the
// sending chip — so the same topology always yields the same route, on every machine.
//
// `Router` snapshots the topology's up/down state when constructed (build a new Router after
// marking a chip or link down) and keeps scratch buffers so that a query does not allocate per
// visited chip: one Router per thread; it is not thread-safe. The queries search from both
// ends at once, so their cost grows with the chips within about half the distance of each end,
// not with the whole system.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lockstep/topology/topology.h"

namespace lockstep::topology {

struct Hop {
  LinkId link = 0;
  PortRef from;  // sending chip:port
  PortRef to;    // receiving chip:port
};

struct Route {
  ChipId src = 0;
  ChipId dst = 0;
  std::vector<ChipId> chips;  // src, ..., dst
  std::vector<Hop> hops;      // chips.size() - 1 hops
  int64_t latency_ns = 0;     // sum of the hops' link latencies
  // Smallest per-direction bandwidth along the route; 0 for src == dst (no link).
  int64_t bottleneck_bandwidth_bytes_per_s = 0;

  int hop_count() const { return static_cast<int>(hops.size()); }
};

class Router {
 public:
  explicit Router(const Topology& topo);

  // The route from src to dst, or nullopt when dst cannot be reached (including when either
  // end is down). Throws Error (kInvalidInput) for a chip id that does not exist.
  std::optional<Route> FindRoute(ChipId src, ChipId dst);

  // Hop distance, or -1 when unreachable. Same rules as FindRoute.
  int Distance(ChipId src, ChipId dst);

 private:
  struct Edge {
    ChipId peer;
    int port;
    LinkId link;
  };
  // Bidirectional BFS; fills the balls and returns the distance or -1.
  int Search(ChipId src, ChipId dst);
  void CheckChip(ChipId c) const;

  const Topology& topo_;
  // CSR adjacency over up links between up chips, each chip's edges sorted by (peer, port).
  std::vector<int> offsets_;
  std::vector<Edge> edges_;
  // Scratch: per-chip distances from each end, valid when the stamp equals the query's.
  std::vector<uint32_t> stamp_src_, stamp_dst_, stamp_on_path_;
  std::vector<int32_t> dist_src_, dist_dst_;
  std::vector<ChipId> order_src_, order_dst_;  // BFS visit order of each ball
  int radius_src_ = 0, radius_dst_ = 0;
  uint32_t query_ = 0;
};

}  // namespace lockstep::topology
