#include "compute_thread.h"

#include <time.h>

#include "cancellable_endpoint.h"
#include "lockstep/model/shard_loader.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/topology/host.h"
#include "lockstep/worker/chip_runner.h"

namespace lockstep::worker {

using control::ErrorMsg;
using control::LinkCheckResultMsg;
using control::ReadyMsg;
using control::StepResultMsg;

namespace {

// The chip's side of a self-clocked run over the worker's control thread: admissions come through
// `shared` (the control thread appends them), tokens and refusals go out through the outbox.
class SharedRunControl : public RunControl {
 public:
  SharedRunControl(Shared& shared, control::ControlConnection::Outbox& outbox, int32_t chip)
      : shared_(shared), outbox_(outbox), chip_(chip) {}

  Admission AwaitAdmission(int64_t number) override {
    std::unique_lock lock(shared_.mutex);
    while (true) {
      for (const Admission& a : shared_.log) {
        if (a.number == number) return a;
      }
      Abandoned();
      shared_.cv.wait(lock);
    }
  }

  Inbox Poll(bool wait) override {
    std::unique_lock lock(shared_.mutex);
    while (wait && seen_ == shared_.log.size() && !shared_.log_closed) {
      Abandoned();
      shared_.cv.wait(lock);
    }
    Abandoned();
    Inbox in;
    in.admissions.assign(shared_.log.begin() + static_cast<std::ptrdiff_t>(seen_),
                         shared_.log.end());
    seen_ = shared_.log.size();
    in.closed = shared_.log_closed;
    return in;
  }

  void Refuse(const Admission& admission, int64_t decided, const std::string& reason) override {
    outbox_.Post(control::RefusedMsg{chip_, admission.number, decided, reason});
  }

  void Emit(int64_t step, std::vector<SampledToken> tokens) override {
    outbox_.Post(control::TokensMsg{chip_, step, std::move(tokens)});
  }

 private:
  // Called with the mutex held.
  void Abandoned() const {
    if (shared_.stop || shared_.abandon.load()) {
      throw Error(ErrorCode::kDisconnected,
                  "chip " + std::to_string(chip_) + ": the run was abandoned");
    }
  }

  Shared& shared_;
  control::ControlConnection::Outbox& outbox_;
  const int32_t chip_;
  size_t seen_ = 0;  // entries of shared_.log that Poll has returned
};

// Pins the calling thread to `cpus` (OS indices). Returns what happened, for the report.
std::string Pin(const std::vector<int>& cpus) {
  if (cpus.empty()) return "not pinned (no core assigned)";
  if (!topology::PinCallingThread(cpus)) {
    return "not pinned (sched_setaffinity refused cpu " + std::to_string(cpus.front()) + ")";
  }
  return "cpu " + std::to_string(cpus.front());
}

// CPU time of the calling thread so far.
int64_t ThreadCpuNs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

}  // namespace

transport::TransportOptions ToTransportOptions(const control::TransportSettings& s,
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

void RunCompute(const WorkerOptions& options, const control::AssignmentMsg& a,
                const std::vector<std::byte>& shard, control::ControlConnection::Outbox& outbox,
                Shared& shared) {
  const int32_t chip = static_cast<int32_t>(a.chip);
  try {
    std::string pinned = options.pin ? Pin(a.cpus) : "not pinned (--no-pin)";
    {
      std::lock_guard lock(shared.mutex);
      shared.pinned = std::move(pinned);
    }
    ChipSetup setup;
    setup.spec = a.spec;
    setup.stage = a.stage;
    setup.rank = a.rank;
    setup.program = a.program;
    if (a.stage >= 0 && !a.shard_source.empty()) {
      const model::ShardSource source = model::DecodeShardSource(a.shard_source);
      if (source.stage != a.stage || source.rank != a.rank) {
        throw Error(ErrorCode::kProtocol, "chip " + std::to_string(chip) +
                                              ": its shard source is for another stage or rank");
      }
      setup.shard = model::LoadShard(source, a.spec);
    } else if (a.stage >= 0) {
      setup.shard = model::ShardFromBytes(shard, a.spec);
    }
    setup.group.assign(a.group.begin(), a.group.end());
    setup.incoming = a.incoming;
    setup.schedule_id = a.schedule_id;
    setup.timeout = transport::Millis(a.transport.step_timeout_ms);
    setup.recorder = shared.recorder.get();
    setup.repeat_ns = a.repeat_ns;
    setup.decode_makespan_ns = a.decode_makespan_ns;
    setup.lookahead = a.lookahead;
    setup.link_params = a.link_params;
    for (const control::AssignmentMsg::Prefill& p : a.prefill) {
      setup.prefill.push_back({p.bucket, p.chunk_tokens, p.program, p.makespan_ns});
    }
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
    ChipRunner runner(std::move(setup), std::move(endpoints));
    outbox.Post(ReadyMsg{a.chip});
    while (true) {
      control::Step step;
      std::optional<control::RunStartMsg> run;
      {
        std::unique_lock lock(shared.mutex);
        shared.cv.wait(lock, [&] {
          return shared.stop || !shared.steps.empty() || shared.run_start.has_value();
        });
        if (shared.stop) break;
        if (shared.run_start) {
          run = std::move(shared.run_start);
          shared.run_start.reset();
        } else {
          step = std::move(shared.steps.front());
          shared.steps.pop_front();
        }
      }
      if (run) {
        runner.SetTiming(run->pace, run->epoch_ns, run->virtual_time);
        SharedRunControl run_control(shared, outbox, chip);
        const RunReport report = runner.Run(run_control);
        {
          std::lock_guard lock(shared.mutex);
          shared.log.clear();
          shared.log_closed = false;
        }
        shared.steps_done += report.steps;
        outbox.Post(control::RunDoneMsg{chip, report.steps, report.prefill_steps, report.tokens,
                                        report.lag.buckets(), report.lag.max_ns()});
        continue;
      }
      const int64_t cpu_before = ThreadCpuNs();
      StepResultMsg result{a.chip, step.index, runner.RunStep(step)};
      result.compute_ns = ThreadCpuNs() - cpu_before;
      result.times = shared.recorder->LastStepTimes();
      result.sent = shared.recorder->LastStepSent();
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

void CheckLinks(const WorkerOptions& options, const control::LinkCheckMsg& check,
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

}  // namespace lockstep::worker
