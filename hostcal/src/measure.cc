// MeasureHost (host_chip.h): the per-core kernels and memory, and the transport between two
// pinned processes.
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/hostcal/host_chip.h"
#include "lockstep/model/kernels.h"
#include "lockstep/model/weight.h"
#include "lockstep/transport/transport.h"

namespace lockstep::hostcal {
namespace {

using Progress = std::function<void(const std::string&)>;
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

// Timings per figure in one round (MeasureOptions::rounds more of them in all).
int RepsPerRound(bool quick) { return quick ? 1 : 3; }
int64_t MinNs(bool quick) { return quick ? 20'000'000 : 200'000'000; }

CoreFigures MeasureCore(const topology::HostCore& core, KernelInputs& in, bool quick) {
  CoreFigures f;
  f.core = core.index;
  f.pus = core.pus;
  const int reps = RepsPerRound(quick);
  const int64_t min_ns = MinNs(quick);
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

// The fp32 decode kernel (one row) on every core at once, a thread pinned to each over its own
// copy of `weight` (chips hold their own weights): the weight bytes all of them stream per
// second together. Each thread runs the kernel until `min_ns` passed after a common start; the
// rate is the bytes all threads read over the longest thread's time; the median of `reps`.
double MeasureConcurrent(const std::vector<topology::HostCore>& cores, const model::Weight& weight,
                         const std::vector<float>& x, bool quick) {
  const size_t n = cores.size();
  std::vector<model::Weight> weights(n, weight);
  std::vector<std::vector<float>> ys(n, std::vector<float>(static_cast<size_t>(weight.rows)));
  std::vector<double> rates;
  for (int r = 0; r < RepsPerRound(quick); ++r) {
    std::atomic<size_t> ready{0};
    std::atomic<bool> go{false}, refused{false};
    std::vector<int64_t> products(n, 0), elapsed(n, 0);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        if (!topology::PinCallingThread(cores[i].pus)) refused = true;
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        const Clock::time_point t0 = Clock::now();
        do {
          model::MatMul(x.data(), 1, weights[i], nullptr, ys[i].data());
          ++products[i];
          elapsed[i] = NsSince(t0);
        } while (elapsed[i] < MinNs(quick));
      });
    }
    while (ready.load() < n) std::this_thread::yield();
    go = true;
    for (std::thread& t : threads) t.join();
    if (refused) {
      throw Error(ErrorCode::kInvalidInput,
                  "calibrate --host: cannot pin a thread to every core at once: the OS refused");
    }
    double bytes = 0;
    int64_t longest = 1;
    for (size_t i = 0; i < n; ++i) {
      bytes += static_cast<double>(products[i]) * static_cast<double>(weight.bytes());
      longest = std::max(longest, elapsed[i]);
    }
    rates.push_back(bytes / static_cast<double>(longest) * 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

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
  if (!topology::PinCallingThread(pus)) _exit(5);
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
                        const topology::HostCore& b, bool quick, int round) {
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
    // Below Linux's ephemeral range (32768+), apart per process and round (a closed round's
    // sockets may linger).
    options.tcp_base_port = 12000 + static_cast<int>((getpid() + round * 97) % 600) * 32;
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

// Each core's figures, the thread pinned to it in turn (it stays pinned to the last).
std::vector<CoreFigures> MeasureCores(const std::vector<topology::HostCore>& cores,
                                      KernelInputs& in, bool quick, const std::string& round,
                                      const Progress& progress) {
  std::vector<CoreFigures> per_core;
  for (size_t i = 0; i < cores.size(); ++i) {
    if (!topology::PinCallingThread(cores[i].pus)) {
      throw Error(ErrorCode::kInvalidInput, "calibrate --host: cannot pin to core " +
                                                std::to_string(cores[i].index) + " (PU " +
                                                PuList(cores[i].pus) +
                                                "): the OS refused; leave it out with --cores");
    }
    progress("calibrate --host: " + round + "core " + std::to_string(cores[i].index) + " (" +
             std::to_string(i + 1) + " of " + std::to_string(cores.size()) +
             "): read bandwidth and decode kernels");
    per_core.push_back(MeasureCore(cores[i], in, quick));
    progress("calibrate --host: " + round + "core " + std::to_string(cores[i].index) + ": read " +
             Gb(per_core.back().read_bytes_per_s) + " GB/s, fp32 " +
             Gb(per_core.back().fp32_ops_per_s_1) + " Gflop/s (1 row) " +
             Gb(per_core.back().fp32_ops_per_s_16) + " (16 rows)");
  }
  return per_core;
}

// Each round: the cores one by one, all of them at once, then the transport from the first core;
// the medians over the rounds. The thread's affinity is put back as it was.
}  // namespace

HostMeasurements MeasureHost(std::vector<topology::HostCore> cores, const MeasureOptions& options) {
  const Progress progress = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };
  if (options.rounds < 1) throw InvalidInput("calibrate --host: rounds must be >= 1");
  HostMeasurements m;
  m.cores = std::move(cores);
  const topology::HostCore& a = m.cores.front();
  const topology::HostCore& b = m.cores.size() > 1 ? m.cores[1] : m.cores.front();
  m.link_a = a.index;
  m.link_b = b.index;
  cpu_set_t before;
  CPU_ZERO(&before);
  sched_getaffinity(0, sizeof(before), &before);
  progress(std::string("calibrate --host: preparing the kernels' weights (") +
           (options.quick ? "quick: 48 MiB" : "64 MiB") + ")");
  KernelInputs in = MakeInputs(options.quick);
  for (int r = 0; r < options.rounds; ++r) {
    const std::string round = options.rounds > 1 ? "round " + std::to_string(r + 1) + " of " +
                                                       std::to_string(options.rounds) + ": "
                                                 : "";
    RoundFigures figures;
    figures.per_core = MeasureCores(m.cores, in, options.quick, round, progress);
    progress("calibrate --host: " + round + "the fp32 decode kernel on all " +
             std::to_string(m.cores.size()) + " core(s) at once");
    figures.concurrent_weight_bytes_per_s =
        MeasureConcurrent(m.cores, in.fp32, in.x, options.quick);
    if (!topology::PinCallingThread(a.pus)) {
      throw Error(ErrorCode::kInvalidInput, "calibrate --host: cannot pin to core " +
                                                std::to_string(a.index) + " (PU " + PuList(a.pus) +
                                                "): the OS refused");
    }
    progress("calibrate --host: " + round + options.backend +
             " between pinned processes on cores " + std::to_string(a.index) + " and " +
             std::to_string(b.index));
    figures.link = MeasureLink(options.backend, a, b, options.quick, r);
    std::ostringstream us;
    us << std::fixed << std::setprecision(1) << figures.link.one_way_ns / 1e3;
    progress("calibrate --host: " + round + options.backend + " one-way " + us.str() + " us, " +
             Gb(figures.link.bytes_per_s) + " GB/s; all cores at once " +
             Gb(figures.concurrent_weight_bytes_per_s) + " GB/s of weights");
    m.rounds.push_back(std::move(figures));
  }
  sched_setaffinity(0, sizeof(before), &before);
  // The medians over the rounds.
  for (size_t i = 0; i < m.cores.size(); ++i) {
    std::vector<CoreFigures> per_round;
    for (const RoundFigures& f : m.rounds) per_round.push_back(f.per_core[i]);
    m.per_core.push_back(MedianFigures(per_round));
  }
  // The link's and the concurrent rate's medians: those of their spreads (what --json shows).
  for (const auto& [name, spread] : Spreads(m)) {
    if (name == "link_one_way_ns") m.link.one_way_ns = spread.median;
    if (name == "link_bytes_per_s") m.link.bytes_per_s = spread.median;
    if (name == "concurrent_weight_bytes_per_s") m.concurrent_weight_bytes_per_s = spread.median;
  }
  return m;
}

}  // namespace lockstep::hostcal
