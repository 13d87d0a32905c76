// Slowest, MedianFigures, Spreads, MakeHostChip, HostTopology (host_chip.h): the measured figures
// as a chip spec and a topology.
#include "lockstep/hostcal/host_chip.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace lockstep::hostcal {
namespace {

int64_t Round(double v) { return std::max<int64_t>(1, static_cast<int64_t>(std::llround(v))); }

// Every figure of a core: the rates (more is faster) and the fixed costs (more is slower).
constexpr double CoreFigures::*kRates[] = {
    &CoreFigures::read_bytes_per_s,         &CoreFigures::fp32_weight_bytes_per_s,
    &CoreFigures::fp32_ops_per_s_1,         &CoreFigures::fp32_ops_per_s_16,
    &CoreFigures::int8_block32_ops_per_s_1, &CoreFigures::int8_block32_ops_per_s_16,
    &CoreFigures::int8_channel_ops_per_s_1, &CoreFigures::int8_channel_ops_per_s_16,
    &CoreFigures::vector_ops_per_s,
};
constexpr double CoreFigures::*kCosts[] = {&CoreFigures::op_overhead_ns};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (v[(n - 1) / 2] + v[n / 2]) / 2;
}

Spread SpreadOf(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  s.median = Median(std::move(v));
  return s;
}

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
    for (double CoreFigures::*rate : kRates) slow.*rate = std::min(slow.*rate, f.*rate);
    for (double CoreFigures::*cost : kCosts) slow.*cost = std::max(slow.*cost, f.*cost);
  }
  return slow;
}

CoreFigures MedianFigures(const std::vector<CoreFigures>& rounds) {
  CoreFigures out = rounds.front();
  auto median = [&](double CoreFigures::*field) {
    std::vector<double> v;
    for (const CoreFigures& f : rounds) v.push_back(f.*field);
    out.*field = Median(std::move(v));
  };
  for (double CoreFigures::*rate : kRates) median(rate);
  for (double CoreFigures::*cost : kCosts) median(cost);
  return out;
}

std::vector<std::pair<std::string, Spread>> Spreads(const HostMeasurements& m) {
  // A core figure's rounds are those of the core the chip takes it from: the least median of a
  // rate, the greatest of a cost (Slowest over m.per_core), so the spread's median is the figure.
  auto core = [&](double CoreFigures::*field, bool cost) {
    size_t c = 0;
    for (size_t i = 1; i < m.per_core.size(); ++i) {
      const double v = m.per_core[i].*field, best = m.per_core[c].*field;
      if (cost ? v > best : v < best) c = i;
    }
    std::vector<double> v;
    for (const RoundFigures& r : m.rounds) {
      if (c < r.per_core.size()) v.push_back(r.per_core[c].*field);
    }
    return SpreadOf(std::move(v));
  };
  auto link = [&](auto get) {
    std::vector<double> v;
    for (const RoundFigures& r : m.rounds) v.push_back(get(r));
    return SpreadOf(std::move(v));
  };
  using R = const RoundFigures&;
  using C = CoreFigures;
  return {
      {"read_bytes_per_s", core(&C::read_bytes_per_s, false)},
      {"fp32_weight_bytes_per_s", core(&C::fp32_weight_bytes_per_s, false)},
      {"fp32_decode_ops_per_s", core(&C::fp32_ops_per_s_1, false)},
      {"fp32_ops_per_s_16_rows", core(&C::fp32_ops_per_s_16, false)},
      {"int8_block32_ops_per_s_16_rows", core(&C::int8_block32_ops_per_s_16, false)},
      {"int8_channel_ops_per_s_16_rows", core(&C::int8_channel_ops_per_s_16, false)},
      {"op_overhead_ns", core(&C::op_overhead_ns, true)},
      {"vector_ops_per_s", core(&C::vector_ops_per_s, false)},
      {"concurrent_weight_bytes_per_s", link([](R r) { return r.concurrent_weight_bytes_per_s; })},
      {"link_one_way_ns", link([](R r) { return r.link.one_way_ns; })},
      {"link_bytes_per_s", link([](R r) { return r.link.bytes_per_s; })},
  };
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
      // The cores' shared memory: what they stream together, each computing at once.
      {"shared_weight_stream_bytes_per_s", std::to_string(Round(m.concurrent_weight_bytes_per_s))},
  };
  return h;
}

HostChip WithRuntimeCosts(HostChip h, int64_t step_overhead_ns, int64_t collective_overhead_ns) {
  h.step_overhead_ns = std::max<int64_t>(0, step_overhead_ns);
  h.collective_overhead_ns = std::max<int64_t>(0, collective_overhead_ns);
  h.spec.cost_params["step_overhead_ns"] = std::to_string(h.step_overhead_ns);
  h.spec.cost_params["collective_step_overhead_ns"] =
      std::to_string(Round(h.slow.op_overhead_ns) + h.collective_overhead_ns);
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
         << Round(m.link.one_way_ns) << " ns, " << Gb(m.link.bytes_per_s) << " GB/s; all "
         << m.cores.size() << " core(s) at once " << Gb(m.concurrent_weight_bytes_per_s)
         << " GB/s of weights; medians of " << m.rounds.size() << " round(s)\n"
         << (h.step_overhead_ns < 0
                 ? "# not measured: the workers' step bookkeeping (step_overhead_ns 0)\n"
                 : "# the runtime's own costs (a small model run by worker processes): " +
                       std::to_string(h.step_overhead_ns) + " ns per step, " +
                       std::to_string(h.collective_overhead_ns) +
                       " ns per collective step beyond the link's latency\n");
  return header.str();
}

}  // namespace lockstep::hostcal
