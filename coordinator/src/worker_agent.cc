#include "lockstep/coordinator/worker_agent.h"

#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "control_socket.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/transport/crc32c.h"
#include "lockstep/worker/chip_runner.h"
#include "messages.h"

namespace lockstep::coordinator {
namespace {

using Clock = std::chrono::steady_clock;
constexpr Millis kHeartbeatEvery{100};

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

// Pins the calling thread to `cpus` (OS indices). Returns what happened, for the report.
std::string Pin(const std::vector<int>& cpus) {
  if (cpus.empty()) return "not pinned (no core assigned)";
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) {
    if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    return "not pinned (sched_setaffinity refused cpu " + std::to_string(cpus.front()) + ")";
  }
  return "cpu " + std::to_string(cpus.front());
}

transport::TransportOptions ToTransportOptions(const TransportSettings& s,
                                               const std::vector<transport::LinkSpec>& links,
                                               uint32_t chip, const WorkerOptions& options) {
  transport::TransportOptions t;
  t.backend = s.backend;
  t.queue_capacity = s.queue_capacity;
  t.max_payload_bytes = s.max_payload_bytes;
  t.ipc_dir = s.ipc_dir;
  t.tcp_base_port = s.tcp_base_port;
  for (const auto& [c, host] : s.tcp_hosts) t.tcp_hosts[c] = host;
  t.log = options.log;
  if (s.curve) {
    if (!options.curve_keys) {
      throw InvalidInput("chip " + std::to_string(chip) +
                         ": the run encrypts its tcp links with CURVE; start lockstep-worker "
                         "with --curve DIR (the run's key pair, `lockstep keys generate`)");
    }
    t.curve.enabled = true;
    t.curve.public_key = options.curve_keys->public_key;
    t.curve.secret_key = options.curve_keys->secret_key;
    // One key pair per run: every peer must hold it. A worker whose own pair differs goes on
    // (the peers refuse it and the link names it), so a stolen control socket learns nothing.
    for (const transport::LinkSpec& link : links) {
      const uint32_t peer = link.a.chip == chip ? link.b.chip : link.a.chip;
      t.curve.peer_public_keys[peer] = s.curve_public_key;
    }
    if (options.log && options.curve_keys->public_key != s.curve_public_key) {
      options.log("chip " + std::to_string(chip) +
                  ": warning: this worker's CURVE public key is not the run's; its peers will "
                  "refuse its links");
    }
  }
  return t;
}

// What the control thread hands the compute thread, and what comes back.
struct Shared {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<worker::Step> steps;
  bool stop = false;
  std::optional<Error> failure;
  std::atomic<int64_t> last_step{-1};
  std::atomic<int64_t> steps_done{0};
  std::string pinned;
  // Written by the compute thread, read by the control thread (heartbeats, stall reports).
  std::unique_ptr<worker::FlightRecorder> recorder;
};

void Compute(const WorkerOptions& options, const AssignmentMsg& a, std::vector<std::byte> shard,
             DealerSocket::Outbox& outbox, Shared& shared) {
  const int32_t chip = static_cast<int32_t>(a.chip);
  try {
    std::string pinned = options.pin ? Pin(a.cpus) : "not pinned (--no-pin)";
    {
      std::lock_guard lock(shared.mutex);
      shared.pinned = std::move(pinned);
    }
    worker::ChipSetup setup;
    setup.spec = a.spec;
    setup.stage = a.stage;
    setup.rank = a.rank;
    setup.program = a.program;
    if (a.stage >= 0) setup.shard = model::ShardFromBytes(shard, a.spec);
    shard.clear();
    shard.shrink_to_fit();
    setup.group.assign(a.group.begin(), a.group.end());
    setup.incoming = a.incoming;
    setup.schedule_id = a.schedule_id;
    setup.timeout = transport::Millis(a.transport.step_timeout_ms);
    setup.recorder = shared.recorder.get();
    std::unique_ptr<transport::Transport> own;
    transport::Transport* transport = options.shared_transport;
    if (transport == nullptr) {
      own = transport::CreateTransport(ToTransportOptions(a.transport, a.links, a.chip, options));
      transport = own.get();
    }
    std::vector<std::unique_ptr<transport::Endpoint>> endpoints =
        transport->OpenChip(a.chip, a.links, transport::Millis(a.transport.connect_timeout_ms));
    worker::ChipRunner runner(std::move(setup), std::move(endpoints));
    outbox.Post(ReadyMsg{a.chip});
    while (true) {
      worker::Step step;
      {
        std::unique_lock lock(shared.mutex);
        shared.cv.wait(lock, [&] { return shared.stop || !shared.steps.empty(); });
        if (shared.stop) break;
        step = std::move(shared.steps.front());
        shared.steps.pop_front();
      }
      StepResultMsg result{a.chip, step.index, runner.RunStep(step)};
      shared.last_step = step.index;
      ++shared.steps_done;
      outbox.Post(result);
    }
    runner.Close();
  } catch (const Error& e) {
    outbox.Post(ErrorMsg{chip, e.code(), e.what()});
    std::lock_guard lock(shared.mutex);
    shared.failure = e;
  } catch (const std::exception& e) {
    outbox.Post(ErrorMsg{chip, ErrorCode::kInternal, e.what()});
    std::lock_guard lock(shared.mutex);
    shared.failure = Error(ErrorCode::kInternal, e.what());
  }
}

}  // namespace

WorkerReport RunWorker(const WorkerOptions& options) {
  DealerSocket socket(options.coordinator);
  const topology::HostSummary host = options.host ? *options.host : topology::DiscoverHost();
  socket.Send(RegisterMsg{static_cast<int64_t>(getpid()), HostName(), SummarizeHost(host),
                          options.tag, options.chip});

  Shared shared;
  shared.recorder = std::make_unique<worker::FlightRecorder>(options.flight_recorder_capacity);
  std::unique_ptr<DealerSocket::Outbox> outbox = socket.MakeOutbox();
  std::optional<AssignmentMsg> assignment;
  std::vector<std::byte> shard;
  uint32_t next_chunk = 0;
  std::thread compute;
  WorkerReport report;
  bool heard = false;
  Clock::time_point last_heard = Clock::now();
  Clock::time_point last_beat = Clock::now();
  const std::string at = "coordinator at " + options.coordinator;

  auto stop = [&] {
    {
      std::lock_guard lock(shared.mutex);
      shared.stop = true;
    }
    shared.cv.notify_all();
    if (compute.joinable()) compute.join();
  };
  auto protocol = [&](const std::string& why) {
    const Error e(ErrorCode::kProtocol, at + ": " + why);
    socket.Send(
        ErrorMsg{assignment ? static_cast<int32_t>(assignment->chip) : -1, e.code(), e.what()});
    return e;
  };

  try {
    while (true) {
      const Millis limit = heard ? options.coordinator_timeout : options.connect_timeout;
      const Millis left = limit - std::chrono::duration_cast<Millis>(Clock::now() - last_heard);
      if (left <= Millis(0)) {
        if (!heard) {
          throw Error(ErrorCode::kUnavailable,
                      "no coordinator answered at " + options.coordinator + " within " +
                          std::to_string(limit.count()) +
                          " ms (is it running, and is the address right?)");
        }
        throw Error(ErrorCode::kDisconnected,
                    at + " went away: no message for " + std::to_string(limit.count()) + " ms");
      }
      std::optional<ControlMessage> message = socket.Pump(std::min(left, kHeartbeatEvery));
      // Heartbeats go out on a timer too, not only in answer to pings: a ping can sit behind a
      // long queue of shard chunks, and the worker is alive all that time.
      if (Clock::now() - last_beat >= kHeartbeatEvery) {
        socket.Send(HeartbeatMsg{assignment ? static_cast<int32_t>(assignment->chip) : -1,
                                 shared.last_step.load(), shared.recorder->Progress()});
        last_beat = Clock::now();
      }
      {
        std::lock_guard lock(shared.mutex);
        if (shared.failure) {
          socket.Pump(Millis(0));  // forward the error report before leaving
          throw *shared.failure;
        }
      }
      if (!message) continue;
      heard = true;
      last_heard = Clock::now();
      ControlMessage& m = *message;
      if (std::holds_alternative<PingMsg>(m)) {
        socket.Send(HeartbeatMsg{assignment ? static_cast<int32_t>(assignment->chip) : -1,
                                 shared.last_step.load(), shared.recorder->Progress()});
      } else if (auto* a = std::get_if<AssignmentMsg>(&m)) {
        if (assignment) throw protocol("a second assignment");
        assignment = std::move(*a);
        report.chip = static_cast<int32_t>(assignment->chip);
        shard.reserve(assignment->shard_bytes);
        if (options.log) {
          options.log("assigned chip " + std::to_string(assignment->chip) + " (stage " +
                      std::to_string(assignment->stage) + ", rank " +
                      std::to_string(assignment->rank) + ")");
        }
      } else if (auto* c = std::get_if<ShardChunkMsg>(&m)) {
        if (!assignment || c->index != next_chunk || c->offset != shard.size() ||
            shard.size() + c->data.size() > assignment->shard_bytes) {
          throw protocol("shard chunk " + std::to_string(c->index) + " out of order (want " +
                         std::to_string(next_chunk) + " at byte " + std::to_string(shard.size()) +
                         ")");
        }
        if (transport::Crc32c(c->data) != c->crc32c) {
          throw protocol("shard chunk " + std::to_string(c->index) + " failed its CRC32C");
        }
        shard.insert(shard.end(), c->data.begin(), c->data.end());
        ++next_chunk;
      } else if (auto* d = std::get_if<ShardDoneMsg>(&m)) {
        if (!assignment || compute.joinable() || d->total_bytes != shard.size() ||
            next_chunk != assignment->shard_chunks) {
          throw protocol("shard ended after " + std::to_string(shard.size()) + " bytes in " +
                         std::to_string(next_chunk) + " chunks (want " +
                         std::to_string(d->total_bytes) + ")");
        }
        if (transport::Crc32c(shard) != d->crc32c) {
          throw protocol("the shard's digest (CRC32C of all its bytes) does not match");
        }
        compute = std::thread(Compute, std::cref(options), std::cref(*assignment), std::move(shard),
                              std::ref(*outbox), std::ref(shared));
      } else if (auto* s = std::get_if<StepMsg>(&m)) {
        {
          std::lock_guard lock(shared.mutex);
          shared.steps.push_back(std::move(s->step));
        }
        shared.cv.notify_all();
      } else if (std::holds_alternative<FlightRecorderRequestMsg>(m)) {
        socket.Send(FlightRecorderMsg{assignment ? static_cast<int32_t>(assignment->chip) : -1,
                                      shared.recorder->Progress(), shared.recorder->Entries()});
      } else if (std::holds_alternative<ShutdownMsg>(m)) {
        stop();
        break;
      } else {
        throw protocol(std::string("unexpected ") + MessageName(m) + " message");
      }
    }
  } catch (...) {
    stop();
    throw;
  }
  report.steps = shared.steps_done.load();
  report.pinned = shared.pinned;
  std::lock_guard lock(shared.mutex);
  if (shared.failure) throw *shared.failure;
  return report;
}

}  // namespace lockstep::coordinator
