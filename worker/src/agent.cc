#include "lockstep/worker/agent.h"

#include <unistd.h>

#include <thread>

#include "compute_thread.h"
#include "lockstep/control/messages.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::worker {
namespace {

using control::AssignmentMsg;
using control::ControlMessage;
using control::ErrorMsg;
using control::FlightRecorderMsg;
using control::FlightRecorderRequestMsg;
using control::HeartbeatMsg;
using control::LinkCheckMsg;
using control::Millis;
using control::PingMsg;
using control::RegisterMsg;
using control::ShardChunkMsg;
using control::ShardDoneMsg;
using control::ShutdownMsg;
using control::StepMsg;

constexpr Millis kHeartbeatEvery{100};

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

// One worker's control thread: the conversation with the coordinator (proto/control.capnp), one
// handler per message kind; the compute thread (compute_thread.h) does the chip's work.
class Agent {
 public:
  explicit Agent(const WorkerOptions& options)
      : options_(options),
        clock_(control::ChannelClock(options.channel)),
        channel_(control::Connect(options.coordinator, options.channel)),
        at_("coordinator at " + options.coordinator) {
    const topology::HostSummary host = options.host ? *options.host : topology::DiscoverHost();
    registration_ = RegisterMsg{static_cast<int64_t>(getpid()), HostName(),
                                control::SummarizeHost(host), options.tag, options.chip};
    shared_.recorder = std::make_unique<FlightRecorder>(options.flight_recorder_capacity);
    outbox_ = channel_->MakeOutbox();
  }

  WorkerReport Run() {
    channel_->Send(registration_);
    last_heard_ = last_beat_ = clock_.Now();
    try {
      while (!done_) {
        std::optional<ControlMessage> message =
            channel_->Receive(std::min(Left(), kHeartbeatEvery));
        Beat();
        // A failed step was reported by the compute thread; the worker stays to be reassigned
        // (failover) or shut down (then the report carries the failure).
        if (!message) continue;
        heard_ = true;
        last_heard_ = clock_.Now();
        Handle(*message);
      }
    } catch (...) {
      StopThreads();
      throw;
    }
    report_.steps = shared_.steps_done.load();
    report_.pinned = shared_.pinned;
    std::lock_guard lock(shared_.mutex);
    if (shared_.failure) report_.failure = shared_.failure->what();
    return report_;
  }

 private:
  int32_t chip() const { return assignment_ ? static_cast<int32_t>(assignment_->chip) : -1; }

  // What is left of the time the coordinator may be silent; throws once it is gone.
  Millis Left() const {
    const Millis limit = heard_ ? options_.coordinator_timeout : options_.connect_timeout;
    const Millis left = limit - std::chrono::duration_cast<Millis>(clock_.Now() - last_heard_);
    if (left > Millis(0)) return left;
    if (!heard_) {
      throw Error(ErrorCode::kUnavailable, "no coordinator answered at " + options_.coordinator +
                                               " within " + std::to_string(limit.count()) +
                                               " ms (is it running, and is the address right?)");
    }
    throw Error(ErrorCode::kDisconnected,
                at_ + " went away: no message for " + std::to_string(limit.count()) + " ms");
  }

  HeartbeatMsg Heartbeat() const {
    return HeartbeatMsg{chip(), shared_.last_step.load(), shared_.recorder->Progress()};
  }

  // Heartbeats go out on a timer too, not only in answer to pings: a ping can sit behind a long
  // queue of shard chunks, and the worker is alive all that time. Until the coordinator's
  // welcome, the beat is the register again: one lost on a dropped connection must not leave the
  // worker a stranger.
  void Beat() {
    if (clock_.Now() - last_beat_ < kHeartbeatEvery) return;
    if (heard_) {
      channel_->Send(Heartbeat());
    } else {
      channel_->Send(registration_);
    }
    last_beat_ = clock_.Now();
  }

  void Handle(ControlMessage& m) {
    if (std::holds_alternative<PingMsg>(m)) {
      channel_->Send(Heartbeat());
    } else if (auto* a = std::get_if<AssignmentMsg>(&m)) {
      if (a->reuse_shard) {
        OnFailoverAssignment(std::move(*a));
      } else {
        OnAssignment(std::move(*a));
      }
    } else if (auto* c = std::get_if<ShardChunkMsg>(&m)) {
      OnShardChunk(*c);
    } else if (auto* d = std::get_if<ShardDoneMsg>(&m)) {
      OnShardDone(*d);
    } else if (auto* s = std::get_if<StepMsg>(&m)) {
      {
        std::lock_guard lock(shared_.mutex);
        shared_.steps.push_back(std::move(s->step));
      }
      shared_.cv.notify_all();
    } else if (auto* r = std::get_if<control::RunStartMsg>(&m)) {
      if (!compute_.joinable()) throw Protocol("a run start before the shard");
      {
        std::lock_guard lock(shared_.mutex);
        shared_.log = r->admissions;
        shared_.log_closed = r->closed;
        r->admissions.clear();
        shared_.run_start = std::move(*r);
      }
      shared_.cv.notify_all();
    } else if (auto* ad = std::get_if<control::AdmitMsg>(&m)) {
      {
        std::lock_guard lock(shared_.mutex);
        shared_.log.push_back(std::move(ad->admission));
      }
      shared_.cv.notify_all();
    } else if (std::holds_alternative<control::CloseLogMsg>(m)) {
      {
        std::lock_guard lock(shared_.mutex);
        shared_.log_closed = true;
      }
      shared_.cv.notify_all();
    } else if (auto* lc = std::get_if<LinkCheckMsg>(&m)) {
      if (assignment_ || link_check_.joinable()) {
        throw Protocol("a link check after setup began");
      }
      link_check_ =
          std::thread(CheckLinks, std::cref(options_), std::move(*lc), std::ref(*outbox_));
    } else if (std::holds_alternative<FlightRecorderRequestMsg>(m)) {
      channel_->Send(
          FlightRecorderMsg{chip(), shared_.recorder->Progress(), shared_.recorder->Entries()});
    } else if (std::holds_alternative<ShutdownMsg>(m)) {
      StopThreads();
      done_ = true;
    } else {
      throw Protocol(std::string("unexpected ") + control::MessageName(m) + " message");
    }
  }

  void OnAssignment(AssignmentMsg a) {
    if (assignment_) throw Protocol("a second assignment");
    assignment_ = std::move(a);
    report_.chip = static_cast<int32_t>(assignment_->chip);
    shard_.reserve(assignment_->shard_bytes);
    Log("assigned chip " + std::to_string(assignment_->chip) + " (stage " +
        std::to_string(assignment_->stage) + ", rank " + std::to_string(assignment_->rank) + ")");
    // A shard the worker reads itself: no chunks come; the compute thread loads it (the agent
    // keeps answering meanwhile).
    if (!assignment_->shard_source.empty()) StartCompute();
  }

  // Failover: same place, new schedule. Abandon the step, drop the links, start over with the
  // shard already loaded.
  void OnFailoverAssignment(AssignmentMsg a) {
    if (!assignment_ || !compute_.joinable() || a.chip != assignment_->chip ||
        a.stage != assignment_->stage || a.rank != assignment_->rank) {
      throw Protocol("a failover assignment for another chip, stage or rank than this one's");
    }
    shared_.abandon = true;
    StopThreads();
    {
      std::lock_guard lock(shared_.mutex);
      shared_.abandon = false;
      shared_.stop = false;
      shared_.steps.clear();
      shared_.failure.reset();
    }
    // A shard read from its source is read again (the page cache still holds it); a shipped one
    // is parsed again from the bytes kept.
    if (a.shard_source.empty()) a.shard_source = assignment_->shard_source;
    assignment_ = std::move(a);
    Log("reassigned chip " + std::to_string(assignment_->chip) + " (schedule " +
        std::to_string(assignment_->schedule_id) + ")");
    StartCompute();
  }

  void OnShardChunk(const ShardChunkMsg& c) {
    if (!assignment_ || c.index != next_chunk_ || c.offset != shard_.size() ||
        shard_.size() + c.data.size() > assignment_->shard_bytes) {
      throw Protocol("shard chunk " + std::to_string(c.index) + " out of order (want " +
                     std::to_string(next_chunk_) + " at byte " + std::to_string(shard_.size()) +
                     ")");
    }
    if (transport::Crc32c(c.data) != c.crc32c) {
      throw Protocol("shard chunk " + std::to_string(c.index) + " failed its CRC32C");
    }
    shard_.insert(shard_.end(), c.data.begin(), c.data.end());
    ++next_chunk_;
  }

  void OnShardDone(const ShardDoneMsg& d) {
    if (!assignment_ || compute_.joinable() || d.total_bytes != shard_.size() ||
        next_chunk_ != assignment_->shard_chunks) {
      throw Protocol("shard ended after " + std::to_string(shard_.size()) + " bytes in " +
                     std::to_string(next_chunk_) + " chunks (want " +
                     std::to_string(d.total_bytes) + ")");
    }
    if (transport::Crc32c(shard_) != d.crc32c) {
      throw Protocol("the shard's digest (CRC32C of all its bytes) does not match");
    }
    StartCompute();
  }

  void StartCompute() {
    compute_ = std::thread(RunCompute, std::cref(options_), std::cref(*assignment_),
                           std::cref(shard_), std::ref(*outbox_), std::ref(shared_));
  }

  void StopThreads() {
    {
      std::lock_guard lock(shared_.mutex);
      shared_.stop = true;
    }
    shared_.cv.notify_all();
    if (compute_.joinable()) compute_.join();
    if (link_check_.joinable()) link_check_.join();
  }

  // A protocol error: reported to the coordinator, then thrown.
  Error Protocol(const std::string& why) {
    const Error e(ErrorCode::kProtocol, at_ + ": " + why);
    channel_->Send(ErrorMsg{chip(), e.code(), e.what()});
    return e;
  }

  void Log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  const WorkerOptions& options_;
  control::Clock& clock_;
  std::unique_ptr<control::ControlConnection> channel_;
  const std::string at_;
  RegisterMsg registration_;
  Shared shared_;
  std::unique_ptr<control::ControlConnection::Outbox> outbox_;
  std::optional<AssignmentMsg> assignment_;
  std::vector<std::byte> shard_;
  uint32_t next_chunk_ = 0;
  std::thread compute_;
  std::thread link_check_;
  WorkerReport report_;
  bool heard_ = false;
  bool done_ = false;
  control::Clock::TimePoint last_heard_, last_beat_;
};

}  // namespace

WorkerReport RunWorker(const WorkerOptions& options) { return Agent(options).Run(); }

}  // namespace lockstep::worker
