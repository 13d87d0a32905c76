// The validator: checks a schedule from its instructions alone, against the topology, without
// trusting any bookkeeping of the compiler (summary figures are ignored, transfer times are
// recomputed from the links). It reads the compact form (compact.h) phase by phase: each body
// once, its reservations folded modulo the slot stride for every copy; an explicit GlobalSchedule
// is checked as its one-copy compact view (AsCompact), and its reservation tables against the
// instructions.
//
// Checks, each reported as one line naming the chip, the link (where one is involved) and the step:
//   - program order: planned starts never decrease; deps point to earlier instructions;
//   - durations: Compute/Reduce end = start + duration; Send/Forward end = start + the time
//     the payload holds its link direction (schedule.h's link model);
//   - dependencies: every dep ends before its consumer starts; every message has arrived
//     (sender start + HopTimeNs) before its Recv starts, and its head before a Forward passes
//     it on (cut-through, the tail never leaving before it arrived);
//   - links: a Send/Forward uses an existing, up link that joins its chip to its peer; no two
//     payloads overlap on one link direction;
//   - tables: every link direction's reservations are exactly its transfers, at the same times;
//   - compute: no chip runs two Compute/Reduce instructions at once;
//   - matching: every sent message is received exactly once, by the peer, over the same link;
//     every receive names a message that was sent;
//   - memory: at every instant resident bytes + live message buffers <= the chip's SRAM (a
//     buffer lives from its arrival until the last instruction that reads it ends);
//   - copies (compact phases; a modulo GlobalSchedule's periods): each body's compute and link
//     reservations folded modulo the slot stride do not meet, so no two copies overlap; each
//     slot's next pass on a chip starts after its previous one ended there; memory counts every
//     copy's buffers that can be alive at once (folded, as if the copies ran forever);
//   - phases: on every compute unit and link direction a phase's last copy ends before the next
//     phase's first starts, and each slot's first instructions of a phase on a chip start after
//     its last ones of the previous phase there.
// Pure function; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "lockstep/partition/cost_model.h"
#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/topology.h"

namespace lockstep::schedule {

struct ValidateOptions {
  // Must match the options the schedule was compiled with (transfer times depend on them).
  partition::LinkCostParams link_params;
  // Stop after this many problems (a broken schedule can have millions).
  size_t max_problems = 50;
};

// Every problem found, one line each; empty when the schedule is valid.
std::vector<std::string> Validate(const CompactSchedule& schedule, const topology::Topology& topo,
                                  const ValidateOptions& options = {});
std::vector<std::string> Validate(const GlobalSchedule& schedule, const topology::Topology& topo,
                                  const ValidateOptions& options = {});

}  // namespace lockstep::schedule
