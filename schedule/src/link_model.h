// The link model the compiler schedules against and the validator and simulator check: how long a
// transfer holds its link direction, when it has fully arrived, and when a chip on a route may
// start the next hop. One place, so the three agree.
//
// A Send or Forward instruction lasts as long as it holds its link direction (start to end: its
// payload going onto the wire); the message has wholly arrived at the far end at ArrivalNs, a
// hop's latency later. Receives start at or after the arrival; a Forward may start earlier
// (ForwardEarliestNs).
#pragma once

#include <algorithm>
#include <cstdint>

#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule::link_model {

// How long a transfer of `bytes` holds its link direction from its start: the time its payload
// takes to go onto the wire (bytes / (bandwidth x link efficiency), at least 1 ns). The hop's
// latency is time in flight, not on the sender's port: the next message may follow as soon as
// this one's last byte is out, so messages pipeline on a direction, one serializing at a time.
inline int64_t OccupancyNs(const topology::Link& link, int64_t bytes,
                           const partition::LinkCostParams& params) {
  const int64_t latency = params.hop_latency_ns >= 0 ? params.hop_latency_ns : link.latency_ns;
  return std::max<int64_t>(1, HopTimeNs(link, bytes, params) - latency);
}

// When a transfer that started at `start` has wholly arrived at the far end: one hop's latency
// and payload (HopTimeNs).
inline int64_t ArrivalNs(int64_t start, const topology::Link& link, int64_t bytes,
                         const partition::LinkCostParams& params) {
  return start + HopTimeNs(link, bytes, params);
}

// The earliest start of a Forward of a message whose previous hop (over `in`) started at
// `in_start`: cut-through — as soon as the message's head has arrived (one latency after the
// previous hop started), but not so early that its tail would leave before it has arrived (on a
// faster outgoing link). On equal links a route of h hops takes h latencies + one payload (the
// cost model's TransferTimeNs prices it store-and-forward: h x (latency + payload), above this).
inline int64_t ForwardEarliestNs(int64_t in_start, const topology::Link& in,
                                 const topology::Link& out, int64_t bytes,
                                 const partition::LinkCostParams& params) {
  const int64_t latency = params.hop_latency_ns >= 0 ? params.hop_latency_ns : in.latency_ns;
  return std::max(in_start + latency,
                  ArrivalNs(in_start, in, bytes, params) - OccupancyNs(out, bytes, params));
}

}  // namespace lockstep::schedule::link_model
