#include "lockstep/coordinator/failover.h"

#include <algorithm>

#include "lockstep/common/error.h"
#include "lockstep/topology/routing.h"

namespace lockstep::coordinator {
namespace {

const partition::StagePlan* StageOf(const partition::Plan& plan, topology::ChipId chip) {
  for (const partition::StagePlan& st : plan.stages) {
    if (std::find(st.chips.begin(), st.chips.end(), chip) != st.chips.end()) return &st;
  }
  return nullptr;
}

}  // namespace

std::optional<topology::ChipId> ChooseSpare(const partition::Plan& plan,
                                            const topology::Topology& topo,
                                            topology::ChipId failed) {
  if (!topo.has_chip(failed)) {
    throw InvalidInput("failover: chip " + std::to_string(failed) + " is not in " + topo.name());
  }
  // Distances are measured with the failed chip still up: it is where the group's work was.
  topology::Topology measured = topo;
  measured.SetChipDown(failed, false);
  topology::Router router(measured);
  const partition::StagePlan* stage = StageOf(plan, failed);
  const std::vector<topology::ChipId> group =
      stage != nullptr ? stage->chips : std::vector<topology::ChipId>{failed};
  std::optional<topology::ChipId> best;
  int64_t best_hops = 0;
  for (const topology::Chip& c : topo.chips()) {  // id order: ties go to the lowest id
    if (!c.spare || c.down || c.id == failed) continue;
    int64_t hops = 0;
    bool reachable = true;
    for (topology::ChipId g : group) {
      const int d = router.Distance(c.id, g);
      reachable &= d >= 0;
      hops += d;
    }
    if (reachable && (!best || hops < best_hops)) {
      best = c.id;
      best_hops = hops;
    }
  }
  return best;
}

PatchedPlan ReplaceChip(const partition::Plan& plan, const topology::Topology& topo,
                        topology::ChipId failed) {
  PatchedPlan out{plan, topo, -1};
  if (StageOf(plan, failed) != nullptr) {
    const std::optional<topology::ChipId> spare = ChooseSpare(plan, topo, failed);
    if (!spare) {
      throw Error(ErrorCode::kCannotFit, "no spare chip left to replace chip " +
                                             std::to_string(failed) + " of " + topo.name());
    }
    out.spare = *spare;
    out.topology.SetChipSpare(*spare, false);
    for (partition::StagePlan& st : out.plan.stages) {
      std::replace(st.chips.begin(), st.chips.end(), failed, *spare);
    }
  }
  out.topology.SetChipDown(failed, true);
  out.plan.system.topology = out.topology;
  return out;
}

}  // namespace lockstep::coordinator
