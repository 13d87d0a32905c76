// The simulator: discrete-event execution of a GlobalSchedule's programs in virtual time.
//
// It does not read the planned times. It knows only each program's instruction order, each
// Compute/Reduce duration, the link model (HopTimeNs from the topology) and the message ids:
// an instruction starts when its deps have ended, its message (Recv/Forward) has arrived and
// its resource (the chip's compute unit, or the outgoing link direction) has finished the
// previous instruction that uses it in program order. With no perturbation it reproduces the
// planned times exactly; with jitter (seeded, deterministic) or a failed link it shows what the
// static schedule would do. Events are processed in (time, chip, instruction) order, so a run is
// deterministic. Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/partition/cost_model.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/topology.h"

namespace lockstep::schedule {

struct SimulateOptions {
  // Must match the options the schedule was compiled with.
  partition::LinkCostParams link_params;
  // Each Compute/Reduce duration d becomes d + floor(d x jitter x u), u uniform in [0, 1) from a
  // generator seeded with `seed` (splitmix64; the same seed gives the same run).
  double jitter = 0.0;
  uint64_t seed = 1;
  // Links that fail: the first transfer that tries one stops the run with a failure naming the
  // chip, link and step.
  std::vector<LinkId> failed_links;
  // Modulo schedules: the periods to run (0 = the schedule's iterations). The simulator runs
  // Unroll(schedule, iterations), so SimResult's per-instruction times index that form.
  int64_t iterations = 0;
  // Keep every instruction's simulated start/end in SimResult::start_ns/end_ns (for traces).
  bool keep_times = true;
};

// A measured figure beside its bound: ratio = measured / bound (>= 1 for a lower bound of a
// time, <= 1 for an upper bound of a rate or utilization).
struct Measured {
  double value = 0;
  double bound = 0;
  double ratio = 0;
};

struct SimMetrics {
  Measured token_latency_ns;       // mean time between consecutive tokens of one sequence;
                                   // bound: the compute path with zero communication
  Measured tokens_per_s_per_user;  // 1e9 / token latency; bound: 1e9 / compute path
  Measured tokens_per_s;           // all tokens x batch / the decode window (first decode start
                                   // to last decode end; utilizations use the same window);
                                   // bound: sequences x batch / max(compute path, sequences x
                                   // slowest stage's compute)
  Measured compute_utilization;    // mean over stage chips of compute busy / makespan; bound:
                                   // the same with the lower-bound rate
  double compute_utilization_max = 0;
  Measured link_utilization;  // mean over link directions used of busy / makespan
  double link_utilization_max = 0;
  Measured time_to_first_token_ns;  // sequence 0's prefill pass, start to its token back at
                                    // stage 0 (0 when prefill was not compiled); bound: the
                                    // prefill compute path with zero communication
  Measured bubble_fraction;         // 1 - compute utilization; bound: 1 - the utilization bound
  int64_t predicted_token_latency_ns = 0;  // the compiler's planned figure
  int64_t makespan_ns = 0;
  int64_t events = 0;  // instruction starts and ends processed
};

struct SimResult {
  bool ok = true;
  std::string failure;  // when !ok: chip, link, step and time of the first failed transfer
  int64_t failure_ns = 0;
  SimMetrics metrics;
  // Per program, per instruction (when keep_times): simulated times; -1 = never ran.
  std::vector<std::vector<int64_t>> start_ns;
  std::vector<std::vector<int64_t>> end_ns;
};

SimResult Simulate(const GlobalSchedule& schedule, const topology::Topology& topo,
                   const SimulateOptions& options = {});

}  // namespace lockstep::schedule
