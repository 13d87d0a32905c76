// Failover planning: which spare chips take a failed chip's work, and the plan and topology
// patched for it. Pure functions (no I/O, no clock): the same plan, topology and failed chip
// always give the same choice and the same bytes, so a recompiled schedule is reproducible.
//
// The failed chip is marked down and the chosen spares stop being spares. Preferred: one spare
// takes the failed chip's (stage, rank) — nothing else in the plan moves, every surviving chip
// keeps its shard. It must be linked directly to every other chip of the failed chip's TP group:
// the runtime's all-reduce is a direct exchange that names ranks by link peer (ChipRunner), so a
// group whose collectives would need forwarding cannot run. Among those, the nearest (fewest hops
// summed over the group's chips, the failed one included, measured before it is marked down),
// ties to the lowest chip id. In a rack a node's chips reach the spare node over only a couple of
// global links, so for TP > 1 often none qualifies: then the whole TP group moves onto fully
// connected spares of one node (the lowest ids of the nearest such node, in rank order) and its
// chips are shipped their shards again; the group's surviving chips are no longer used.
// Stage-to-stage transfers may be forwarded over several hops; the compiler routes them.
#pragma once

#include <string>
#include <vector>

#include "lockstep/partition/plan.h"
#include "lockstep/topology/topology.h"

namespace lockstep::coordinator {

struct SpareChoice {
  std::vector<topology::ChipId> chips;  // empty: no spare left; else 1 chip, or the whole group
  bool whole_group = false;             // chips = the group's new chips in rank order
};

// The choice described above (empty when no spare is left or reachable). A chip the plan does
// not use in a stage has no group: nearest to the chip itself.
SpareChoice ChooseSpare(const partition::Plan& plan, const topology::Topology& topo,
                        topology::ChipId failed);

struct PatchedPlan {
  partition::Plan plan;         // the spares in place; plan.system = topology
  topology::Topology topology;  // the failed chip down, the chosen spares no longer spares
  SpareChoice choice;           // empty when the chip was not a stage chip (only marked down)
};

// Patches `plan` for `failed`. Throws Error(kCannotFit) "no spare chip left to replace chip N
// ..." when the chip is a stage chip and ChooseSpare finds none.
PatchedPlan ReplaceChip(const partition::Plan& plan, const topology::Topology& topo,
                        topology::ChipId failed);

}  // namespace lockstep::coordinator
