#include "lockstep/coordinator/failover.h"

#include <algorithm>
#include <map>

#include "lockstep/common/error.h"
#include "lockstep/topology/routing.h"

namespace lockstep::coordinator {
namespace {

partition::StagePlan* StageOf(partition::Plan& plan, topology::ChipId chip) {
  for (partition::StagePlan& st : plan.stages) {
    if (std::find(st.chips.begin(), st.chips.end(), chip) != st.chips.end()) return &st;
  }
  return nullptr;
}

bool Linked(const topology::Topology& topo, topology::ChipId a, topology::ChipId b) {
  for (const topology::Adjacent& n : topo.Neighbors(a)) {
    if (n.peer == b) return true;
  }
  return false;
}

bool Usable(const topology::Chip& c, topology::ChipId failed) {
  return c.spare && !c.down && c.id != failed;
}

}  // namespace

SpareChoice ChooseSpare(const partition::Plan& plan, const topology::Topology& topo,
                        topology::ChipId failed) {
  if (!topo.has_chip(failed)) {
    throw InvalidInput("failover: chip " + std::to_string(failed) + " is not in " + topo.name());
  }
  partition::Plan copy = plan;
  const partition::StagePlan* stage = StageOf(copy, failed);
  const std::vector<topology::ChipId> group =
      stage != nullptr ? stage->chips : std::vector<topology::ChipId>{failed};
  // Distances are measured with the failed chip still up: it is where the group's work was.
  topology::Topology measured = topo;
  measured.SetChipDown(failed, false);
  topology::Router router(measured);
  auto hops_to_group = [&](topology::ChipId c) -> int64_t {
    int64_t hops = 0;
    for (topology::ChipId g : group) {
      const int d = router.Distance(c, g);
      if (d < 0) return -1;
      hops += d;
    }
    return hops;
  };
  SpareChoice best;
  int64_t best_hops = 0;
  // 1. One spare in the failed chip's place, linked directly to every other chip of its group.
  for (const topology::Chip& c : topo.chips()) {  // id order: ties go to the lowest id
    if (!Usable(c, failed)) continue;
    bool direct = true;
    for (topology::ChipId g : group) direct &= g == failed || Linked(topo, c.id, g);
    const int64_t hops = hops_to_group(c.id);
    if (!direct || hops < 0) continue;
    if (best.chips.empty() || hops < best_hops) {
      best.chips = {c.id};
      best_hops = hops;
    }
  }
  if (!best.chips.empty() || group.size() == 1) return best;
  // 2. The whole group onto fully connected spares of one node, in rank order.
  std::map<int, std::vector<topology::ChipId>> by_node;
  for (const topology::Chip& c : topo.chips()) {
    if (Usable(c, failed)) by_node[c.node].push_back(c.id);
  }
  for (const auto& [node, chips] : by_node) {
    if (chips.size() < group.size()) continue;
    const std::vector<topology::ChipId> take(chips.begin(),
                                             chips.begin() + static_cast<int64_t>(group.size()));
    bool connected = true;
    int64_t hops = 0;
    for (size_t i = 0; i < take.size() && connected; ++i) {
      for (size_t j = i + 1; j < take.size(); ++j) connected &= Linked(topo, take[i], take[j]);
      const int64_t h = hops_to_group(take[i]);
      connected &= h >= 0;
      hops += h;
    }
    if (connected && (best.chips.empty() || hops < best_hops)) {
      best.chips = take;
      best.whole_group = true;
      best_hops = hops;
    }
  }
  return best;
}

PatchedPlan ReplaceChip(const partition::Plan& plan, const topology::Topology& topo,
                        topology::ChipId failed) {
  PatchedPlan out{plan, topo, {}};
  if (partition::StagePlan* stage = StageOf(out.plan, failed)) {
    out.choice = ChooseSpare(plan, topo, failed);
    if (out.choice.chips.empty()) {
      throw Error(ErrorCode::kCannotFit, "no spare chip left to replace chip " +
                                             std::to_string(failed) + " of " + topo.name() +
                                             " (stage " + std::to_string(stage->index) + ", tp " +
                                             std::to_string(stage->tp) + ")");
    }
    for (topology::ChipId c : out.choice.chips) out.topology.SetChipSpare(c, false);
    if (out.choice.whole_group) {
      stage->chips = out.choice.chips;
    } else {
      std::replace(stage->chips.begin(), stage->chips.end(), failed, out.choice.chips.front());
    }
  }
  out.topology.SetChipDown(failed, true);
  out.plan.system.topology = out.topology;
  return out;
}

}  // namespace lockstep::coordinator
