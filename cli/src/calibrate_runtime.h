// `lockstep calibrate --host`'s runtime probe (issue #21, item 3): the runtime's own costs on
// this host, measured with the real runtime — a small model (8 layers of width 64: its compute is
// microseconds, so a step is almost all runtime) run by lockstep-worker processes over the
// transport on the calibrated topology, one chip (1x1), then a TP group of two (1x2) when the
// topology has two chips. Each run's decode step is measured (the coordinator's mean over its
// decode steps) with the workers' own compute in it (their measured compute time, not the cost
// model's: a small model's weights sit in the cache, which the model does not price):
//   - step_overhead_ns: the 1x1 step beyond its compute and the control hops the plan prices
//     (control_hops x control_hop_ns): what every decode step costs the workers besides its
//     schedule;
//   - collective_overhead_ns: the 1x2 step beyond its compute, the runtime's per-step terms
//     (with the step overhead above) and, per link message in a row on its critical path
//     (coordinator::CriticalHops), the link's one-way latency and the collective step cost the
//     plan prices, divided by those messages: what each collective step costs the workers
//     beyond them (the hand-offs between a worker's compute thread and the transport).
// Negative residuals are taken as 0. Wall-clock timings (run it on a quiet machine); starts and
// stops its worker processes (nothing outlives it). Needs lockstep-worker (launch::
// WorkerExecutable).
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>

#include "lockstep/topology/topology.h"

namespace lockstep::cli {

struct RuntimeProbe {
  int64_t step_overhead_ns = 0;
  int64_t collective_overhead_ns = 0;
  // The runs: the decode step and the workers' compute in it (ns), the 1x2 step's critical
  // hops; the 1x2 figures are 0 when the topology has one chip.
  int64_t single_measured_ns = 0, single_compute_ns = 0;
  int64_t pair_measured_ns = 0, pair_compute_ns = 0, pair_hops = 0;
};

// `topo`: the host topology calibrate --host writes (its chips' cost figures as measured, with
// step_overhead_ns 0). `quick`: fewer tokens.
RuntimeProbe ProbeRuntime(const topology::Topology& topo, const std::string& backend, bool quick,
                          const std::shared_ptr<spdlog::logger>& log);

}  // namespace lockstep::cli
