// This host as a chip: what `lockstep calibrate --host` measures and writes.
//
// MeasureHost times, on each given core in turn (the calling thread pinned to it), the read
// bandwidth of memory and Lockstep's own decode kernels (model::MatMul over fp32, int8-block32
// and int8-channel weights larger than the cache, at 1 and 16 rows; a small product as the fixed
// cost of an op; a vector sum), then the transport ("ipc" or "tcp") between a forked peer pinned
// to the second core and the caller pinned to the first: one-way latency as half the median
// ping-pong of small tensors, throughput as a stream of 1 MiB tensors the peer reads through.
// Each figure is the median of several timings. The caller's affinity is restored. A core the OS
// will not pin is an InvalidInput error naming it. Wall-clock timings: the figures are what the
// cores give at the time, so run it on a quiet machine; nothing here shapes a plan except
// through the file the caller writes.
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

// Every chosen core, and the transport between the first two (the first with itself when only
// one is chosen).
struct HostMeasurements {
  std::vector<topology::HostCore> cores;
  std::vector<CoreFigures> per_core;
  int link_a = 0, link_b = 0;  // the cores the transport ran between
  LinkFigures link;
};

struct MeasureOptions {
  std::string backend = "ipc";                       // the transport: ipc or tcp
  bool quick = false;                                // smaller weights, fewer repetitions (tests)
  std::function<void(const std::string&)> progress;  // a line per stage; may be empty
};

// Measures `cores` (non-empty) as above.
HostMeasurements MeasureHost(std::vector<topology::HostCore> cores, const MeasureOptions& options);

// What calibrate --host writes: `chips` chips of one spec, the slowest core's figures.
struct HostChip {
  CoreFigures slow;
  int chips = 0;
  topology::ChipSpec spec;
};

// The slowest core's figures: the least of every rate, the most of every fixed cost.
CoreFigures Slowest(const std::vector<CoreFigures>& per_core);

// The chip spec for `chips` chips (0: one per measured core); `memory_bytes` is the host's
// memory, shared by its chips as their SRAM.
HostChip MakeHostChip(const HostMeasurements& m, int chips, int64_t memory_bytes);

// `h.chips` chips of `h.spec`, linked all to all (chip i's port to chip j is j if j < i, else
// j - 1), named "host-BACKEND".
topology::Topology HostTopology(const HostChip& h, const std::string& backend);

// The comment lines written above the topology: what was measured, and what was not.
std::string HostTopologyHeader(const HostMeasurements& m, const HostChip& h,
                               const std::string& backend, bool quick);

// Bytes (or ops) per second as GB/s with two decimals: "12.34".
std::string Gb(double per_s);

}  // namespace lockstep::hostcal
