// `lockstep calibrate --host`: this machine as a chip (issue #21, item 3). Measures, on every
// usable core (hwloc's layout, the thread pinned to the core), the read bandwidth of memory and
// the speed of the project's own decode kernels (model::MatMul over fp32, int8-block32 and
// int8-channel weights larger than the last-level cache, at one row and at 16 rows, and the
// fixed cost of one small product); between two pinned processes (a forked child on the second
// core) the one-way latency (ping-pong of a small tensor, half the round trip) and the
// throughput (a stream of 1 MiB tensors the receiver reads through, as bench/transport_bench.cc
// measures them) of the chosen transport. Writes a topology file: one chip per usable core (or
// --chips N), all of one custom chip spec whose figures and cost parameters are the slowest
// core's measurements, linked all to all with the measured transport.
//
// What is not measured: the workers' per-step bookkeeping (step_overhead_ns stays 0) and the
// pipeline fills (0: a core has no separate matrix unit to fill); the control socket's hop is
// taken as the link's one-way latency (the same ZeroMQ transport kind).
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"
#include "lockstep/model/weight.h"
#include "lockstep/topology/host.h"
#include "lockstep/topology/io.h"
#include "lockstep/transport/transport.h"
#include "run_inputs.h"

namespace lockstep::cli {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NsSince(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// The median of `reps` timings of `f` (ns); each timing repeats f until at least `min_ns`
// passed and is divided by the repetitions. The median, not the best: a loaded machine's runs
// meet the same load.
template <typename F>
double MedianNs(int reps, int64_t min_ns, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    int64_t n = 0;
    const Clock::time_point t0 = Clock::now();
    int64_t elapsed = 0;
    do {
      f();
      ++n;
      elapsed = NsSince(t0);
    } while (elapsed < min_ns);
    t.push_back(static_cast<double>(elapsed) / static_cast<double>(n));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Pins the calling thread to `pus` (OS indices); false when the OS refuses.
bool PinTo(const std::vector<int>& pus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int pu : pus) {
    if (pu >= 0 && pu < CPU_SETSIZE) CPU_SET(pu, &set);
  }
  return CPU_COUNT(&set) > 0 && sched_setaffinity(0, sizeof(set), &set) == 0;
}

std::string PuList(const std::vector<int>& pus) {
  std::string s;
  for (int p : pus) s += (s.empty() ? "" : ",") + std::to_string(p);
  return s;
}

volatile uint64_t g_sink = 0;  // keeps measured loops from being optimized away

// Reads every 8-byte word of `words` with four independent sums (memory speed, not an adder
// chain), as bench/transport_bench.cc's consumer does.
uint64_t ReadAll(const std::vector<uint64_t>& words) {
  uint64_t s[4] = {0, 0, 0, 0};
  const size_t n = words.size() / 4 * 4;
  for (size_t i = 0; i < n; i += 4) {
    s[0] += words[i];
    s[1] += words[i + 1];
    s[2] += words[i + 2];
    s[3] += words[i + 3];
  }
  return s[0] + s[1] + s[2] + s[3];
}

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

// The weights the kernels run over: larger than the last-level cache, as a decode step's are.
struct KernelInputs {
  model::Weight fp32, block32, channel, small;
  std::vector<float> x;  // 16 rows of the contraction
  std::vector<float> y;
  std::vector<uint64_t> words;  // the read-bandwidth buffer
  std::vector<float> vec;       // the vector-unit buffer (in L1/L2)
};

KernelInputs MakeInputs(bool quick) {
  KernelInputs in;
  const int64_t rows = quick ? 3072 : 4096, cols = 4096;  // fp32: 48 / 64 MiB (L3: 32 MiB here)
  // Values in [-1, 1] from a cheap hash: what they are does not change the kernels' speed.
  auto u = [](size_t i) { return static_cast<float>((i * 2654435761u) % 2001) / 1000.0f - 1.0f; };
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < w.size(); ++i) w[i] = u(i);
  in.fp32 = model::Weight::Fp32(rows, cols, std::move(w));
  // int8: 4 times the rows, so the int8 weight is as many bytes as the fp32 one.
  const int64_t qrows = rows * 4;
  std::vector<int8_t> q(static_cast<size_t>(qrows * cols));
  for (size_t i = 0; i < q.size(); ++i)
    q[i] = static_cast<int8_t>(static_cast<int>(i * 37 % 255) - 127);
  std::vector<float> block_scales(static_cast<size_t>(qrows * ((cols + 31) / 32)), 0.01f);
  std::vector<float> row_scales(static_cast<size_t>(qrows), 0.01f);
  in.block32 = model::Weight::Int8(model::WeightFormat::kInt8Block32, qrows, cols, q, block_scales);
  in.channel = model::Weight::Int8(model::WeightFormat::kInt8Channel, qrows, cols, q, row_scales);
  std::vector<float> sw(8 * 64, 0.5f);
  in.small = model::Weight::Fp32(8, 64, std::move(sw));
  in.x.resize(static_cast<size_t>(16 * cols));
  for (size_t i = 0; i < in.x.size(); ++i) in.x[i] = u(i + 12345);
  in.y.resize(static_cast<size_t>(16 * qrows));
  in.words.assign((quick ? size_t{48} : size_t{128}) << 17, 1);  // 48 / 128 MiB
  in.vec.assign(16384, 0.25f);
  return in;
}

CoreFigures MeasureCore(const topology::HostCore& core, KernelInputs& in, bool quick) {
  CoreFigures f;
  f.core = core.index;
  f.pus = core.pus;
  const int reps = quick ? 3 : 7;
  const int64_t min_ns = quick ? 20'000'000 : 200'000'000;
  const double read_ns = MedianNs(reps, min_ns, [&] { g_sink = g_sink + ReadAll(in.words); });
  f.read_bytes_per_s = static_cast<double>(in.words.size() * 8) / read_ns * 1e9;
  auto rate = [&](const model::Weight& w, int64_t rows) {
    const double ns =
        MedianNs(reps, min_ns, [&] { model::MatMul(in.x.data(), rows, w, nullptr, in.y.data()); });
    return std::pair<double, double>{2.0 * static_cast<double>(rows * w.rows * w.cols) / ns * 1e9,
                                     static_cast<double>(w.bytes()) / ns * 1e9};
  };
  const auto [fp32_1, fp32_bytes] = rate(in.fp32, 1);
  f.fp32_ops_per_s_1 = fp32_1;
  f.fp32_weight_bytes_per_s = fp32_bytes;
  f.fp32_ops_per_s_16 = rate(in.fp32, 16).first;
  f.int8_block32_ops_per_s_1 = rate(in.block32, 1).first;
  f.int8_block32_ops_per_s_16 = rate(in.block32, 16).first;
  f.int8_channel_ops_per_s_1 = rate(in.channel, 1).first;
  f.int8_channel_ops_per_s_16 = rate(in.channel, 16).first;
  f.op_overhead_ns = MedianNs(
      reps, min_ns / 4, [&] { model::MatMul(in.x.data(), 1, in.small, nullptr, in.y.data()); });
  const double vec_ns = MedianNs(reps, min_ns / 4, [&] {
    g_sink = g_sink +
             static_cast<uint64_t>(model::Sum(in.vec.data(), static_cast<int64_t>(in.vec.size())));
  });
  f.vector_ops_per_s = static_cast<double>(in.vec.size()) / vec_ns * 1e9;
  return f;
}

struct LinkFigures {
  double one_way_ns = 0;
  double bytes_per_s = 0;
};

constexpr transport::Millis kWait{20000};
constexpr size_t kPingBytes = 64;
constexpr size_t kStreamBytes = size_t{1} << 20;

transport::Message Tensor(int64_t step, uint64_t id, size_t bytes) {
  transport::Message m;
  m.header.schedule_id = 1;
  m.header.step = step;
  m.header.tensor_id = id;
  m.header.dtype = Dtype::kInt8;
  m.header.shape = {static_cast<int64_t>(bytes)};
  m.payload = transport::Payload::Uninitialized(bytes);
  std::memset(m.payload.data(), static_cast<int>(step & 0xff), bytes);
  return m;
}

transport::Expect Want(int64_t step, uint64_t id) {
  transport::Expect e;
  e.schedule_id = 1;
  e.step = step;
  e.tensor_id = id;
  return e;
}

uint64_t ReadBytes(const transport::Payload& p) {
  uint64_t s = 0;
  for (std::byte b : p.bytes()) s += static_cast<uint64_t>(b);
  return s;
}

// The peer process: pinned to `pus`, echoes `pings` small tensors, reads `stream` large ones
// through, then acknowledges. Exit status 0, 5 (could not pin) or 6 (transport error).
[[noreturn]] void Peer(const transport::TransportOptions& options, const transport::LinkSpec& link,
                       const std::vector<int>& pus, int pings, int stream) {
  if (!PinTo(pus)) _exit(5);
  int status = 0;
  try {
    auto t = transport::CreateTransport(options);
    auto e = t->Open(link, link.b, kWait);
    for (int i = 0; i < pings; ++i) {
      transport::Message m = e->Receive(Want(i, 1), kWait);
      m.header.tensor_id = 2;
      e->Send(std::move(m), kWait);
    }
    uint64_t sum = 0;
    for (int i = 0; i < stream; ++i)
      sum += ReadBytes(e->Receive(Want(pings + i, 3), kWait).payload);
    g_sink = g_sink + sum;
    e->Send(Tensor(pings + stream, 4, kPingBytes), kWait);
    e->Close(kWait);
  } catch (const std::exception&) {
    status = 6;
  }
  _exit(status);
}

LinkFigures MeasureLink(const std::string& backend, const topology::HostCore& a,
                        const topology::HostCore& b, bool quick) {
  transport::TransportOptions options;
  options.backend = backend;
  std::string dir;
  if (backend == "ipc") {
    char tmpl[] = "/tmp/lockstep-calibrate-XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
      throw Error(ErrorCode::kInternal, "cannot create a folder in /tmp");
    dir = tmpl;
    options.ipc_dir = dir;
  } else {
    // Below Linux's ephemeral range (32768+), apart per process.
    options.tcp_base_port = 12000 + static_cast<int>(getpid() % 600) * 32;
  }
  transport::LinkSpec link;
  link.a = {0, 0};
  link.b = {1, 0};
  const int pings = quick ? 200 : 2000, stream = quick ? 64 : 512, warm = 20;
  const pid_t child = fork();
  if (child < 0) throw Error(ErrorCode::kInternal, "calibrate --host: fork failed");
  if (child == 0) Peer(options, link, b.pus, pings, stream);
  LinkFigures f;
  std::string failure;
  try {
    auto t = transport::CreateTransport(options);
    auto e = t->Open(link, link.a, kWait);
    std::vector<double> rtt;
    for (int i = 0; i < pings; ++i) {
      const Clock::time_point t0 = Clock::now();
      e->Send(Tensor(i, 1, kPingBytes), kWait);
      e->Receive(Want(i, 2), kWait);
      if (i >= warm) rtt.push_back(static_cast<double>(NsSince(t0)));
    }
    std::sort(rtt.begin(), rtt.end());
    f.one_way_ns = rtt[rtt.size() / 2] / 2;
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < stream; ++i) e->Send(Tensor(pings + i, 3, kStreamBytes), kWait);
    e->Receive(Want(pings + stream, 4), kWait);
    const double ns = std::max(1.0, static_cast<double>(NsSince(t0)) - f.one_way_ns);
    f.bytes_per_s = static_cast<double>(stream) * static_cast<double>(kStreamBytes) / ns * 1e9;
    e->Close(kWait);
  } catch (const std::exception& ex) {
    failure = ex.what();
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!dir.empty()) std::filesystem::remove_all(dir);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 5) {
    throw Error(ErrorCode::kInvalidInput, "calibrate --host: cannot pin the peer process to core " +
                                              std::to_string(b.index) + " (PU " + PuList(b.pus) +
                                              "): the OS refused");
  }
  if (!failure.empty() || code != 0) {
    throw Error(
        ErrorCode::kInternal,
        "calibrate --host: measuring " + backend + " between cores " + std::to_string(a.index) +
            " and " + std::to_string(b.index) + " failed: " +
            (failure.empty() ? "the peer process exited with " + std::to_string(code) : failure));
  }
  return f;
}

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

int64_t Round(double v) { return std::max<int64_t>(1, static_cast<int64_t>(std::llround(v))); }

std::string Gb(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << v / 1e9;
  return s.str();
}

// The command line of `calibrate --host`, checked (ParseHostFlags).
struct HostFlags {
  std::string backend = "ipc", out, cores_text;
  int chips = 0;
  bool quick = false;
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
      "quick", "shorter measurements (smaller weights, fewer repetitions): for tests")(
      "output,o", po::value<std::string>(&flags.out), "write the topology file here");
  po::variables_map vm;
  const std::string usage =
      "lockstep calibrate --host [--transport ipc|tcp] [--chips N] [--cores LIST] [--quick] "
      "-o HOST.yaml [--json]\n\n"
      "Measures this machine as a chip: on every usable core (pinned), the read bandwidth of\n"
      "memory and the speed of Lockstep's own decode kernels (fp32, int8-block32 and\n"
      "int8-channel products at 1 and 16 rows, over weights larger than the cache, and the fixed\n"
      "cost of a small product); between two pinned processes the one-way latency and the\n"
      "throughput of the transport. Writes a topology file (one chip per core, one custom chip\n"
      "spec holding the slowest core's figures as its cost parameters, all chips linked by the\n"
      "transport), so that `lockstep plan --model M --topology HOST.yaml` predicts what\n"
      "`lockstep run --plan P --transport T --json` measures (predicted_token_latency_ns beside\n"
      "measured_token_latency_ns). Not measured: the workers' per-step bookkeeping\n"
      "(step_overhead_ns 0). Takes a few seconds per core (--quick: about one); progress on\n"
      "stderr. Run it on a quiet machine: the figures are what the cores give at the time.";
  if (!ParseOrHelp(args, usage, opts, {}, vm)) return std::nullopt;
  if (flags.backend != "ipc" && flags.backend != "tcp") {
    throw UsageError("--transport must be ipc or tcp, got '" + flags.backend + "'");
  }
  if (flags.out.empty()) {
    throw UsageError("-o HOST.yaml is required (see: lockstep calibrate --help)");
  }
  if (flags.chips < 0) throw UsageError("--chips must be >= 0 (0 = one per usable core)");
  CheckOutputFile(flags.out, "-o");
  flags.quick = vm.count("quick") > 0;
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

// Each core's figures, the thread pinned to it in turn (it stays pinned to the last).
std::vector<CoreFigures> MeasureCores(const std::vector<topology::HostCore>& cores, bool quick,
                                      Context& ctx) {
  ctx.log->info("calibrate --host: preparing the kernels' weights ({})",
                quick ? "quick: 48 MiB" : "64 MiB");
  KernelInputs in = MakeInputs(quick);
  std::vector<CoreFigures> per_core;
  for (size_t i = 0; i < cores.size(); ++i) {
    if (!PinTo(cores[i].pus)) {
      throw Error(ErrorCode::kInvalidInput, "calibrate --host: cannot pin to core " +
                                                std::to_string(cores[i].index) + " (PU " +
                                                PuList(cores[i].pus) +
                                                "): the OS refused; leave it out with --cores");
    }
    ctx.log->info("calibrate --host: core {} ({} of {}): read bandwidth and decode kernels",
                  cores[i].index, i + 1, cores.size());
    per_core.push_back(MeasureCore(cores[i], in, quick));
    ctx.log->info("calibrate --host: core {}: read {} GB/s, fp32 {} Gflop/s (1 row) {} (16 rows)",
                  cores[i].index, Gb(per_core.back().read_bytes_per_s),
                  Gb(per_core.back().fp32_ops_per_s_1), Gb(per_core.back().fp32_ops_per_s_16));
  }
  return per_core;
}

// What calibrate --host measured: every chosen core, and the transport between the first two
// (the first with itself when only one is chosen).
struct HostMeasurements {
  std::vector<topology::HostCore> cores;
  std::vector<CoreFigures> per_core;
  int link_a = 0, link_b = 0;  // the cores the transport ran between
  LinkFigures link;
};

// Measures the cores, then the transport from the first core; the thread's affinity is put back
// as it was.
HostMeasurements MeasureHost(const HostFlags& flags, std::vector<topology::HostCore> cores,
                             Context& ctx) {
  HostMeasurements m;
  m.cores = std::move(cores);
  cpu_set_t before;
  CPU_ZERO(&before);
  sched_getaffinity(0, sizeof(before), &before);
  m.per_core = MeasureCores(m.cores, flags.quick, ctx);  // the kernels' weights freed on return
  const topology::HostCore& a = m.cores.front();
  const topology::HostCore& b = m.cores.size() > 1 ? m.cores[1] : m.cores.front();
  m.link_a = a.index;
  m.link_b = b.index;
  if (!PinTo(a.pus)) {
    throw Error(ErrorCode::kInvalidInput, "calibrate --host: cannot pin to core " +
                                              std::to_string(a.index) + " (PU " + PuList(a.pus) +
                                              "): the OS refused");
  }
  ctx.log->info("calibrate --host: {} between pinned processes on cores {} and {}", flags.backend,
                a.index, b.index);
  m.link = MeasureLink(flags.backend, a, b, flags.quick);
  sched_setaffinity(0, sizeof(before), &before);
  ctx.log->info("calibrate --host: {} one-way {:.1f} us, {} GB/s", flags.backend,
                m.link.one_way_ns / 1e3, Gb(m.link.bytes_per_s));
  return m;
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

// What calibrate --host writes: `chips` chips of one spec, the slowest core's figures.
struct HostChip {
  CoreFigures slow;
  int chips = 0;
  topology::ChipSpec spec;
};

HostChip MakeHostChip(const HostFlags& flags, const HostMeasurements& m) {
  HostChip h;
  h.slow = Slowest(m.per_core);
  const CoreFigures& slow = h.slow;
  const LinkFigures& link = m.link;
  const int n = flags.chips > 0 ? flags.chips : static_cast<int>(m.cores.size());
  h.chips = n;
  const int64_t memory =
      static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  topology::ChipSpec& spec = h.spec;
  spec.name = "host-core";
  spec.sram_bytes = std::max<int64_t>(1, memory / n);  // the host's memory shared by its chips
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

// Writes the topology (chips linked all to all) under a header of where its figures came from;
// through a temporary file renamed into place.
void WriteHostTopology(const HostFlags& flags, const HostMeasurements& m, const HostChip& h) {
  const int n = h.chips;
  topology::Topology topo("host-" + flags.backend);
  const int s = topo.AddSpec(h.spec);
  for (int i = 0; i < n; ++i) topo.AddChip(0, 0, false, s);
  // All to all: chip i's port to chip j is j (j < i) or j - 1 (j > i).
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      topo.AddLink({i, j - 1}, {j, i});
    }
  }
  const CoreFigures& slow = h.slow;
  std::ostringstream header;
  header << "# lockstep calibrate --host --transport " << flags.backend
         << (flags.quick ? " --quick" : "") << ": " << n << " chip(s) on " << m.cores.size()
         << " core(s) of this host\n"
         << "# the slowest core's figures: read " << Gb(slow.read_bytes_per_s)
         << " GB/s, fp32 weight stream " << Gb(slow.fp32_weight_bytes_per_s)
         << " GB/s, fp32 16 rows " << Gb(slow.fp32_ops_per_s_16) << " Gflop/s, int8 16 rows "
         << Gb(static_cast<double>(h.spec.peak_ops(Dtype::kInt8))) << " Gop/s, small product "
         << Round(slow.op_overhead_ns) << " ns; " << flags.backend << " one-way "
         << Round(m.link.one_way_ns) << " ns, " << Gb(m.link.bytes_per_s) << " GB/s\n"
         << "# not measured: the workers' step bookkeeping (step_overhead_ns 0)\n";
  const std::string tmp = flags.out + ".tmp";
  std::ofstream f(tmp, std::ios::binary);
  f << header.str() << topology::WriteTopologyYaml(topo);
  f.close();
  if (!f) throw Error(ErrorCode::kInternal, "cannot write " + tmp);
  std::filesystem::rename(tmp, flags.out);
}

// --json: the slowest core's figures, the link's, every core's and the chip spec written.
void PrintHostJson(const HostFlags& flags, const HostMeasurements& m, const HostChip& h) {
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
void PrintHostText(const HostFlags& flags, const HostMeasurements& m, const HostChip& h) {
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
            << "wrote " << flags.out << "\n";
}

}  // namespace

int CalibrateHost(const std::vector<std::string>& args, Context& ctx) {
  const std::optional<HostFlags> flags = ParseHostFlags(args);
  if (!flags) return 0;  // --help
  const HostMeasurements m = MeasureHost(*flags, ChooseCores(flags->cores_text), ctx);
  const HostChip chip = MakeHostChip(*flags, m);
  WriteHostTopology(*flags, m, chip);
  ctx.log->info("wrote {}", flags->out);
  if (ctx.json) {
    PrintHostJson(*flags, m, chip);
  } else {
    PrintHostText(*flags, m, chip);
  }
  return 0;
}

}  // namespace lockstep::cli
