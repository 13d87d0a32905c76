// Failover planning: which spare chip takes a failed chip's place, and the plan and topology
// patched for it. Pure functions (no I/O, no clock): the same plan, topology and failed chip
// always give the same spare and the same bytes, so a recompiled schedule is reproducible.
//
// The failed chip is marked down; the chosen spare stops being a spare and takes the failed
// chip's (stage, rank) in the plan — nothing else in the plan moves, so every surviving chip
// keeps its shard. The spare is the one nearest the failed chip's TP group: the fewest hops
// summed over the group's chips (the failed one included, measured before it is marked down),
// ties to the lowest chip id. Chips that only forward are not part of a plan; a chip that fails
// while forwarding is simply routed around by the recompiled schedule.
#pragma once

#include <optional>
#include <string>

#include "lockstep/partition/plan.h"
#include "lockstep/topology/topology.h"

namespace lockstep::coordinator {

// The usable spare nearest `failed`'s TP group (see above), or nullopt when none is left (or
// none is reachable). A chip the plan does not use as a stage chip has no group: nearest to the
// chip itself.
std::optional<topology::ChipId> ChooseSpare(const partition::Plan& plan,
                                            const topology::Topology& topo,
                                            topology::ChipId failed);

struct PatchedPlan {
  partition::Plan plan;         // the spare in the failed chip's place; plan.system = topology
  topology::Topology topology;  // the failed chip down, the spare no longer a spare
  topology::ChipId spare = -1;  // -1: the chip was not a stage chip (only marked down)
};

// Patches `plan` for `failed`. Throws Error(kCannotFit) "no spare chip left to replace chip N"
// when the chip is a stage chip and ChooseSpare finds none.
PatchedPlan ReplaceChip(const partition::Plan& plan, const topology::Topology& topo,
                        topology::ChipId failed);

}  // namespace lockstep::coordinator
