// Lockstep transport vs raw ZeroMQ, like with like: same socket type (PAIR), same high-water
// marks (both from transport::QueueDepthFor for a link direction bounded by the row's tensor size,
// 4 tensors promised, as a schedule sending that size would bound it), same transports (inproc,
// ipc, tcp on loopback), same message sizes, same two-part framing on ipc/tcp (raw sends a header
// frame of the size Lockstep's Cap'n Proto header has, copied into the message as Lockstep does,
// then the payload; on inproc raw does the same, and Lockstep hands its encoded frame over whole
// as one ZeroMQ message). Both senders take a buffer from a pool, fill it (the producer's work)
// and hand it to ZeroMQ without copying; it returns to the pool when the receiver drops it. In
// the throughput rows both receivers read every byte they received (the consumer's work, as a
// worker reads an activation); Throughput/raw_unread keeps the raw receiver that drops its bytes
// unread, which no real consumer does. What Lockstep adds: encoding/decoding the header, the
// schedule checks on receive, the socket monitor poll when it has to wait, and CRC32C on both
// ends where the link checksum policy asks for it: `lockstep` rows run the default (auto:
// unchecked on inproc and ipc, checked on tcp), `lockstep_on` rows checksum every payload
// (inproc and ipc; on tcp auto already does), so their difference is the cost of `on`, to read
// beside Crc32cSpeed.
//
// Counter cpu_us_per_msg: CPU time of the whole process (every thread: sender, receiver,
// ZeroMQ's I/O threads, and the kernel work done for them) per message over the timed loop. On a
// shared, loaded machine it is the stable figure; wall-clock rates swing with the load.
//
//   Throughput/<impl>/<backend>/<bytes>: one thread streams, the timed thread receives and reads
//                                        the payload (raw_unread: receives only).
//   Latency/<impl>/<backend>/<bytes>:    ping-pong; time per iteration is one round trip; the
//                                        counter one_way_us is half of it, in microseconds.
//   {Raw,Lockstep}SameThread/<bytes>:    inproc, one thread sends and receives back: the CPU
//                                        work per message without any wait.
//
// Throughput counters besides: sender_us_per_msg (the streaming thread's CPU per message) and
// io_us_per_msg (ZeroMQ's I/O thread's); the CPU column is the receiving thread's.
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "lockstep/common/memory.h"
#include "lockstep/transport/crc32c.h"
#include "lockstep/transport/frame.h"
#include "lockstep/transport/transport.h"

namespace lockstep::transport {
namespace {

constexpr Millis kWait{10000};

// The consumer's work: reads every 8-byte word of a received payload (four independent sums, so
// the loop runs at memory speed), as a worker reads an activation it was sent.
uint64_t Consume(const std::byte* data, size_t bytes) {
  uint64_t sum[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 32 <= bytes; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t word;
      std::memcpy(&word, data + i + 8 * k, 8);
      sum[k] += word;
    }
  }
  for (; i < bytes; ++i) sum[0] += static_cast<uint64_t>(data[i]);
  return sum[0] + sum[1] + sum[2] + sum[3];
}

// Tensor buffers are recycled, as a worker recycles its activation buffers: fresh multi-MiB
// allocations would make both sides measure the kernel's page faults instead of the transport.
class BufferPool {
 public:
  // Starts with enough touched buffers for everything the link can hold in flight (the send
  // and receive marks of QueueDepthFor, see Marks: 512 of 4 KiB, 12 of 16 MiB) within 512 MiB.
  explicit BufferPool(size_t bytes) : bytes_(bytes) {
    const size_t count = std::clamp<size_t>((size_t{512} << 20) / bytes, 24, 1024);
    for (size_t i = 0; i < count; ++i) {
      free_.push_back(new std::byte[bytes]);
      std::memset(free_.back(), 0, bytes);
    }
  }
  std::byte* Get() {
    std::lock_guard lock(mu_);
    if (free_.empty()) return new std::byte[bytes_];
    std::byte* b = free_.back();
    free_.pop_back();
    return b;
  }
  void Put(std::byte* b) {
    std::lock_guard lock(mu_);
    free_.push_back(b);
  }
  ~BufferPool() {
    for (std::byte* b : free_) delete[] b;
  }

 private:
  size_t bytes_;
  std::mutex mu_;
  std::vector<std::byte*> free_;
};

class PooledOwner : public Payload::Owner {
 public:
  PooledOwner(BufferPool& pool, std::byte* data) : pool_(pool), data_(data) {}
  ~PooledOwner() override { pool_.Put(data_); }

 private:
  BufferPool& pool_;
  std::byte* data_;
};
const char* const kBackends[] = {"inproc", "ipc", "tcp"};

double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Minor page faults of the whole process so far (every thread).
double ProcessPageFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_minflt);
}

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// CPU time of ZeroMQ's I/O threads (named "ZMQbg/IO/<n>") so far, from the kernel's per-thread
// run time (/proc/self/task/<tid>/schedstat, nanoseconds). Threads that ended are not counted,
// so read it only while the link is open.
double ZmqIoCpuSeconds() {
  double total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("ZMQbg/IO", 0) != 0) continue;
    std::ifstream stat(task.path() / "schedstat");
    double ns = 0;
    stat >> ns;
    total += ns * 1e-9;
  }
  return total;
}

// Process CPU time and page faults over the timed loop, per message (see the file comment), and
// the part of that CPU time ZeroMQ's I/O threads took (io_us_per_msg). The timed (receiving)
// thread's own CPU is Google Benchmark's CPU column; the sender's is sender_us_per_msg.
class CpuPerMessage {
 public:
  CpuPerMessage()
      : start_(ProcessCpuSeconds()), faults_(ProcessPageFaults()), io_(ZmqIoCpuSeconds()) {}
  void Report(benchmark::State& state, int64_t messages) const {
    const auto n = static_cast<double>(std::max<int64_t>(messages, 1));
    state.counters["cpu_us_per_msg"] = (ProcessCpuSeconds() - start_) * 1e6 / n;
    state.counters["faults_per_msg"] = (ProcessPageFaults() - faults_) / n;
    state.counters["io_us_per_msg"] = (ZmqIoCpuSeconds() - io_) * 1e6 / n;
  }

 private:
  double start_;
  double faults_;
  double io_;
};

// The streaming thread's CPU time per message (all of its messages, warm-up included).
void ReportSender(benchmark::State& state, double cpu_seconds, int64_t messages) {
  state.counters["sender_us_per_msg"] = cpu_seconds * 1e6 / static_cast<double>(messages);
}
// Untimed messages before the timed ones (connection warm-up: TCP slow start, first faults).
constexpr int64_t kWarmup = 8;
std::atomic<int> g_run{0};

// Each direction of a row's link is bounded as a schedule that sends up to 4 tensors of the row's
// size before the receiver reads would bound it (message.h QueueBound).
QueueBound RowBound(size_t bytes) { return {static_cast<int64_t>(bytes), 4}; }

// The ZeroMQ marks of such a direction, for raw as for Lockstep.
QueueDepth Marks(const std::string& backend, size_t bytes) {
  TransportOptions o;
  o.backend = backend;
  return QueueDepthFor(RowBound(bytes), o);
}

// ---------------------------------------------------------------- Lockstep transport

struct LockstepLink {
  std::string dir;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Endpoint> a;
  std::unique_ptr<Endpoint> b;

  // `checksums_on`: LinkChecksums::kOn, else the default (auto).
  LockstepLink(const std::string& backend, size_t bytes, bool checksums_on) {
    TransportOptions o;
    o.backend = backend;
    o.checksums = checksums_on ? LinkChecksums::kOn : LinkChecksums::kAuto;
    dir = "/tmp/lsbench-" + std::to_string(getpid());
    std::filesystem::create_directories(dir);
    o.ipc_dir = dir;
    o.tcp_base_port = 41000 + (g_run++ % 64) * 32;
    transport = CreateTransport(o);
    LinkSpec link;
    link.a = {0, 0};
    link.b = {1, 0};
    link.a_to_b = link.b_to_a = RowBound(bytes);
    std::thread tb([&] { b = transport->Open(link, link.b, kWait); });
    a = transport->Open(link, link.a, kWait);
    tb.join();
  }
  ~LockstepLink() {
    a.reset();
    b.reset();
    transport.reset();
    std::filesystem::remove_all(dir);
  }
};

Message Msg(int64_t step, size_t bytes, BufferPool& pool) {
  Message m;
  m.header.step = step;
  m.header.dtype = Dtype::kInt8;
  m.header.shape = {static_cast<int64_t>(bytes)};
  std::byte* data = pool.Get();
  std::memset(data, static_cast<int>(step & 0xFF), bytes);  // the producer's work
  m.payload = Payload(data, bytes, std::make_unique<PooledOwner>(pool, data));
  return m;
}

Expect Step(int64_t step) {
  Expect e;
  e.step = step;
  return e;
}

void LockstepThroughput(benchmark::State& state, const char* backend, bool checksums) {
  const auto bytes = static_cast<size_t>(state.range(0));
  LockstepLink link(backend, bytes, checksums);
  BufferPool pool(bytes);
  const int64_t n = state.max_iterations + kWarmup;
  double sender_cpu = 0;
  std::thread sender([&] {
    const double start = ThreadCpuSeconds();
    for (int64_t i = 0; i < n; ++i) link.a->Send(Msg(i, bytes, pool), kWait);
    sender_cpu = ThreadCpuSeconds() - start;
  });
  int64_t i = 0;
  for (; i < kWarmup; ++i) benchmark::DoNotOptimize(link.b->Receive(Step(i), kWait));
  std::optional<CpuPerMessage> cpu;
  for (auto _ : state) {
    if (!cpu) cpu.emplace();
    const Message m = link.b->Receive(Step(i++), kWait);
    benchmark::DoNotOptimize(Consume(m.payload.bytes().data(), m.payload.bytes().size()));
  }
  cpu->Report(state, state.iterations());
  sender.join();
  ReportSender(state, sender_cpu, n);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}

void LockstepLatency(benchmark::State& state, const char* backend, bool checksums) {
  const auto bytes = static_cast<size_t>(state.range(0));
  LockstepLink link(backend, bytes, checksums);
  BufferPool pool(bytes);
  const int64_t n = state.max_iterations;
  std::thread echo([&] {
    for (int64_t i = 0; i < n; ++i) link.b->Send(link.b->Receive(Step(i), kWait), kWait);
  });
  int64_t i = 0;
  CpuPerMessage cpu;
  for (auto _ : state) {
    link.a->Send(Msg(i, bytes, pool), kWait);
    benchmark::DoNotOptimize(link.a->Receive(Step(i), kWait));
    ++i;
  }
  cpu.Report(state, 2 * state.iterations());
  echo.join();
  state.counters["one_way_us"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2e-6,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------- raw ZeroMQ

struct RawLink {
  void* ctx = zmq_ctx_new();
  void* a = zmq_socket(ctx, ZMQ_PAIR);
  void* b = zmq_socket(ctx, ZMQ_PAIR);
  std::string dir;

  RawLink(const std::string& backend, size_t bytes) {
    // The marks the Lockstep endpoints of the row set (both send every tensor as one message).
    const QueueDepth marks = Marks(backend, bytes);
    for (void* s : {a, b}) {
      zmq_setsockopt(s, ZMQ_SNDHWM, &marks.send, sizeof marks.send);
      zmq_setsockopt(s, ZMQ_RCVHWM, &marks.receive, sizeof marks.receive);
    }
    std::string address;
    dir = "/tmp/lsraw-" + std::to_string(getpid());
    if (backend == "inproc") address = "inproc://raw";
    if (backend == "ipc") {
      std::filesystem::create_directories(dir);
      address = "ipc://" + dir + "/raw.sock";
    }
    if (backend == "tcp") address = "tcp://127.0.0.1:" + std::to_string(43100 + g_run++ % 64);
    if (zmq_bind(a, address.c_str()) != 0 || zmq_connect(b, address.c_str()) != 0) {
      std::abort();
    }
  }
  ~RawLink() {
    const int zero = 0;
    zmq_setsockopt(a, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(b, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
    std::filesystem::remove_all(dir);
  }
};

void PutBack(void* data, void* pool) {
  static_cast<BufferPool*>(pool)->Put(static_cast<std::byte*>(data));
}

// A header frame as large as the one Lockstep sends for this payload.
std::vector<std::byte> RawHeader(size_t bytes) {
  FrameHeader h;
  h.message.dtype = Dtype::kInt8;
  h.message.shape = {static_cast<int64_t>(bytes)};
  h.payload_length = bytes;
  return EncodeFrameHeader(h);
}

void RawSend(void* socket, const std::vector<std::byte>& header, size_t bytes, int64_t i,
             BufferPool& pool) {
  zmq_msg_t h;
  zmq_msg_init_size(&h, header.size());
  std::memcpy(zmq_msg_data(&h), header.data(), header.size());
  if (zmq_msg_send(&h, socket, ZMQ_SNDMORE) < 0) std::abort();
  zmq_msg_t m;
  std::byte* data = pool.Get();
  std::memset(data, static_cast<int>(i & 0xFF), bytes);  // the producer's work
  zmq_msg_init_data(&m, data, bytes, PutBack, &pool);
  if (zmq_msg_send(&m, socket, 0) < 0) std::abort();
}

// Receives the two parts, reading the payload's bytes if `read` (the consumer's work); returns
// the payload size.
size_t RawReceive(void* socket, bool read = false) {
  size_t size = 0;
  for (int part = 0; part < 2; ++part) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, socket, 0) < 0) std::abort();
    size = zmq_msg_size(&m);
    if (read && part == 1) {
      benchmark::DoNotOptimize(Consume(static_cast<const std::byte*>(zmq_msg_data(&m)), size));
    }
    zmq_msg_close(&m);
  }
  return size;
}

// `read`: the receiver reads each payload (the rows compared with Lockstep's), or drops it unread
// (raw_unread, the lower bound of a receiver's work).
void RawThroughput(benchmark::State& state, const char* backend, bool read) {
  const auto bytes = static_cast<size_t>(state.range(0));
  RawLink link(backend, bytes);
  BufferPool pool(bytes);
  const std::vector<std::byte> header = RawHeader(bytes);
  const int64_t n = state.max_iterations + kWarmup;
  double sender_cpu = 0;
  std::thread sender([&] {
    const double start = ThreadCpuSeconds();
    for (int64_t i = 0; i < n; ++i) RawSend(link.b, header, bytes, i, pool);
    sender_cpu = ThreadCpuSeconds() - start;
  });
  for (int64_t i = 0; i < kWarmup; ++i) benchmark::DoNotOptimize(RawReceive(link.a));
  std::optional<CpuPerMessage> cpu;
  for (auto _ : state) {
    if (!cpu) cpu.emplace();
    benchmark::DoNotOptimize(RawReceive(link.a, read));
  }
  cpu->Report(state, state.iterations());
  sender.join();
  ReportSender(state, sender_cpu, n);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}

void RawLatency(benchmark::State& state, const char* backend) {
  const auto bytes = static_cast<size_t>(state.range(0));
  RawLink link(backend, bytes);
  BufferPool pool(bytes);
  const std::vector<std::byte> header = RawHeader(bytes);
  const int64_t n = state.max_iterations;
  std::thread echo([&] {
    for (int64_t i = 0; i < n; ++i) {
      for (int part = 0; part < 2; ++part) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, link.b, 0) < 0) std::abort();
        if (zmq_msg_send(&m, link.b, part == 0 ? ZMQ_SNDMORE : 0) < 0) std::abort();
      }
    }
  });
  int64_t i = 0;
  CpuPerMessage cpu;
  for (auto _ : state) {
    RawSend(link.a, header, bytes, i++, pool);
    benchmark::DoNotOptimize(RawReceive(link.a));
  }
  cpu.Report(state, 2 * state.iterations());
  echo.join();
  state.counters["one_way_us"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2e-6,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The per-message work of the path itself, without the waits: one thread sends a message and
// receives it back from the other end, so no thread ever sleeps or wakes another (inproc).
// The difference between the raw and the Lockstep rows is what Lockstep adds per message in
// CPU time (header, checks, allocations), free of the scheduling that moves the two-thread rows;
// the load still scales both rows, so compare them within one run.
void LockstepSameThread(benchmark::State& state) {
  const auto bytes = static_cast<size_t>(state.range(0));
  LockstepLink link("inproc", bytes, false);
  BufferPool pool(bytes);
  int64_t i = 0;
  for (auto _ : state) {
    link.a->Send(Msg(i, bytes, pool), kWait);
    benchmark::DoNotOptimize(link.b->Receive(Step(i), kWait));
    ++i;
  }
}

void RawSameThread(benchmark::State& state) {
  const auto bytes = static_cast<size_t>(state.range(0));
  RawLink link("inproc", bytes);
  BufferPool pool(bytes);
  const std::vector<std::byte> header = RawHeader(bytes);
  int64_t i = 0;
  for (auto _ : state) {
    RawSend(link.b, header, bytes, i++, pool);
    benchmark::DoNotOptimize(RawReceive(link.a));
  }
}
BENCHMARK(RawSameThread)->Arg(4 << 10)->Arg(64 << 10);
BENCHMARK(LockstepSameThread)->Arg(4 << 10)->Arg(64 << 10);

// CRC32C speed: a checked payload is checksummed once by the sender and once by the receiver.
void Crc32cSpeed(benchmark::State& state) {
  std::vector<std::byte> data(static_cast<size_t>(state.range(0)), std::byte{0x5A});
  for (auto _ : state) benchmark::DoNotOptimize(Crc32c(data));
  state.SetBytesProcessed(state.iterations() * state.range(0));
  state.SetLabel(Crc32cImplementation());
}
BENCHMARK(Crc32cSpeed)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20);

// The per-message header work Lockstep adds: encode on send, decode on receive.
void HeaderEncodeDecode(benchmark::State& state) {
  FrameHeader h;
  h.message.step = 12345;
  h.message.tensor_id = 7;
  h.message.dtype = Dtype::kFp32;
  h.message.shape = {1, 4096};
  h.payload_length = 4 * 4096;
  const std::string context = "link chip 3:7 <-> chip 12:7";
  for (auto _ : state) {
    std::vector<std::byte> bytes = EncodeFrameHeader(h);
    benchmark::DoNotOptimize(DecodeFrameHeader(bytes, context, uint64_t{1} << 30));
  }
}
BENCHMARK(HeaderEncodeDecode);

// Registered backend by backend so raw and Lockstep figures sit next to each other.
int Register() {
  for (const char* backend : kBackends) {
    for (int64_t bytes :
         {int64_t{4} << 10, int64_t{64} << 10, int64_t{1} << 20, int64_t{16} << 20}) {
      auto* raw = benchmark::RegisterBenchmark(("Throughput/raw/" + std::string(backend)).c_str(),
                                               RawThroughput, backend, true);
      auto* ours =
          benchmark::RegisterBenchmark(("Throughput/lockstep/" + std::string(backend)).c_str(),
                                       LockstepThroughput, backend, false);
      auto* unread = benchmark::RegisterBenchmark(
          ("Throughput/raw_unread/" + std::string(backend)).c_str(), RawThroughput, backend, false);
      std::vector<benchmark::internal::Benchmark*> rows = {raw, ours, unread};
      if (std::string(backend) != "tcp") {  // tcp's default already checksums
        rows.push_back(
            benchmark::RegisterBenchmark(("Throughput/lockstep_on/" + std::string(backend)).c_str(),
                                         LockstepThroughput, backend, true));
      }
      // A fixed count moving ~512 MiB (at least 64 messages): with a minimum time alone, a
      // slow first 16 MiB transfer made Google Benchmark settle for one iteration.
      const int64_t count = std::clamp<int64_t>((int64_t{512} << 20) / bytes, 64, 100'000);
      for (auto* b : rows) {
        b->Arg(bytes)->UseRealTime()->Iterations(count)->Unit(benchmark::kMicrosecond);
      }
    }
    for (int64_t bytes : {int64_t{4} << 10, int64_t{64} << 10}) {
      auto* raw = benchmark::RegisterBenchmark(("Latency/raw/" + std::string(backend)).c_str(),
                                               RawLatency, backend);
      auto* ours = benchmark::RegisterBenchmark(
          ("Latency/lockstep/" + std::string(backend)).c_str(), LockstepLatency, backend, false);
      std::vector<benchmark::internal::Benchmark*> rows = {raw, ours};
      if (std::string(backend) != "tcp") {
        rows.push_back(
            benchmark::RegisterBenchmark(("Latency/lockstep_on/" + std::string(backend)).c_str(),
                                         LockstepLatency, backend, true));
      }
      for (auto* b : rows) {
        // A fixed count, as for throughput: under load a minimum time gave a few dozen.
        b->Arg(bytes)->UseRealTime()->Iterations(2000)->Unit(benchmark::kMicrosecond);
      }
    }
  }
  return 0;
}

const int kRegistered = Register();

}  // namespace
}  // namespace lockstep::transport

// The heap policy of Lockstep's binaries (lockstep-worker, lockstep), for raw and Lockstep
// alike: freed buffers stay in the process instead of being faulted in anew (common/memory.h).
const bool kHeapPolicy = lockstep::KeepFreedMemory();

BENCHMARK_MAIN();
