// The simulator: discrete-event execution of a schedule's programs in virtual time.
//
// It runs the compact form (compact.h) directly, expanding its copies lazily into instances
// (phase, copy, chip, body instruction) without writing out explicit programs; an explicit
// GlobalSchedule runs as its one-copy compact view (AsCompact), so both forms run the same code.
// It does not read the planned times, only their order. It knows each instruction's kind, each
// Compute/Reduce duration, the link model (HopTimeNs from the topology) and the message ids: an
// instance starts when its deps have ended, its message (Recv/Forward) has arrived (a Forward:
// as the link model lets it pass the message on), its resource (the chip's compute unit, or the
// outgoing link direction) has finished the previous instance that uses it in planned start
// order, and — for an instruction without deps in its body — its slot's previous pass on that
// chip has ended (compact.h). Each slot's first pass enters the pipeline at its planned time (its
// first computing instructions start no earlier than planned), as sequences admitted into their
// slots would; everything after runs self-timed. Without perturbation every instance starts no
// later than planned
// (exactly as planned where the plan leaves no slack); with jitter (seeded, deterministic) or a
// failed link it shows what the static schedule would do. Events are processed in (time, end
// before start, chip, instance) order, so a run is deterministic. It also follows the critical
// path of sequence 0's last token back from its arrival at stage 0 and sums where that time
// went (SimResult::critical_path, gap). Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/partition/cost_model.h"
#include "lockstep/schedule/compact.h"
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
  // Decode passes to run: a compact schedule's decode tokens, a modulo GlobalSchedule's periods
  // (0 = the schedule's own count). Simulate(GlobalSchedule) of a modulo schedule indexes
  // SimResult::start_ns/end_ns by Unroll(schedule, iterations)'s programs.
  int64_t iterations = 0;
  // Keep every instruction's simulated start/end (SimResult::start_ns/end_ns for an explicit
  // schedule, instance_start_ns/instance_end_ns for a compact one).
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

// The instances of a compact schedule's run, numbered phase by phase, copy by copy, chip by chip
// (CompactSchedule::chips order), in body order. `passes` = decode passes (0 = schedule.tokens).
class InstanceIndex {
 public:
  InstanceIndex(const CompactSchedule& schedule, int64_t passes = 0);
  struct Where {
    size_t phase = 0;
    int64_t copy = 0;
    size_t chip = 0;  // index into CompactSchedule::chips
    size_t index = 0;
  };
  size_t size() const { return total_; }
  int64_t copies(size_t phase) const { return copies_[phase]; }
  size_t Id(const Where& w) const {
    return base_[w.phase] + static_cast<size_t>(w.copy) * per_copy_[w.phase] +
           offset_[w.phase][w.chip] + w.index;
  }
  Where At(size_t id) const;

 private:
  std::vector<size_t> base_;                 // per phase, and the total last
  std::vector<size_t> per_copy_;             // instructions per copy, per phase
  std::vector<int64_t> copies_;              // per phase
  std::vector<std::vector<size_t>> offset_;  // per phase, per chip (and the copy's size last)
  size_t total_ = 0;
};

// One step of a critical path: an instance and the time it accounts for, [start_ns, end_ns).
struct CriticalStep {
  size_t instance = 0;  // InstanceIndex id
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  std::string what;  // the category (GapShare::what)
};

// Time on the critical path of one category, and the stage where most of it went.
struct GapShare {
  // "compute", "collective reduce steps", "all-reduce transfers", "sampling gather transfers",
  // "stage-to-stage activations", "token return", "waiting for another slot on a compute unit",
  // "waiting for another slot on a link".
  std::string what;
  int64_t ns = 0;
  int32_t stage = -1;  // the stage with the largest share (-1: none)
  int64_t stage_ns = 0;
};

struct SimResult {
  bool ok = true;
  std::string failure;  // when !ok: chip, link, step and time of the first failed transfer
  int64_t failure_ns = 0;
  SimMetrics metrics;
  // Per program, per instruction (an explicit schedule, when keep_times): simulated times;
  // -1 = never ran.
  std::vector<std::vector<int64_t>> start_ns;
  std::vector<std::vector<int64_t>> end_ns;
  // Per instance (a compact schedule, when keep_times; InstanceIndex ids): simulated times.
  std::vector<int64_t> instance_start_ns;
  std::vector<int64_t> instance_end_ns;
  // The critical path of sequence 0's last decode token, in time order: from its pass's first
  // instance (or where it waited for its previous token) to the token back at stage 0. Steps of
  // another slot appear where this token waited for them on a compute unit or link.
  std::vector<CriticalStep> critical_path;
  // The critical path's time by category, largest first; their sum is the token's latency.
  std::vector<GapShare> gap;
};

SimResult Simulate(const CompactSchedule& schedule, const topology::Topology& topo,
                   const SimulateOptions& options = {});
SimResult Simulate(const GlobalSchedule& schedule, const topology::Topology& topo,
                   const SimulateOptions& options = {});

}  // namespace lockstep::schedule
