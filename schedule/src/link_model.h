// The link model the compiler schedules against and the validator and simulator check: how long a
// transfer holds its link direction, when it has fully arrived, and when a chip on a route may
// start the next hop. One place, so the three agree.
//
// A Send or Forward instruction lasts as long as it holds its link direction (start to end);
// the message has arrived at the far end at ArrivalNs. Receives start at or after the arrival.
#pragma once

#include <algorithm>
#include <cstdint>

#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule::link_model {

// How long a transfer of `bytes` holds its link direction from its start: the whole hop (latency
// and payload) — one message on a direction at a time.
inline int64_t OccupancyNs(const topology::Link& link, int64_t bytes,
                           const partition::LinkCostParams& params) {
  return HopTimeNs(link, bytes, params);
}

// When a transfer that started at `start` has wholly arrived at the far end.
inline int64_t ArrivalNs(int64_t start, const topology::Link& link, int64_t bytes,
                         const partition::LinkCostParams& params) {
  return start + HopTimeNs(link, bytes, params);
}

// The earliest start of a Forward of a message whose previous hop (over `in`) started at
// `in_start`: store-and-forward, once the whole message has arrived.
inline int64_t ForwardEarliestNs(int64_t in_start, const topology::Link& in,
                                 const topology::Link& /*out*/, int64_t bytes,
                                 const partition::LinkCostParams& params) {
  return ArrivalNs(in_start, in, bytes, params);
}

}  // namespace lockstep::schedule::link_model
