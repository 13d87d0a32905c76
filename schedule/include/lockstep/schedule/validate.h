// The validator: checks a GlobalSchedule from its instructions alone, against the topology, without
// trusting any bookkeeping of the compiler (summary figures are ignored, transfer times are
// recomputed from the links); the reservation tables are then checked against the instructions.
//
// Checks, each reported as one line naming the chip, the link (where one is involved) and the step:
//   - program order: planned starts never decrease; deps point to earlier instructions;
//   - durations: Compute/Reduce end = start + duration; Send/Forward end = start + HopTimeNs;
//   - dependencies: every dep ends before its consumer starts; every message's sender start +
//     transfer time <= the receiver's start;
//   - links: a Send/Forward uses an existing, up link that joins its chip to its peer; no two
//     transfers overlap on one link direction;
//   - tables: every link direction's reservations are exactly its transfers, at the same times;
//   - compute: no chip runs two Compute/Reduce instructions at once;
//   - matching: every sent message is received exactly once, by the peer, over the same link;
//     every receive names a message that was sent;
//   - memory: at every instant resident bytes + live message buffers <= the chip's SRAM (a
//     buffer lives from its arrival until the last instruction that reads it ends);
//   - modulo form (iterations > 0): the period's compute and link reservations do not overlap
//     their own copies shifted by the repeat interval, and each sequence's next token on a chip
//     starts after its previous one ended there. Memory is checked within one period only
//     (buffers alive across the period boundary are not added to the next period's); validate
//     Unroll(schedule, k) to check k periods explicitly.
// Pure function; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "lockstep/partition/cost_model.h"
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
std::vector<std::string> Validate(const GlobalSchedule& schedule, const topology::Topology& topo,
                                  const ValidateOptions& options = {});

}  // namespace lockstep::schedule
