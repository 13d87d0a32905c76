// `lockstep calibrate --host`: this machine as a chip (issue #21, item 3) — the command line,
// the file written and the report; the measurements and the chip they make are hostcal/'s
// (host_chip.h). Writes a topology file: one chip per usable core (or --chips N), all of one
// custom chip spec whose figures and cost parameters are the slowest core's measurements,
// linked all to all with the measured transport. Every figure is the median of --rounds rounds
// of measurements; --json shows each one's spread.
//
// Then (unless --no-runtime) the runtime's own costs, measured by running it: calibrate_runtime.h.
// What is not measured: the pipeline fills (0: a core has no separate matrix unit to fill); the
// control socket's hop is taken as the link's one-way latency (the same ZeroMQ transport kind).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "calibrate_runtime.h"
#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/hostcal/host_chip.h"
#include "lockstep/topology/host.h"
#include "lockstep/topology/io.h"
#include "run_inputs.h"

namespace lockstep::cli {
namespace {

using hostcal::CoreFigures;
using hostcal::Gb;
using hostcal::HostChip;
using hostcal::HostMeasurements;

// "0,1,3" -> core indices.
std::vector<int> ParseCores(const std::string& text) {
  std::vector<int> out;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || v < 0) {
      throw UsageError("--cores: expected core indices like 0,1,2, got '" + text + "'");
    }
    out.push_back(v);
  }
  if (out.empty()) throw UsageError("--cores: give at least one core index");
  return out;
}

// The command line of `calibrate --host`, checked (ParseHostFlags).
struct HostFlags {
  std::string backend = "ipc", out, cores_text;
  int chips = 0;
  int rounds = 3;
  bool quick = false;
  bool runtime = true;  // run the runtime probe (calibrate_runtime.h)
};

// Parses and checks `args` (the output folder too); nullopt when --help was printed.
std::optional<HostFlags> ParseHostFlags(const std::vector<std::string>& args) {
  HostFlags flags;
  po::options_description opts("options");
  opts.add_options()("host", "measure this machine (required for this form)")(
      "transport", po::value<std::string>(&flags.backend)->default_value("ipc"),
      "the links between the chips: ipc or tcp (what `lockstep run --transport` will use)")(
      "chips", po::value<int>(&flags.chips)->default_value(0),
      "chips in the topology (0 = one per usable core); with more chips than cores, chip i "
      "runs on core i mod cores as `lockstep run` pins its workers")(
      "cores", po::value<std::string>(&flags.cores_text),
      "measure only these cores (hwloc logical indices, e.g. 0,1; default: every usable core)")(
      "rounds", po::value<int>(&flags.rounds)->default_value(3),
      "measure everything this many times, one round after another; each figure written is "
      "the median over the rounds (--json shows each figure's spread)")(
      "no-runtime",
      "do not run the runtime probe (a small model over worker processes): step_overhead_ns 0 "
      "and the collective step's cost without the workers' hand-offs")(
      "quick", "shorter measurements (smaller weights, fewer repetitions): for tests")(
      "output,o", po::value<std::string>(&flags.out), "write the topology file here");
  po::variables_map vm;
  const std::string usage =
      "lockstep calibrate --host [--transport ipc|tcp] [--chips N] [--cores LIST] [--rounds N] "
      "[--quick] -o HOST.yaml [--json]\n\n"
      "Measures this machine as a chip: on every usable core (pinned), the read bandwidth of\n"
      "memory and the speed of Lockstep's own decode kernels (fp32, int8-block32 and\n"
      "int8-channel products at 1 and 16 rows, over weights larger than the cache, and the fixed\n"
      "cost of a small product); the fp32 kernel on all cores at once (what their shared memory\n"
      "gives them together); between two pinned processes the one-way latency and the\n"
      "throughput of the transport; all of it --rounds times, each figure the median over the\n"
      "rounds; then the runtime's own costs, a small model run by lockstep-worker processes over\n"
      "the transport (one chip, then TP 2): its decode step beyond the workers' compute and what\n"
      "the plan prices is the workers' per-step cost (step_overhead_ns) and, per collective\n"
      "step, their hand-offs (added to collective_step_overhead_ns). Writes a topology file (one "
      "chip per core, one "
      "custom chip\n"
      "spec holding the slowest core's figures as its cost parameters, all chips linked by the\n"
      "transport), so that `lockstep plan --model M --topology HOST.yaml` predicts what\n"
      "`lockstep run --plan P --transport T --json` measures (predicted_token_latency_ns beside\n"
      "measured_token_latency_ns). Takes a few seconds per core (--quick: about one); progress on\n"
      "stderr. Run it on a quiet machine: the figures are what the cores give at the time.";
  if (!ParseOrHelp(args, usage, opts, {}, vm)) return std::nullopt;
  if (flags.backend != "ipc" && flags.backend != "tcp") {
    throw UsageError("--transport must be ipc or tcp, got '" + flags.backend + "'");
  }
  if (flags.out.empty()) {
    throw UsageError("-o HOST.yaml is required (see: lockstep calibrate --help)");
  }
  if (flags.chips < 0) throw UsageError("--chips must be >= 0 (0 = one per usable core)");
  if (flags.rounds < 1) throw UsageError("--rounds must be >= 1");
  CheckOutputFile(flags.out, "-o");
  flags.quick = vm.count("quick") > 0;
  flags.runtime = vm.count("no-runtime") == 0;
  return flags;
}

// The cores to measure, as hwloc reports them: every usable one, or --cores' (in its order,
// each once); a core that is not there is a usage error.
std::vector<topology::HostCore> ChooseCores(const std::string& cores_text) {
  const topology::HostSummary host = topology::DiscoverHost();
  std::vector<topology::HostCore> all;
  for (const topology::NumaDomain& d : host.numa) {
    for (const topology::HostCore& c : d.cores) all.push_back(c);
  }
  std::sort(all.begin(), all.end(), [](const topology::HostCore& x, const topology::HostCore& y) {
    return x.index < y.index;
  });
  if (all.empty())
    throw Error(ErrorCode::kInvalidInput, "calibrate --host: hwloc reports no cores");
  if (cores_text.empty()) return all;
  std::vector<topology::HostCore> cores;
  for (int want : ParseCores(cores_text)) {
    auto it = std::find_if(all.begin(), all.end(),
                           [&](const topology::HostCore& c) { return c.index == want; });
    if (it == all.end()) {
      throw UsageError("--cores: core " + std::to_string(want) + " is not on this host (cores 0-" +
                       std::to_string(all.back().index) + ")");
    }
    if (std::none_of(cores.begin(), cores.end(),
                     [&](const topology::HostCore& c) { return c.index == want; })) {
      cores.push_back(*it);
    }
  }
  return cores;
}

// Writes the topology under a header of where its figures came from; through a temporary file
// renamed into place.
void WriteHostTopology(const HostFlags& flags, const HostMeasurements& m, const HostChip& h) {
  const std::string tmp = flags.out + ".tmp";
  std::ofstream f(tmp, std::ios::binary);
  f << hostcal::HostTopologyHeader(m, h, flags.backend, flags.quick)
    << topology::WriteTopologyYaml(hostcal::HostTopology(h, flags.backend));
  f.close();
  if (!f) throw Error(ErrorCode::kInternal, "cannot write " + tmp);
  std::filesystem::rename(tmp, flags.out);
}

// --json: the slowest core's figures, the link's, every core's and the chip spec written.
void PrintHostJson(const HostFlags& flags, const HostMeasurements& m, const HostChip& h,
                   const std::optional<RuntimeProbe>& probe) {
  nlohmann::json rows = nlohmann::json::array();
  for (const CoreFigures& f : m.per_core) {
    rows.push_back({{"core", f.core},
                    {"pus", f.pus},
                    {"read_bytes_per_s", f.read_bytes_per_s},
                    {"fp32_weight_bytes_per_s", f.fp32_weight_bytes_per_s},
                    {"fp32_decode_ops_per_s", f.fp32_ops_per_s_1},
                    {"fp32_ops_per_s_16_rows", f.fp32_ops_per_s_16},
                    {"int8_block32_decode_ops_per_s", f.int8_block32_ops_per_s_1},
                    {"int8_block32_ops_per_s_16_rows", f.int8_block32_ops_per_s_16},
                    {"int8_channel_decode_ops_per_s", f.int8_channel_ops_per_s_1},
                    {"int8_channel_ops_per_s_16_rows", f.int8_channel_ops_per_s_16},
                    {"op_overhead_ns", f.op_overhead_ns},
                    {"vector_ops_per_s", f.vector_ops_per_s}});
  }
  const topology::ChipSpec& spec = h.spec;
  const CoreFigures& slow = h.slow;
  nlohmann::json figures = nlohmann::json::object();
  for (const auto& [k, v] : spec.cost_params) figures[k] = v;
  // Each figure over the rounds: least, median, greatest, and (greatest - least) / median.
  nlohmann::json spread = nlohmann::json::object();
  for (const auto& [name, s] : hostcal::Spreads(m)) {
    spread[name] = {{"min", s.min},
                    {"median", s.median},
                    {"max", s.max},
                    {"relative", s.median > 0 ? (s.max - s.min) / s.median : 0.0}};
  }
  nlohmann::json runtime = nullptr;
  if (probe) {
    runtime = {{"step_overhead_ns", probe->step_overhead_ns},
               {"collective_overhead_ns", probe->collective_overhead_ns},
               {"single_measured_ns", probe->single_measured_ns},
               {"single_compute_ns", probe->single_compute_ns},
               {"pair_measured_ns", probe->pair_measured_ns},
               {"pair_compute_ns", probe->pair_compute_ns},
               {"pair_hops", probe->pair_hops}};
  }
  PrintJson({{"output", flags.out},
             {"transport", flags.backend},
             {"cores", m.cores.size()},
             {"chips", h.chips},
             {"quick", flags.quick},
             {"read_bytes_per_s", slow.read_bytes_per_s},
             {"fp32_decode_ops_per_s", slow.fp32_ops_per_s_1},
             {"fp32_weight_bytes_per_s", slow.fp32_weight_bytes_per_s},
             {"int8_decode_ops_per_s",
              std::min(slow.int8_block32_ops_per_s_1, slow.int8_channel_ops_per_s_1)},
             {"link_one_way_ns", m.link.one_way_ns},
             {"link_bytes_per_s", m.link.bytes_per_s},
             {"concurrent_weight_bytes_per_s", m.concurrent_weight_bytes_per_s},
             {"rounds", m.rounds.size()},
             {"spread", spread},
             {"runtime_probe", runtime},
             {"per_core", rows},
             {"chip_spec",
              {{"name", spec.name},
               {"sram_bytes", spec.sram_bytes},
               {"peak_ops_per_s",
                {{"fp32", spec.peak_ops(Dtype::kFp32)}, {"int8", spec.peak_ops(Dtype::kInt8)}}},
               {"memory_bandwidth_bytes_per_s", spec.memory_bandwidth_bytes_per_s},
               {"ports", spec.ports},
               {"link_bandwidth_bytes_per_s", spec.link_bandwidth_bytes_per_s},
               {"link_latency_ns", spec.link_latency_ns}}},
             {"cost_params", figures}});
}

// Text: a line per core, the link's line, the file written.
void PrintHostText(const HostFlags& flags, const HostMeasurements& m, const HostChip& h,
                   const std::optional<RuntimeProbe>& probe) {
  std::cout << "host: " << m.cores.size() << " core(s) measured, " << h.chips
            << " chip(s) written\n";
  for (const CoreFigures& f : m.per_core) {
    std::cout << "  core " << f.core << ": read " << Gb(f.read_bytes_per_s) << " GB/s; fp32 "
              << Gb(f.fp32_ops_per_s_1) << " Gflop/s (1 row, " << Gb(f.fp32_weight_bytes_per_s)
              << " GB/s of weights), " << Gb(f.fp32_ops_per_s_16) << " (16 rows); int8-block32 "
              << Gb(f.int8_block32_ops_per_s_1) << " / " << Gb(f.int8_block32_ops_per_s_16)
              << " Gop/s, int8-channel " << Gb(f.int8_channel_ops_per_s_1) << " / "
              << Gb(f.int8_channel_ops_per_s_16) << "; small product "
              << static_cast<int64_t>(f.op_overhead_ns) << " ns\n";
  }
  std::cout << "  " << flags.backend << " between cores " << m.link_a << " and " << m.link_b
            << ": one-way " << std::fixed << std::setprecision(1) << m.link.one_way_ns / 1e3
            << " us, " << Gb(m.link.bytes_per_s) << " GB/s\n"
            << "  all " << m.cores.size()
            << " core(s) at once: " << Gb(m.concurrent_weight_bytes_per_s)
            << " GB/s of fp32 weights\n"
            << "  medians of " << m.rounds.size() << " round(s); spread (max - min) / median:";
  for (const auto& [name, s] : hostcal::Spreads(m)) {
    std::cout << " " << name << " " << std::setprecision(0)
              << (s.median > 0 ? 100 * (s.max - s.min) / s.median : 0.0) << "%";
  }
  std::cout << "\n";
  if (probe) {
    std::cout << "  the runtime (a small model over worker processes): "
              << probe->step_overhead_ns / 1000 << " us per step, "
              << probe->collective_overhead_ns / 1000
              << " us per collective step beyond the link's latency\n";
  }
  std::cout << "wrote " << flags.out << "\n";
}

}  // namespace

int CalibrateHost(const std::vector<std::string>& args, Context& ctx) {
  const std::optional<HostFlags> flags = ParseHostFlags(args);
  if (!flags) return 0;  // --help
  hostcal::MeasureOptions options;
  options.backend = flags->backend;
  options.quick = flags->quick;
  options.rounds = flags->rounds;
  options.progress = [&](const std::string& line) { ctx.log->info("{}", line); };
  const HostMeasurements m = hostcal::MeasureHost(ChooseCores(flags->cores_text), options);
  const int64_t memory =
      static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  HostChip chip = hostcal::MakeHostChip(m, flags->chips, memory);
  std::optional<RuntimeProbe> probe;
  if (flags->runtime) {
    probe = ProbeRuntime(hostcal::HostTopology(chip, flags->backend), flags->backend, flags->quick,
                         ctx.log);
    chip = hostcal::WithRuntimeCosts(std::move(chip), probe->step_overhead_ns,
                                     probe->collective_overhead_ns);
  }
  WriteHostTopology(*flags, m, chip);
  ctx.log->info("wrote {}", flags->out);
  if (ctx.json) {
    PrintHostJson(*flags, m, chip, probe);
  } else {
    PrintHostText(*flags, m, chip, probe);
  }
  return 0;
}

}  // namespace lockstep::cli
