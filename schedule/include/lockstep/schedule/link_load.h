// What a compiled schedule sends over each direction of each link it uses: how many transfers and
// how large the largest is. These figures bound a link direction's queues in bytes
// (transport::QueueBound: the receiving end sized for the largest message, the sender never
// blocked below the count), so large tensors travel whole and no queue is unbounded; the count is
// also what keeps chips that run a step's sends before its receives from deadlocking (a chip may
// trail its peers within a step, so each direction must hold all of a step's messages).
//
// Counted over everything the schedule holds: one decode step when compiled for one token, as a
// deployment compiles it; a run that executes several schedules (decode and prefill) takes, per
// direction, the largest of each figure. Pure functions of the schedule, deterministic.
#pragma once

#include <cstdint>
#include <vector>

#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {

struct LinkLoad {
  LinkId link = 0;
  ChipId from = 0;
  ChipId to = 0;
  int64_t messages = 0;           // transfers over this direction
  int64_t max_message_bytes = 0;  // the largest of them
  int64_t bytes = 0;              // all of them together

  friend bool operator==(const LinkLoad&, const LinkLoad&) = default;
};

// Every link direction that carries a transfer, ordered by (link, from): the Send and Forward
// instructions of every program (each hop of a routed message counts on its own link).
std::vector<LinkLoad> LinkLoads(const GlobalSchedule& schedule);

// The directions one chip's program sends or receives on, from that program alone (its Sends and
// Forwards going out, its Recvs and Forwards coming in), ordered by (link, from): what a worker
// holding only its program needs. Each entry equals LinkLoads(schedule)'s for that direction.
std::vector<LinkLoad> ProgramLinkLoads(const ChipProgram& program);

}  // namespace lockstep::schedule
