// PassBuilder: emits one copy of a phase's pass (slot 0) instruction by instruction, each placed
// first-fit on its resource's reservation table folded modulo the slot stride (ModuloTimeline),
// so every later copy — the same pass shifted by a multiple of the stride — finds its resources
// free. The strategies (collectives, stage hand-offs: strategies.h) are written against it.
#pragma once

#include <cstdint>
#include <vector>

#include "lockstep/schedule/schedule.h"
#include "modulo_timeline.h"
#include "route.h"

namespace lockstep::schedule {

// Instructions (indices into one chip's body) a new instruction waits for.
using Deps = std::vector<int32_t>;

class PassBuilder {
 public:
  // `routes` outlives the builder (it is shared by the attempts at a phase).
  PassBuilder(const topology::Topology& topo, const partition::LinkCostParams& params,
              RouteCache& routes, int64_t period);

  // The step new instructions belong to (token, sequence, stage, layer).
  Instruction step;

  // When everything in `deps` (on `chip`) has ended.
  int64_t ReadyAt(ChipId chip, const Deps& deps) const;
  // A Compute or Reduce of `ns` on `chip`'s compute unit after `deps`; returns its index.
  int32_t Compute(ChipId chip, const Deps& deps, int64_t ns, InstrKind kind, Tag tag,
                  partition::OpKind op);
  // Moves `bytes` from `src` (ready after `deps`) to `dst` over the deterministic minimal
  // route, every hop reserved, intermediate chips forwarding; returns what an instruction on
  // `dst` waits for (the Recv; `deps` itself when src == dst).
  Deps Transfer(ChipId src, const Deps& deps, ChipId dst, int64_t bytes, Tag tag);
  // As Transfer, over the minimal routes from `src` to `crossing.from`, the link `crossing`,
  // and from `crossing.to` to `dst`: a caller spreading messages over the links that join two
  // groups of chips picks which one each takes.
  Deps TransferVia(ChipId src, const Deps& deps, const RouteHop& crossing, ChipId dst,
                   int64_t bytes, Tag tag);

  // Links on the deterministic minimal route from `a` to `b` (0 when equal).
  int Hops(ChipId a, ChipId b) { return static_cast<int>(routes_.Route(a, b).size()); }

  const topology::Topology& topology() const { return topo_; }
  const partition::LinkCostParams& link_params() const { return params_; }

  struct Result {
    // Per chip with instructions (ascending): its body in planned start order (ties keep
    // emission order, so deps stay earlier), deps remapped and sorted.
    std::vector<std::pair<ChipId, std::vector<Instruction>>> bodies;
    int64_t messages = 0;   // body message ids 0 .. messages - 1
    int64_t busy_max = 0;   // the busiest resource's time per copy (compute or link direction)
    int64_t span_max = 0;   // the longest first start .. last end on one resource
    int64_t makespan = 0;   // the last end
    bool unplaced = false;  // some instruction found no folded gap (the stride is too short)
  };
  Result Finish();

 private:
  int32_t Emit(ChipId chip, Instruction in);
  // Moves `bytes` over `hops` (non-empty, chained), the first hop after `deps`.
  Deps Move(const std::vector<RouteHop>& hops, const Deps& deps, int64_t bytes, Tag tag);
  int64_t Take(ModuloTimeline& table, int64_t& busy, std::pair<int64_t, int64_t>& span,
               int64_t ready, int64_t duration);

  const topology::Topology& topo_;
  partition::LinkCostParams params_;
  RouteCache& routes_;
  int64_t period_;
  std::vector<std::vector<Instruction>> bodies_;  // per chip id, in emission order
  std::vector<ModuloTimeline> compute_;           // per chip
  std::vector<ModuloTimeline> links_;             // per link direction (2 x link + dir)
  std::vector<int64_t> compute_busy_;
  std::vector<int64_t> link_busy_;
  int64_t span_max_ = 0;
  std::vector<std::pair<int64_t, int64_t>> compute_span_;  // per chip: first start, last end
  std::vector<std::pair<int64_t, int64_t>> link_span_;     // per direction
  int64_t next_msg_ = 0;
  bool unplaced_ = false;
};

}  // namespace lockstep::schedule
