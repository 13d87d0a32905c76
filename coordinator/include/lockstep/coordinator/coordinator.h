// The coordinator: the control plane of a distributed run. It owns one ZeroMQ ROUTER control
// socket (proto/control.capnp documents the conversation); workers — processes on this or other
// hosts, or threads — connect to it, register, and are given a chip each. Then it ships every
// chip's assignment, program and weight shard (in checksummed chunks, with progress), waits until
// every worker has opened its links, and drives the run: a Batcher (batcher.h) admits requests into
// the schedule's pipeline slots, every worker gets every Step, and the sampling chip's results
// go back to the batcher and, token by token, to the caller.
//
// Stalls: when no step completes and no worker moves on for `stall_timeout` while every worker
// still answers and one waits on a link, the coordinator asks the workers for their flight
// recorders and fails naming the chips behind and the links they wait on ("chip 5 waits at step 12
// op 37: recv on link 3 (port 2) from chip 4 ...; chips 0-4 finished step 12").
//
// Liveness: the coordinator pings every worker each `heartbeat_interval`; a worker that sends
// nothing for `heartbeat_timeout` (or whose process the launcher reports dead) fails the call
// with Error(kDisconnected) naming its chip and last completed step. A worker's own error report
// fails it with the worker's message. Whatever happens, Shutdown (and the destructor) tells every
// registered worker to exit.
//
// Failover (issue #8), when the supervisor can fail over: a worker found dead or silent during
// Generate is stopped for good (StopWorker), Redeploy(chip) gives the deployment of the plan
// patched with a spare in its place (coordinator/failover.h), StartWorker starts a worker for each
// chip new in it, the survivors get their new program and links (keeping their shard), the
// replacement its shard; the step in flight is discarded and every running sequence re-prefilled
// (Batcher::Rewind), so tokens and logits are those of a fault-free run. When Redeploy throws (no
// spare left) Generate throws that error; partial() has what was produced.
//
// Time: every wait, timeout and measurement (heartbeats, stalls, ready timeouts, failover and
// run statistics) reads the clock of `options.control` (control/clock.h), never the system clock
// directly: the real clock in a run, a ManualClock with the in-memory channel in tests, where
// a 3-second timeout passes at once and deterministically. Time is for liveness and reports only;
// it never shapes a schedule or an output (tokens come from the static schedule and the Batcher).
//
// Thread-safety: one thread uses a Coordinator.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/control/channel.h"
#include "lockstep/control/lag_histogram.h"
#include "lockstep/control/progress.h"
#include "lockstep/coordinator/batcher.h"
#include "lockstep/coordinator/deployment.h"

namespace lockstep::coordinator {

using Millis = control::Millis;

// A worker process known to have died.
struct DeadWorker {
  int64_t pid = 0;
  std::string what;  // "was killed by signal 9", "exited with status 1"
};

// What the coordinator may ask of whoever started its workers (launch/launch.h implements it for
// threads and processes). Every method has a harmless default, so a supervisor says only what it
// knows. Called on the coordinator's thread.
class WorkerSupervisor {
 public:
  virtual ~WorkerSupervisor() = default;
  // Polled while the coordinator waits: a worker process known to have died since the last call
  // (its launcher's waitpid), or nullopt. Lets a crash be named at once instead of after the
  // heartbeat timeout. May throw to end the wait (an interrupted launch).
  virtual std::optional<DeadWorker> Dead() { return std::nullopt; }
  // Called as step `index` is about to be sent (fault injection).
  virtual void BeforeStep(int64_t /*index*/) {}
  // Failover. False: a lost worker ends the run, and nothing below is called.
  virtual bool CanFailOver() const { return false; }
  // The deployment of the plan patched with a spare in `failed_chip`'s place (failover.h); throws
  // Error when no spare is left.
  virtual Deployment Redeploy(uint32_t /*failed_chip*/) {
    throw Error(ErrorCode::kInternal, "this supervisor cannot redeploy");
  }
  // Starts a worker that will ask for `chip`.
  virtual void StartWorker(uint32_t /*chip*/) {}
  // Stops worker `pid` for good (SIGKILL and reap; a SIGSTOPped one too): it must never come back.
  virtual void StopWorker(int64_t /*pid*/) {}
};

struct CoordinatorOptions {
  // Where workers connect: ipc://PATH, or tcp://HOST:PORT (port 0: any free port; see address()),
  // or mem://NAME on control.network (workers as threads of this process; tests).
  std::string address = "tcp://127.0.0.1:0";
  // The control channel's clock and in-memory network. The coordinator reads the same clock:
  // `control.clock`, else (mem://) the network's, else the real clock.
  control::ChannelOptions control{};
  Millis heartbeat_interval{200};
  // A worker silent this long is declared gone (a step's own timeouts are longer, so a dead
  // worker is named before its neighbours report a broken link).
  Millis heartbeat_timeout{3000};
  // Deploy: every worker must have opened its links and loaded its shard within this.
  Millis ready_timeout{120000};
  uint64_t chunk_bytes = uint64_t{1} << 20;  // shard chunk size on the control socket
  // Loading-phase progress lines ("shipping shards: 3/8 chips, 12 MiB"); empty: none.
  std::function<void(std::string_view)> progress;
  // Whoever started the workers (not owned; must outlive the Coordinator); null: nobody to ask
  // (no deaths reported early, no failover).
  WorkerSupervisor* supervisor = nullptr;
  // A run in which no worker completes the running step or moves to another instruction for
  // this long, while the workers still answer and one of them waits on a link, is stalled (a cut
  // link, a peer that never sends; a long computation is not): the coordinator collects every
  // worker's flight recorder (worker/flight_recorder.h), names the chips that are behind, the
  // step and op they are at and the link (port, peer) they wait on, writes the recorders to
  // `flight_recorder_file` and fails the call with kUnavailable. Keep it below the workers'
  // step timeout (TransportSettings::step_timeout_ms), which would otherwise fail the run first
  // with a plain link timeout. 0: never.
  Millis stall_timeout{0};
  // Return every token's logits in Finished (and partial()); false: tokens only, and the
  // sampling chip sends the coordinator its token without the vocabulary of logits each step.
  bool keep_logits = true;
  // Where the recorders go on a stall (JSON, see coordinator/src/stall_report.h); the error names
  // it. Empty: not written.
  std::string flight_recorder_file;
};

// One failover, as measured on the coordinator's clock.
struct FailoverRecord {
  uint32_t chip = 0;       // the chip that failed
  int32_t spare = -1;      // the chip that took its place; -1: none (the run stopped)
  std::string cause;       // "was killed by signal 9", "stopped answering for 1003 ms"
  int64_t step = 0;        // the step in flight (discarded and re-run as a re-prefill)
  int64_t detect_ms = 0;   // from that step's start to the failure being known
  int64_t recover_ms = 0;  // from then to every worker ready on the new schedule
};

struct WorkerInfo {
  int64_t pid = 0;
  std::string hostname;
  control::HostInfo host;
  std::string tag;
  int32_t chip = -1;  // the chip it asked for or was given; -1 until then
};

// One chip's share of a run (RunStats::chips), as its worker reports it with each step's result.
struct ChipStats {
  // Its decode steps by instruction kind (as RunStats::decode_times, this chip alone; chips with
  // a stage) and how many decode steps those are.
  control::StepTimes decode_times;
  int64_t decode_steps = 0;
  // The payload bytes it put on each outgoing link over every step it answered (prefill too),
  // by link id.
  std::map<int32_t, control::LinkBytes> sent;
};

struct RunStats {
  int64_t steps = 0;
  int64_t tokens = 0;
  int64_t wall_ns = 0;         // Generate's time on the coordinator's clock (see above)
  int64_t decode_steps = 0;    // steps that carried no prompt
  int64_t decode_wall_ns = 0;  // their wall time: measured per-token latency = this / steps
  // Tokens those steps generated: one per sequence in flight, so with several sequences in the
  // pipeline's slots decode throughput (decode_tokens / decode_wall_ns) exceeds 1 / latency.
  int64_t decode_tokens = 0;
  // Deploy: the shard bytes shipped, the time until the last chunk went to the control socket
  // (ZeroMQ holds a few chunks per worker, so this is about when the workers had them), and
  // the time until every worker was ready (shards parsed, links open).
  int64_t shard_bytes = 0;
  int64_t ship_ns = 0;
  int64_t deploy_ns = 0;
  // Where a decode step's time goes. decode_compute_ns: over the decode steps, the compute
  // along the pipeline: per step the sum over stages of the slowest rank's compute (the CPU
  // time of its compute thread, waits excluded). critical_hops: CriticalHops of the deployed
  // schedule (link messages one step waits for in a row; the coordinator's Step and result are
  // two more).
  int64_t decode_compute_ns = 0;
  int64_t critical_hops = 0;
  // Where a chip's decode step goes, by instruction kind (wall time; a Recv is mostly waiting on
  // its link): summed over the decode steps and the chips that answered them (chips with a
  // stage), decode_chip_steps of them. The mean chip's step is decode_times.step_ns /
  // decode_chip_steps; the rest of decode_wall_ns / decode_steps is the coordinator's Step and
  // the chip's result on the control plane.
  control::StepTimes decode_times;
  int64_t decode_chip_steps = 0;
  // Control-plane messages of the decode steps, counted here in both directions (every Step out,
  // every result and other report in; pings and heartbeats, which keep liveness whatever runs,
  // not counted): over decode_tokens, the control messages per generated token (issue #19).
  int64_t decode_control_messages = 0;
  // By chip id: each chip's decode step times and link bytes (server/metrics.h shows them).
  std::map<uint32_t, ChipStats> chips;
};

// Called for every generated token as it arrives: request id, token, its index in the request.
using TokenCallback = std::function<void(uint64_t request, int32_t token, int64_t index)>;

// Serving (server.h): requests that arrive while others run. Generate calls `poll` before every
// step and, while nothing runs, again and again (heartbeats are kept between calls; `poll` may
// block briefly, ~10 ms, waiting for clients). `submit` queues a request into the same batcher
// (free pipeline slots take it at the next step); it throws Error (kInvalidInput), as
// Batcher::Submit, for a request the batcher refuses, so the hook can tell its client. `poll`
// returns false to stop: Generate returns once nothing runs any more. Requests submitted through
// the hook finish through `on_finished`, not Generate's result.
// `cancelled` (may be empty), asked right after each `poll`: requests of the hook to drop (a
// client that went away, a stop string reached); each leaves its slot or the queue before the
// next step and finishes through `on_finished` with the tokens it has.
struct Admission {
  std::function<bool(const std::function<void(Request)>& submit, bool idle)> poll;
  std::function<void(Finished)> on_finished;
  std::function<std::vector<uint64_t>()> cancelled;
};

// A self-clocked run (RunSelfClocked; worker/run_control.h): how the chips keep time.
struct SelfClockedOptions {
  // >= 1: no instruction starts before its scheduled start x pace after the run's origin (one
  // host: the workers share the steady clock); 0: as soon as its data is there.
  double pace = 0;
  // The sim transport: every chip keeps a clock of planned durations instead of the wall, so
  // every instruction starts exactly when the schedule says (lag 0).
  bool virtual_time = false;
  // Paced: the run's origin this long after the start message goes out.
  Millis epoch_margin{300};
};

// How late one chip's instructions started against the schedule.
struct ChipLag {
  uint32_t chip = 0;
  int64_t steps = 0;
  control::LagHistogram lag;
};

struct SelfClockedResult {
  std::vector<Finished> finished;  // in the order of the requests
  std::vector<ChipLag> chips;      // by chip id
  control::LagHistogram lag;       // every chip's, merged
  int64_t steps = 0;               // steps the sampling chip ran (the stop step not counted)
  int64_t tokens = 0;
  // Control messages after the start message: token batches from the sampling chip (one per
  // step that drew a token) — the only traffic while the chips run; each chip's end of run
  // (one each) and nothing the coordinator sends are not counted here.
  int64_t token_messages = 0;
  int64_t wall_ns = 0;  // from the start message to the last chip's end of run
  // The decode steps as the token stream shows them: the messages of decode steps (every token
  // past its request's first; a prefill step draws a request's first), their tokens, and the
  // time from the message before each to it (so prefill steps and the first prompt's are left
  // out, as the barrier path's decode figures leave them out).
  int64_t decode_messages = 0;
  int64_t decode_tokens = 0;
  int64_t decode_wall_ns = 0;
};

class Coordinator {
 public:
  // Binds the control socket; InvalidInput naming the address if it cannot.
  explicit Coordinator(CoordinatorOptions options);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  const std::string& address() const;

  // Waits until `count` workers have registered. Error(kUnavailable) after `timeout` saying how
  // many did.
  void AwaitWorkers(size_t count, Millis timeout);
  const std::vector<WorkerInfo>& workers() const;

  // Gives every worker that asked for a chip (lockstep-worker --chip) that chip and the others
  // the remaining chips in registration order (there must be exactly as many workers as
  // chips), ships programs and shards, and waits for every worker's ready.
  void Deploy(const Deployment& deployment);

  // Pre-flight (lockstep deploy), before Deploy: sends every worker — each must have asked for
  // its chip (lockstep-worker --chip) — its chip's links from `deployment`; each opens them with
  // the deployment's transport settings, exchanging hellos that name chip and port (a peer that
  // is not the chip and port the link names, or that does not answer within the settings'
  // connect timeout, fails the link), then closes them. Returns one line per chip whose links
  // failed, in chip order, each as the worker's transport reported it (empty: every link
  // connected to the expected peer on the expected port). Workers stay registered and can be
  // deployed afterwards.
  std::vector<std::string> CheckLinks(const Deployment& deployment);

  // Runs `requests` to completion (ids must be unique); results in the order of `requests`.
  // With `admission`, also admits the hook's requests until it says stop (see Admission).
  std::vector<Finished> Generate(const std::vector<Request>& requests,
                                 const TokenCallback& on_token = {},
                                 const Admission* admission = nullptr);
  // Runs `requests` (unique ids, each a prompt and max_new >= 1) self-clocked: every chip gets
  // one start message holding the whole admission log (closed: the same steps every run), then
  // runs step after step on its own; the sampling chip streams tokens back. Needs a deployment
  // with prefill programs (DeployOptions::prompt_buckets), else InvalidInput. No failover here:
  // a lost worker fails the call as in Generate without a supervisor that can fail over.
  SelfClockedResult RunSelfClocked(const std::vector<Request>& requests,
                                   const SelfClockedOptions& options = {});
  const RunStats& stats() const;
  const std::vector<FailoverRecord>& failovers() const;
  // After Generate threw: what every request of that call had produced (tokens, logits), in the
  // order of its requests. After a successful Generate: its results.
  std::vector<Finished> partial() const;

  // Tells every registered worker to exit. Idempotent.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep::coordinator
