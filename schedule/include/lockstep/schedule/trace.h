// Trace export: a schedule's instructions as Chrome trace-event JSON (chrome://tracing and
// Perfetto load it). Process "chips" has one track per chip (compute, reduce and receive
// slices); process "links" one track per link direction (transfer slices); each hop is a flow
// arrow from its transfer slice to the instruction that receives it. Timestamps are in
// microseconds (fractional, from integer ns); events are sorted by time, so the bytes are
// deterministic. Pure functions.
#pragma once

#include <string>

#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/simulate.h"

namespace lockstep::schedule {

// The planned times, or the simulated ones when `sim` is given (and kept its times);
// instructions the simulation never ran are left out.
std::string TraceJson(const GlobalSchedule& schedule, const SimResult* sim = nullptr);

}  // namespace lockstep::schedule
