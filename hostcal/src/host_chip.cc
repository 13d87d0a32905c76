// Slowest, MakeHostChip, HostTopology (host_chip.h): the measured figures as a chip spec and a
// topology.
#include "lockstep/hostcal/host_chip.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace lockstep::hostcal {
namespace {

int64_t Round(double v) { return std::max<int64_t>(1, static_cast<int64_t>(std::llround(v))); }

}  // namespace

std::string Gb(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << v / 1e9;
  return s.str();
}

// The chip: the slowest core's figures (a step waits for its slowest chip).
CoreFigures Slowest(const std::vector<CoreFigures>& per_core) {
  CoreFigures slow = per_core.front();
  for (const CoreFigures& f : per_core) {
    slow.read_bytes_per_s = std::min(slow.read_bytes_per_s, f.read_bytes_per_s);
    slow.fp32_weight_bytes_per_s =
        std::min(slow.fp32_weight_bytes_per_s, f.fp32_weight_bytes_per_s);
    slow.fp32_ops_per_s_1 = std::min(slow.fp32_ops_per_s_1, f.fp32_ops_per_s_1);
    slow.fp32_ops_per_s_16 = std::min(slow.fp32_ops_per_s_16, f.fp32_ops_per_s_16);
    slow.int8_block32_ops_per_s_1 =
        std::min(slow.int8_block32_ops_per_s_1, f.int8_block32_ops_per_s_1);
    slow.int8_block32_ops_per_s_16 =
        std::min(slow.int8_block32_ops_per_s_16, f.int8_block32_ops_per_s_16);
    slow.int8_channel_ops_per_s_1 =
        std::min(slow.int8_channel_ops_per_s_1, f.int8_channel_ops_per_s_1);
    slow.int8_channel_ops_per_s_16 =
        std::min(slow.int8_channel_ops_per_s_16, f.int8_channel_ops_per_s_16);
    slow.op_overhead_ns = std::max(slow.op_overhead_ns, f.op_overhead_ns);
    slow.vector_ops_per_s = std::min(slow.vector_ops_per_s, f.vector_ops_per_s);
  }
  return slow;
}

HostChip MakeHostChip(const HostMeasurements& m, int chips, int64_t memory_bytes) {
  HostChip h;
  h.slow = Slowest(m.per_core);
  const CoreFigures& slow = h.slow;
  const LinkFigures& link = m.link;
  const int n = chips > 0 ? chips : static_cast<int>(m.cores.size());
  h.chips = n;
  topology::ChipSpec& spec = h.spec;
  spec.name = "host-core";
  spec.sram_bytes =
      std::max<int64_t>(1, memory_bytes / n);  // the host's memory shared by its chips
  // Matrix compute: the kernels' rate with 16 rows in flight (one row streams the weight at
  // weight_stream_bytes_per_s below, which bounds decode at one sequence).
  spec.peak_ops_per_s[static_cast<int>(Dtype::kFp32)] = Round(slow.fp32_ops_per_s_16);
  spec.peak_ops_per_s[static_cast<int>(Dtype::kInt8)] =
      Round(std::min(slow.int8_block32_ops_per_s_16, slow.int8_channel_ops_per_s_16));
  spec.memory_bandwidth_bytes_per_s = Round(slow.read_bytes_per_s);
  spec.clock_hz = 1'000'000'000;  // unused by the cost model; a host core has no single figure
  spec.ports = std::max(1, n - 1);
  spec.link_bandwidth_bytes_per_s = Round(link.bytes_per_s);
  spec.link_latency_ns = Round(link.one_way_ns);
  const int64_t op_ns = Round(slow.op_overhead_ns);
  spec.cost_params = {
      {"matrix_efficiency", "1"},
      {"weight_stream_bytes_per_s", std::to_string(Round(slow.fp32_weight_bytes_per_s))},
      {"vector_ops_per_s", std::to_string(Round(slow.vector_ops_per_s))},
      {"memory_efficiency", "1"},
      {"op_overhead_ns", std::to_string(op_ns)},
      {"matrix_fill_ns", "0"},
      {"vector_fill_ns", "0"},
      {"layer_sync_ns", "0"},
      {"link_efficiency", "1"},
      {"hop_latency_ns", "-1"},
      {"collective_step_overhead_ns", std::to_string(op_ns)},
      {"control_hops", "2"},
      {"control_hop_ns", std::to_string(Round(link.one_way_ns))},
      {"step_overhead_ns", "0"},
      {"cores", std::to_string(m.cores.size())},
  };
  return h;
}

topology::Topology HostTopology(const HostChip& h, const std::string& backend) {
  const int n = h.chips;
  topology::Topology topo("host-" + backend);
  const int s = topo.AddSpec(h.spec);
  for (int i = 0; i < n; ++i) topo.AddChip(0, 0, false, s);
  // All to all: chip i's port to chip j is j (j < i) or j - 1 (j > i).
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      topo.AddLink({i, j - 1}, {j, i});
    }
  }
  return topo;
}

std::string HostTopologyHeader(const HostMeasurements& m, const HostChip& h,
                               const std::string& backend, bool quick) {
  const int n = h.chips;
  const CoreFigures& slow = h.slow;
  std::ostringstream header;
  header << "# lockstep calibrate --host --transport " << backend << (quick ? " --quick" : "")
         << ": " << n << " chip(s) on " << m.cores.size() << " core(s) of this host\n"
         << "# the slowest core's figures: read " << Gb(slow.read_bytes_per_s)
         << " GB/s, fp32 weight stream " << Gb(slow.fp32_weight_bytes_per_s)
         << " GB/s, fp32 16 rows " << Gb(slow.fp32_ops_per_s_16) << " Gflop/s, int8 16 rows "
         << Gb(static_cast<double>(h.spec.peak_ops(Dtype::kInt8))) << " Gop/s, small product "
         << Round(slow.op_overhead_ns) << " ns; " << backend << " one-way "
         << Round(m.link.one_way_ns) << " ns, " << Gb(m.link.bytes_per_s) << " GB/s\n"
         << "# not measured: the workers' step bookkeeping (step_overhead_ns 0)\n";
  return header.str();
}

}  // namespace lockstep::hostcal
