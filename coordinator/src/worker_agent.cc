#include "lockstep/coordinator/worker_agent.h"

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "cancellable_endpoint.h"
#include "lockstep/control/channel.h"
#include "lockstep/control/messages.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/transport/crc32c.h"
#include "lockstep/worker/chip_runner.h"

namespace lockstep::coordinator {

using control::AssignmentMsg;
using control::ControlMessage;
using control::ErrorMsg;
using control::FlightRecorderMsg;
using control::FlightRecorderRequestMsg;
using control::HeartbeatMsg;
using control::LinkCheckMsg;
using control::LinkCheckResultMsg;
using control::MessageName;
using control::PingMsg;
using control::ReadyMsg;
using control::RegisterMsg;
using control::ShardChunkMsg;
using control::ShardDoneMsg;
using control::ShutdownMsg;
using control::StepMsg;
using control::StepResultMsg;
using control::SummarizeHost;
using control::TransportSettings;
namespace {

using Clock = std::chrono::steady_clock;
using control::Millis;
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
  transport::TransportOptions t = control::TransportOptionsFor(s);
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
  std::deque<control::Step> steps;
  bool stop = false;
  // Failover: raised to take the compute thread out of its step (links dropped, no report).
  std::atomic<bool> abandon{false};
  std::optional<Error> failure;
  std::atomic<int64_t> last_step{-1};
  std::atomic<int64_t> steps_done{0};
  std::string pinned;
  // Written by the compute thread, read by the control thread (heartbeats, stall reports).
  std::unique_ptr<worker::FlightRecorder> recorder;
};

// CPU time of the calling thread so far.
int64_t ThreadCpuNs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void Compute(const WorkerOptions& options, const AssignmentMsg& a,
             const std::vector<std::byte>& shard, control::ControlConnection::Outbox& outbox,
             Shared& shared) {
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
    if (own) {
      // A process's own links can be abandoned mid-step (failover); a shared transport's
      // threads are never replaced.
      for (auto& e : endpoints) {
        e = std::make_unique<CancellableEndpoint>(std::move(e), shared.abandon);
      }
    }
    worker::ChipRunner runner(std::move(setup), std::move(endpoints));
    outbox.Post(ReadyMsg{a.chip});
    while (true) {
      control::Step step;
      {
        std::unique_lock lock(shared.mutex);
        shared.cv.wait(lock, [&] { return shared.stop || !shared.steps.empty(); });
        if (shared.stop) break;
        step = std::move(shared.steps.front());
        shared.steps.pop_front();
      }
      const int64_t cpu_before = ThreadCpuNs();
      StepResultMsg result{a.chip, step.index, runner.RunStep(step)};
      result.compute_ns = ThreadCpuNs() - cpu_before;
      result.times = shared.recorder->LastStepTimes();
      shared.last_step = step.index;
      ++shared.steps_done;
      outbox.Post(result);
    }
    runner.Close();
  } catch (const Error& e) {
    if (shared.abandon.load()) return;  // failover: the links are dropped without a word
    outbox.Post(ErrorMsg{chip, e.code(), e.what()});
    std::lock_guard lock(shared.mutex);
    shared.failure = e;
  } catch (const std::exception& e) {
    if (shared.abandon.load()) return;
    outbox.Post(ErrorMsg{chip, ErrorCode::kInternal, e.what()});
    std::lock_guard lock(shared.mutex);
    shared.failure = Error(ErrorCode::kInternal, e.what());
  }
}

// Pre-flight (lockstep deploy): opens the chip's links — every end says hello naming its chip and
// port and checks its peer's (transport::Transport::OpenChip) — closes them and answers. Runs on
// a thread of its own so the control thread keeps answering pings meanwhile.
void CheckLinks(const WorkerOptions& options, const LinkCheckMsg& check,
                control::ControlConnection::Outbox& outbox) {
  LinkCheckResultMsg result{check.chip, true, "", 0};
  try {
    std::unique_ptr<transport::Transport> transport = transport::CreateTransport(
        ToTransportOptions(check.transport, check.links, check.chip, options));
    std::vector<std::unique_ptr<transport::Endpoint>> endpoints = transport->OpenChip(
        check.chip, check.links, transport::Millis(check.transport.connect_timeout_ms));
    result.links = static_cast<uint32_t>(endpoints.size());
    for (auto& e : endpoints) {
      try {
        e->Close(transport::Millis(1000));
      } catch (const Error&) {
        // the peer already left: the link did open, which is what was checked
      }
    }
  } catch (const std::exception& e) {
    result.ok = false;
    result.message = e.what();
    if (check.transport.backend == "tcp") {
      // Say where the peers were looked for: a wrong address is the usual cause.
      std::string where;
      for (const transport::LinkSpec& l : check.links) {
        const uint32_t peer = l.a.chip == check.chip ? l.b.chip : l.a.chip;
        std::string host = "127.0.0.1";
        for (const auto& [chip, h] : check.transport.tcp_hosts) {
          if (chip == peer) host = h;
        }
        const std::string item = "chip " + std::to_string(peer) + " at " + host;
        if (where.find(item) == std::string::npos) where += (where.empty() ? "" : ", ") + item;
      }
      result.message += " (tcp peers: " + where + ")";
    }
  }
  outbox.Post(result);
}

}  // namespace

WorkerReport RunWorker(const WorkerOptions& options) {
  std::unique_ptr<control::ControlConnection> socket =
      control::Connect(options.coordinator, options.channel);
  const topology::HostSummary host = options.host ? *options.host : topology::DiscoverHost();
  const RegisterMsg registration{static_cast<int64_t>(getpid()), HostName(), SummarizeHost(host),
                                 options.tag, options.chip};
  socket->Send(registration);

  Shared shared;
  shared.recorder = std::make_unique<worker::FlightRecorder>(options.flight_recorder_capacity);
  std::unique_ptr<control::ControlConnection::Outbox> outbox = socket->MakeOutbox();
  std::optional<AssignmentMsg> assignment;
  std::vector<std::byte> shard;
  uint32_t next_chunk = 0;
  std::thread compute;
  std::thread link_check;
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
    if (link_check.joinable()) link_check.join();
  };
  auto protocol = [&](const std::string& why) {
    const Error e(ErrorCode::kProtocol, at + ": " + why);
    socket->Send(
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
      std::optional<ControlMessage> message = socket->Receive(std::min(left, kHeartbeatEvery));
      // Heartbeats go out on a timer too, not only in answer to pings: a ping can sit behind a
      // long queue of shard chunks, and the worker is alive all that time.
      // Until the coordinator's welcome, the beat is the register again: one lost on a dropped
      // connection must not leave the worker a stranger.
      if (Clock::now() - last_beat >= kHeartbeatEvery) {
        if (heard) {
          socket->Send(HeartbeatMsg{assignment ? static_cast<int32_t>(assignment->chip) : -1,
                                    shared.last_step.load(), shared.recorder->Progress()});
        } else {
          socket->Send(registration);
        }
        last_beat = Clock::now();
      }
      // A failed step was reported by the compute thread; the worker stays to be reassigned
      // (failover) or shut down (then it throws the failure).
      if (!message) continue;
      heard = true;
      last_heard = Clock::now();
      ControlMessage& m = *message;
      if (std::holds_alternative<PingMsg>(m)) {
        socket->Send(HeartbeatMsg{assignment ? static_cast<int32_t>(assignment->chip) : -1,
                                  shared.last_step.load(), shared.recorder->Progress()});
      } else if (auto* re = std::get_if<AssignmentMsg>(&m); re && re->reuse_shard) {
        // Failover: same place, new schedule. Abandon the step, drop the links, start over.
        if (!assignment || !compute.joinable() || re->chip != assignment->chip ||
            re->stage != assignment->stage || re->rank != assignment->rank) {
          throw protocol("a failover assignment for another chip, stage or rank than this one's");
        }
        shared.abandon = true;
        stop();
        {
          std::lock_guard lock(shared.mutex);
          shared.abandon = false;
          shared.stop = false;
          shared.steps.clear();
          shared.failure.reset();
        }
        assignment = std::move(*re);
        if (options.log) {
          options.log("reassigned chip " + std::to_string(assignment->chip) + " (schedule " +
                      std::to_string(assignment->schedule_id) + ")");
        }
        compute = std::thread(Compute, std::cref(options), std::cref(*assignment), std::cref(shard),
                              std::ref(*outbox), std::ref(shared));
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
        compute = std::thread(Compute, std::cref(options), std::cref(*assignment), std::cref(shard),
                              std::ref(*outbox), std::ref(shared));
      } else if (auto* s = std::get_if<StepMsg>(&m)) {
        {
          std::lock_guard lock(shared.mutex);
          shared.steps.push_back(std::move(s->step));
        }
        shared.cv.notify_all();
      } else if (auto* lc = std::get_if<LinkCheckMsg>(&m)) {
        if (assignment || link_check.joinable()) throw protocol("a link check after setup began");
        link_check = std::thread(CheckLinks, std::cref(options), std::move(*lc), std::ref(*outbox));
      } else if (std::holds_alternative<FlightRecorderRequestMsg>(m)) {
        socket->Send(FlightRecorderMsg{assignment ? static_cast<int32_t>(assignment->chip) : -1,
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
  if (shared.failure) report.failure = shared.failure->what();
  return report;
}

}  // namespace lockstep::coordinator
