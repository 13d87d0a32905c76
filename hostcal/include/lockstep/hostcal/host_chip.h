// This host as a chip: what `lockstep calibrate --host` measures and writes.
//
// MeasureHost times, on each given core in turn (the calling thread pinned to it), the read
// bandwidth of memory and Lockstep's own decode kernels (model::MatMul over fp32, int8-block32
// and int8-channel weights larger than the cache, at 1 and 16 rows; a small product as the fixed
// cost of an op; a vector sum), then the transport ("ipc" or "tcp") between a forked peer pinned
// to the second core and the caller pinned to the first: one-way latency as half the median
// ping-pong of small tensors, throughput as a stream of 1 MiB tensors the peer reads through;
// and the fp32 decode kernel on every given core at once (a thread pinned to each, each over its
// own weights), whose total weight rate is what the cores' shared memory gives them together.
// All of it is done `rounds` times, one round after another (so a passing disturbance meets one
// round, not every timing of one figure); each figure is the median over the rounds of a median
// of timings within the round, and the rounds' figures are kept to show the spread. The
// caller's affinity is restored. A core the OS will not pin is an InvalidInput error naming it.
// Wall-clock timings: the figures are what the cores give at the time, so run it on a quiet
// machine; nothing here shapes a plan except through the file the caller writes.
//
// MakeHostChip and HostTopology are pure: the chip spec ("host-core") takes the slowest core's
// figures (a step waits for its slowest chip) and the cost parameters the cost model reads;
// the topology links `chips` such chips all to all.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lockstep/topology/host.h"
#include "lockstep/topology/topology.h"

namespace lockstep::hostcal {

// One core's figures (per second, or ns).
struct CoreFigures {
  int core = 0;
  std::vector<int> pus;
  double read_bytes_per_s = 0;
  double fp32_weight_bytes_per_s = 0;  // one row: the weight stream of a decode product
  double fp32_ops_per_s_1 = 0;         // one row
  double fp32_ops_per_s_16 = 0;        // 16 rows (sequences in flight)
  double int8_block32_ops_per_s_1 = 0, int8_block32_ops_per_s_16 = 0;
  double int8_channel_ops_per_s_1 = 0, int8_channel_ops_per_s_16 = 0;
  double op_overhead_ns = 0;  // one small product (8 x 64): the fixed cost of an op
  double vector_ops_per_s = 0;
};

// The transport between two pinned processes.
struct LinkFigures {
  double one_way_ns = 0;
  double bytes_per_s = 0;
};

// One round's figures (MeasureOptions::rounds).
struct RoundFigures {
  std::vector<CoreFigures> per_core;  // in the order of HostMeasurements::cores
  LinkFigures link;
  double concurrent_weight_bytes_per_s = 0;
};

// Every chosen core, and the transport between the first two (the first with itself when only
// one is chosen): the medians over the rounds, and each round's figures.
struct HostMeasurements {
  std::vector<topology::HostCore> cores;
  std::vector<CoreFigures> per_core;  // each figure the median over the rounds (MedianFigures)
  int link_a = 0, link_b = 0;         // the cores the transport ran between
  LinkFigures link;
  // The fp32 decode kernel's weight bytes per second of all the cores together, each running it
  // at once over its own weights: less than the sum of the cores' own rates when they share a
  // memory bus.
  double concurrent_weight_bytes_per_s = 0;
  std::vector<RoundFigures> rounds;
};

struct MeasureOptions {
  std::string backend = "ipc";  // the transport: ipc or tcp
  bool quick = false;           // smaller weights, fewer repetitions (tests)
  int rounds = 3;               // times everything is measured (>= 1); medians over them
  std::function<void(const std::string&)> progress;  // a line per stage; may be empty
};

// Measures `cores` (non-empty) as above.
HostMeasurements MeasureHost(std::vector<topology::HostCore> cores, const MeasureOptions& options);

// What calibrate --host writes: `chips` chips of one spec, the slowest core's figures.
struct HostChip {
  CoreFigures slow;
  int chips = 0;
  topology::ChipSpec spec;
  // The runtime's own costs (WithRuntimeCosts); -1 = not measured.
  int64_t step_overhead_ns = -1;
  int64_t collective_overhead_ns = -1;
};

// The slowest core's figures: the least of every rate, the most of every fixed cost.
CoreFigures Slowest(const std::vector<CoreFigures>& per_core);

// Each figure the median of its values in `rounds` (non-empty, one core's figures per round;
// an even count takes the mean of the middle two); core and PUs from the first.
CoreFigures MedianFigures(const std::vector<CoreFigures>& rounds);

// One figure over the rounds: its least, median and greatest value.
struct Spread {
  double min = 0, median = 0, max = 0;
};
// The spread over the rounds of every figure the chip spec is made of (a core figure's over the
// rounds of the core whose median the chip takes, m.per_core being the medians; the link's; the
// concurrent rate), by the name --json gives it, in a fixed order.
std::vector<std::pair<std::string, Spread>> Spreads(const HostMeasurements& m);

// The chip spec for `chips` chips (0: one per measured core); `memory_bytes` is the host's
// memory, shared by its chips as their SRAM.
HostChip MakeHostChip(const HostMeasurements& m, int chips, int64_t memory_bytes);

// `h` with the runtime's own costs, measured by running the runtime (calibrate --host's probe):
// the workers' per-step cost as step_overhead_ns, and their per-collective-step cost beyond the
// link's latency added to collective_step_overhead_ns (which the schedule compiler charges per
// collective step too). Both >= 0.
HostChip WithRuntimeCosts(HostChip h, int64_t step_overhead_ns, int64_t collective_overhead_ns);

// `h.chips` chips of `h.spec`, linked all to all (chip i's port to chip j is j if j < i, else
// j - 1), named "host-BACKEND".
topology::Topology HostTopology(const HostChip& h, const std::string& backend);

// The comment lines written above the topology: what was measured, and what was not.
std::string HostTopologyHeader(const HostMeasurements& m, const HostChip& h,
                               const std::string& backend, bool quick);

// Bytes (or ops) per second as GB/s with two decimals: "12.34".
std::string Gb(double per_s);

}  // namespace lockstep::hostcal
