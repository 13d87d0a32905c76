#include "lockstep/coordinator/coordinator.h"

#include <algorithm>
#include <deque>
#include <fstream>
#include <map>
#include <set>

#include "lockstep/control/channel.h"
#include "lockstep/control/messages.h"
#include "lockstep/transport/crc32c.h"
#include "stall_report.h"

namespace lockstep::coordinator {

using control::AssignmentMsg;
using control::ControlMessage;
using control::ErrorMsg;
using control::FlightRecorderMsg;
using control::FlightRecorderRequestMsg;
using control::HeartbeatMsg;
using control::LinkCheckMsg;
using control::LinkCheckResultMsg;
using control::PingMsg;
using control::ReadyMsg;
using control::RegisterMsg;
using control::ShardChunkMsg;
using control::ShardDoneMsg;
using control::ShutdownMsg;
using control::StepMsg;
using control::StepResultMsg;
namespace {

using Clock = control::Clock;
using TimePoint = Clock::TimePoint;
// How long a worker's "peer disconnected" waits for the launcher to report the peer's death.
constexpr std::chrono::milliseconds kRootCauseGrace{300};
// How many queued messages one Pump handles before it goes back to shipping and pinging.
constexpr int kDrainBatch = 1024;

std::string Mib(uint64_t bytes) {
  const uint64_t tenths = bytes * 10 / (uint64_t{1} << 20);
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " MiB";
}

int64_t Ms(Clock::Duration d) { return std::chrono::duration_cast<Millis>(d).count(); }
int64_t Ns(Clock::Duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// A worker found dead or silent: what failover acts on; where none runs, an Error like others.
class WorkerLost : public Error {
 public:
  WorkerLost(size_t w, std::string why, const std::string& message)
      : Error(ErrorCode::kDisconnected, message), worker(w), cause(std::move(why)) {}
  size_t worker;
  std::string cause;
};

}  // namespace

struct Coordinator::Impl {
  explicit Impl(CoordinatorOptions o)
      : options(std::move(o)),
        clock(control::ChannelClock(options.control)),
        socket(control::Listen(options.address, options.control)) {}

  CoordinatorOptions options;
  // Every wait, timeout and measurement of the coordinator reads this (never steady_clock):
  // tests run the whole control plane on a ManualClock.
  Clock& clock;
  std::unique_ptr<control::ControlChannel> socket;
  std::vector<WorkerInfo> workers;
  std::vector<std::string> peers;
  std::map<std::string, size_t> by_peer;
  std::vector<TimePoint> last_heard;
  std::vector<int64_t> last_step;
  std::vector<bool> gone;         // failed or retired by a failover: no longer part of the run
  std::vector<bool> reassigning;  // sent a failover assignment, not ready yet: old errors ignored
  std::set<int32_t> awaiting;     // failover: chips whose new workers may register
  std::vector<FailoverRecord> failovers;
  std::map<uint32_t, std::pair<int, int>> places;  // the deployed chips' (stage, rank)
  std::vector<Finished> partial;
  std::vector<control::ChipProgress> progress;  // from the latest heartbeat
  // When a heartbeat last showed a worker at another step or instruction: a slow step that
  // still moves is not a stall.
  TimePoint last_progress_change = clock.Now();
  TimePoint next_ping = clock.Now();
  TimePoint last_pump = clock.Now();
  // Messages received while the coordinator waited for something else (a dead peer's root
  // cause): the next Pump handles them first, as if they were still queued in the channel.
  std::deque<control::ControlChannel::Incoming> held;
  RunStats stats;
  bool deployed = false;
  bool shut_down = false;
  uint32_t sampling_chip = 0;
  int32_t slots = 1;
  int64_t max_positions = 0;
  int32_t lookahead = 0;  // the deployment's kind lookahead; 0: no self-clocked run

  void Progress(const std::string& line) const {
    if (options.progress) options.progress(line);
  }

  std::string Name(size_t w) const {
    const WorkerInfo& info = workers[w];
    std::string who = info.chip >= 0 ? "chip " + std::to_string(info.chip) : "worker";
    return who + " (worker pid " + std::to_string(info.pid) + " on " + info.hostname + ")";
  }

  [[noreturn]] void Fail(size_t w, ErrorCode code, const std::string& what) const {
    throw Error(code,
                Name(w) + " " + what + "; last completed step " + std::to_string(last_step[w]));
  }
  [[noreturn]] void Lost(size_t w, const std::string& what) const {
    throw WorkerLost(
        w, what, Name(w) + " " + what + "; last completed step " + std::to_string(last_step[w]));
  }

  // Receives for up to `wait` (at least one poll), answering pings and registrations and
  // checking liveness; calls `on_message` for everything else from a known worker.
  void Pump(Millis wait, const std::function<void(size_t, ControlMessage&)>& on_message) {
    const TimePoint start = clock.Now();
    // Time the coordinator spent not listening (shipping a shard) is not a worker's silence.
    if (start - last_pump > options.heartbeat_interval) {
      for (TimePoint& t : last_heard) t = std::max(t, start - options.heartbeat_interval);
    }
    auto until_ping = std::chrono::duration_cast<Millis>(next_ping - start);
    // While shards are on their way, come back soon to make the next chunks.
    if (!shipments.empty()) until_ping = std::min(until_ping, Millis(1));
    std::optional<control::ControlChannel::Incoming> in =
        Receive(std::max(Millis(0), std::min(wait, until_ping)));
    // Drain what is already queued before judging anyone silent (at most a bounded batch, so
    // shards keep flowing; what is left waits for the next Pump — never received and dropped).
    for (int handled = 0; in; ++handled) {
      Handle(*in, clock.Now(), on_message);
      if (handled + 1 == kDrainBatch) break;
      in = Receive(Millis(0));
    }
    Feed();
    const TimePoint now = clock.Now();
    last_pump = now;
    if (now >= next_ping) {
      for (size_t w = 0; w < peers.size(); ++w) {
        if (!gone[w]) socket->Send(peers[w], PingMsg{});
      }
      next_ping = now + options.heartbeat_interval;
    }
    CheckLiveness(clock.Now());
  }

  std::optional<control::ControlChannel::Incoming> Receive(Millis timeout) {
    if (held.empty()) return socket->Receive(timeout);
    control::ControlChannel::Incoming in = std::move(held.front());
    held.pop_front();
    return in;
  }

  void Handle(control::ControlChannel::Incoming& in, TimePoint now,
              const std::function<void(size_t, ControlMessage&)>& on_message) {
    auto known = by_peer.find(in.peer);
    if (!in.message) {
      if (known != by_peer.end()) Fail(known->second, ErrorCode::kProtocol, "sent " + in.error);
      return;  // garbage from a stranger: ignore it
    }
    ControlMessage& m = *in.message;
    if (known == by_peer.end()) {
      if (const auto* r = std::get_if<RegisterMsg>(&m);
          r && (!deployed || awaiting.count(r->chip) != 0)) {
        const size_t w = workers.size();
        workers.push_back({r->pid, r->hostname, r->host, r->tag, r->chip});
        peers.push_back(in.peer);
        by_peer[in.peer] = w;
        last_heard.push_back(now);
        last_step.push_back(-1);
        gone.push_back(false);
        reassigning.push_back(false);
        awaiting.erase(r->chip);
        progress.emplace_back();
        socket->Send(in.peer, PingMsg{});  // welcome: the worker knows someone is there
      } else if (deployed) {
        socket->Send(in.peer, ShutdownMsg{});  // a worker of another run, or one too many
      }
      // Before deploy, a stranger's heartbeat is a worker whose register has not arrived (it
      // re-sends it until welcomed): not a reason to shut it down.
      return;
    }
    const size_t w = known->second;
    if (gone[w]) return;
    last_heard[w] = now;
    if (const auto* h = std::get_if<HeartbeatMsg>(&m)) {
      last_step[w] = std::max(last_step[w], h->last_step);
      const control::ChipProgress& before = progress[w];
      if (h->progress.step != before.step || h->progress.running != before.running ||
          h->progress.current.op != before.current.op) {
        last_progress_change = now;
      }
      progress[w] = h->progress;
      return;
    }
    if (std::holds_alternative<ReadyMsg>(m)) reassigning[w] = false;
    if (const auto* e = std::get_if<ErrorMsg>(&m)) {
      if (reassigning[w]) return;  // about the schedule a failover replaced
      // A lost peer is usually a symptom: its neighbours notice within milliseconds, the
      // launcher's reaper a little later. Give the launcher a moment, and name the dead chip.
      // It waits on the channel (keeping what arrives for later), not by sleeping, so that on
      // a manual clock the grace passes as the in-memory channel moves time.
      if (e->code == ErrorCode::kDisconnected && options.supervisor != nullptr) {
        const TimePoint give_up = now + kRootCauseGrace;
        for (TimePoint t = clock.Now(); t < give_up; t = clock.Now()) {
          CheckLiveness(t);
          const Millis left = std::chrono::ceil<Millis>(give_up - t);
          if (auto more = socket->Receive(std::min(Millis(10), left))) {
            held.push_back(std::move(*more));
          }
        }
      }
      throw Error(e->code, Name(w) + " failed: " + e->message);
    }
    if (std::holds_alternative<RegisterMsg>(m)) return;  // a repeated register: already known
    if (on_message) on_message(w, m);
  }

  // A stall: no step completed and no worker moved to another instruction for stall_timeout,
  // and a chip that has not finished the step waits on a link (a long compute is not a stall).
  bool Stalled(TimePoint last_completion, const std::vector<bool>& finished) const {
    if (options.stall_timeout <= Millis(0)) return false;
    if (clock.Now() - std::max(last_completion, last_progress_change) <= options.stall_timeout) {
      return false;
    }
    for (size_t w = 0; w < workers.size(); ++w) {
      if (!finished[w] && progress[w].running && progress[w].current.link >= 0) return true;
    }
    return false;
  }

  // No step completion for stall_timeout: gathers every worker's flight recorder, writes them to
  // options.flight_recorder_file and fails naming the chips behind (stall_report.h).
  [[noreturn]] void ReportStall(int64_t step, const std::vector<bool>& finished) {
    std::vector<ChipStall> chips(workers.size());
    size_t answers = 0;
    for (size_t w = 0; w < workers.size(); ++w) {
      chips[w].chip = workers[w].chip;
      chips[w].finished = finished[w];
      chips[w].progress = progress[w];
      if (gone[w]) {  // out of the run since a failover: nothing to ask
        chips[w].heard = true;
        ++answers;
        continue;
      }
      socket->Send(peers[w], FlightRecorderRequestMsg{});
    }
    std::string meanwhile;
    const TimePoint give_up = clock.Now() + std::max(Millis(1000), 5 * options.heartbeat_interval);
    try {
      while (answers < workers.size() && clock.Now() < give_up) {
        Pump(Millis(50), [&](size_t w, ControlMessage& m) {
          auto* r = std::get_if<FlightRecorderMsg>(&m);
          if (r == nullptr || chips[w].heard) return;
          chips[w].heard = true;
          chips[w].progress = r->progress;
          chips[w].entries = std::move(r->entries);
          ++answers;
        });
      }
    } catch (const Error& e) {
      meanwhile = "; meanwhile " + std::string(e.what());
    }
    const StallReport report = AnalyzeStall(step, chips);
    std::string where;
    if (!options.flight_recorder_file.empty()) {
      std::ofstream out(options.flight_recorder_file);
      out << StallJson(step, report, chips);
      where = out ? "; flight recorders in " + options.flight_recorder_file
                  : "; cannot write the flight recorders to " + options.flight_recorder_file;
    }
    throw Error(ErrorCode::kUnavailable, report.text + " (no step completed for " +
                                             std::to_string(options.stall_timeout.count()) +
                                             " ms)" + meanwhile + where);
  }

  void CheckLiveness(TimePoint now) const {
    if (options.supervisor != nullptr) {
      if (std::optional<DeadWorker> dead = options.supervisor->Dead()) {
        for (size_t w = 0; w < workers.size(); ++w) {
          if (workers[w].pid != dead->pid) continue;
          if (gone[w]) return;  // stopped or retired by a failover
          Lost(w, dead->what);
        }
        throw Error(ErrorCode::kDisconnected, "worker pid " + std::to_string(dead->pid) + " " +
                                                  dead->what + " before registering");
      }
    }
    for (size_t w = 0; w < workers.size(); ++w) {
      if (!gone[w] && now - last_heard[w] > options.heartbeat_timeout) {
        Lost(w, "stopped answering for " + std::to_string(Ms(now - last_heard[w])) + " ms");
      }
    }
  }

  // Sends worker `w` chip `c`'s assignment and (unless it keeps the one it has) its shard.
  void Ship(size_t w, const Deployment& d, const ChipDeployment& c, bool reuse_shard) {
    workers[w].chip = static_cast<int32_t>(c.chip);
    AssignmentMsg a;
    a.chip = c.chip;
    a.stage = c.stage;
    a.rank = c.rank;
    a.schedule_id = d.schedule_id;
    a.links = c.links;
    a.transport = d.transport;
    a.program = c.program;
    a.spec = d.spec;
    a.reuse_shard = reuse_shard;
    const uint64_t chunk = std::max<uint64_t>(1, options.chunk_bytes);
    if (!reuse_shard && !c.shard_source.empty()) {
      a.shard_source = c.shard_source;  // the worker reads its own slices: nothing to ship
    } else if (!reuse_shard) {
      a.shard_bytes = c.shard.size();
      a.shard_chunks = static_cast<uint32_t>((c.shard.size() + chunk - 1) / chunk);
    }
    const std::vector<int>& pus = workers[w].host.core_pus;
    if (!c.cpus.empty()) {
      a.cpus = c.cpus;
    } else if (!pus.empty()) {
      a.cpus = {pus[static_cast<size_t>(c.index) % pus.size()]};
    }
    a.slots = d.slots;
    a.max_positions = d.max_positions;
    a.group = c.group;
    a.incoming = c.incoming;
    a.repeat_ns = d.repeat_ns;  // a self-clocked run's (deployment.h)
    a.decode_makespan_ns = d.decode_makespan_ns;
    a.prefill = c.prefill;
    a.lookahead = d.lookahead;
    a.link_params = d.link_params;
    socket->Send(peers[w], a);
    if (reuse_shard || !a.shard_source.empty()) return;
    shipments.push_back({w, &c, 0, a.shard_chunks, chunk});
    Feed();
  }

  // A shard on its way: chunks are made as the worker's control queue takes them (Feed, from
  // every Pump), so the coordinator holds a few chunks per worker, not a copy of every shard.
  struct Shipment {
    size_t w;
    const ChipDeployment* chip;  // owned by the Deployment being shipped (Deploy, Failover)
    uint32_t next;
    uint32_t chunks;
    uint64_t chunk_bytes;
  };
  std::vector<Shipment> shipments;
  uint64_t shipped_bytes = 0;  // chunk bytes handed to the control socket, for progress

  void Feed() {
    for (auto it = shipments.begin(); it != shipments.end();) {
      Shipment& s = *it;
      const std::vector<std::byte>& shard = s.chip->shard;
      bool gone_peer = false;
      while (s.next < s.chunks && !socket->Backlogged(peers[s.w])) {
        const uint64_t offset = s.next * s.chunk_bytes;
        const uint64_t size = std::min<uint64_t>(s.chunk_bytes, shard.size() - offset);
        ShardChunkMsg m;
        m.index = s.next;
        m.offset = offset;
        m.data.assign(shard.begin() + static_cast<int64_t>(offset),
                      shard.begin() + static_cast<int64_t>(offset + size));
        m.crc32c = transport::Crc32c(m.data);
        if (!socket->Send(peers[s.w], m)) {
          gone_peer = true;  // its liveness check names it
          break;
        }
        ++s.next;
        shipped_bytes += size;
      }
      if (!gone_peer && s.next == s.chunks) {
        socket->Send(peers[s.w], ShardDoneMsg{shard.size(), transport::Crc32c(shard)});
      }
      it = gone_peer || s.next == s.chunks ? shipments.erase(it) : std::next(it);
    }
  }
  // Shipments point into a Deployment that lives only while its Deploy or Failover runs.
  struct ForgetShipments {
    Impl& im;
    ~ForgetShipments() { im.shipments.clear(); }
  };

  void Failover(const WorkerLost& lost, int64_t step, TimePoint step_start);
};

Coordinator::Coordinator(CoordinatorOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

Coordinator::~Coordinator() { Shutdown(); }

const std::string& Coordinator::address() const { return impl_->socket->address(); }
const std::vector<WorkerInfo>& Coordinator::workers() const { return impl_->workers; }
const RunStats& Coordinator::stats() const { return impl_->stats; }
const std::vector<FailoverRecord>& Coordinator::failovers() const { return impl_->failovers; }
std::vector<Finished> Coordinator::partial() const { return impl_->partial; }

void Coordinator::AwaitWorkers(size_t count, Millis timeout) {
  const TimePoint deadline = impl_->clock.Now() + timeout;
  size_t shown = 0;
  while (impl_->workers.size() < count) {
    const TimePoint now = impl_->clock.Now();
    if (now >= deadline) {
      throw Error(ErrorCode::kUnavailable, std::to_string(impl_->workers.size()) + " of " +
                                               std::to_string(count) + " workers registered at " +
                                               address() + " within " +
                                               std::to_string(timeout.count()) + " ms");
    }
    impl_->Pump(std::chrono::duration_cast<Millis>(deadline - now), {});
    if (impl_->workers.size() != shown && (impl_->workers.size() == count || count <= 16)) {
      shown = impl_->workers.size();
      impl_->Progress("workers registered: " + std::to_string(shown) + "/" + std::to_string(count));
    }
  }
}

void Coordinator::Deploy(const Deployment& d) {
  Impl& im = *impl_;
  if (im.workers.size() != d.chips.size()) {
    throw InvalidInput("deployment needs " + std::to_string(d.chips.size()) + " workers, " +
                       std::to_string(im.workers.size()) + " registered");
  }
  im.deployed = true;
  im.stats.critical_hops = CriticalHops(d);
  im.sampling_chip = d.sampling_chip;
  im.slots = d.slots;
  im.max_positions = d.max_positions;
  im.lookahead = d.prompt_buckets.empty() ? 0 : d.lookahead;  // 0: cannot run self-clocked
  for (const ChipDeployment& c : d.chips) im.places[c.chip] = {c.stage, c.rank};
  const size_t n = d.chips.size();
  const uint64_t total_bytes = d.shard_bytes();
  const size_t every = std::max<size_t>(1, n / 8);
  // owner[i]: the worker of chip i. Requested chips first, then registration order.
  std::vector<size_t> owner(n, n);
  std::vector<bool> taken(n, false);
  for (size_t w = 0; w < n; ++w) {
    const int32_t want = im.workers[w].chip;
    if (want < 0) continue;
    size_t i = 0;
    while (i < n && static_cast<int32_t>(d.chips[i].chip) != want) ++i;
    if (i == n || owner[i] != n) {
      throw InvalidInput(im.Name(w) + " asked for chip " + std::to_string(want) +
                         (i == n ? ", which the plan does not use" : ", which another took"));
    }
    owner[i] = w;
    taken[w] = true;
  }
  for (size_t i = 0, w = 0; i < n; ++i) {
    if (owner[i] != n) continue;
    while (taken[w]) ++w;
    owner[i] = w;
    taken[w] = true;
  }
  // A worker may be ready before the last shard has left (its links need only its peers), so
  // readiness is counted while shipping too.
  std::vector<bool> ready(n, false);
  size_t ready_count = 0;
  auto on_ready = [&](size_t w, ControlMessage& m) {
    if (std::holds_alternative<ReadyMsg>(m) && !ready[w]) {
      ready[w] = true;
      ++ready_count;
      if (ready_count == n || ready_count % every == 0) {
        im.Progress("workers ready (links open, shards loaded): " + std::to_string(ready_count) +
                    "/" + std::to_string(n));
      }
    }
  };
  const TimePoint start = im.clock.Now();
  Impl::ForgetShipments forget{im};
  im.shipped_bytes = 0;
  for (size_t i = 0; i < n; ++i) im.Ship(owner[i], d, d.chips[i], /*reuse_shard=*/false);
  // Progress in eighths of the bytes, as the workers take them.
  uint64_t shown = 0;
  bool shipped = false;
  const TimePoint deadline = im.clock.Now() + im.options.ready_timeout;
  while (ready_count < n) {
    if (!shipped && (im.shipped_bytes >= shown + total_bytes / 8 || im.shipments.empty())) {
      shown = im.shipped_bytes;
      im.Progress("shipping shards: " + Mib(shown) + " of " + Mib(total_bytes) + " sent to " +
                  std::to_string(n) + " chips");
    }
    if (!shipped && im.shipments.empty()) {
      shipped = true;
      im.stats.shard_bytes = static_cast<int64_t>(total_bytes);
      im.stats.ship_ns = Ns(im.clock.Now() - start);
    }
    if (im.clock.Now() >= deadline) {
      for (size_t w = 0; w < n; ++w) {
        if (!ready[w]) {
          im.Fail(w, ErrorCode::kUnavailable,
                  "was not ready within " + std::to_string(im.options.ready_timeout.count()) +
                      " ms (links or shard)");
        }
      }
    }
    im.Pump(Millis(50), on_ready);
  }
  im.stats.deploy_ns = Ns(im.clock.Now() - start);
}

std::vector<Finished> Coordinator::Generate(const std::vector<Request>& requests,
                                            const TokenCallback& on_token,
                                            const Admission* admission) {
  Impl& im = *impl_;
  if (!im.deployed) throw Error(ErrorCode::kInternal, "Generate before Deploy");
  Batcher batcher({.slots = im.slots,
                   .max_positions = im.max_positions,
                   .keep_logits = im.options.keep_logits});
  for (const Request& r : requests) batcher.Submit(r);
  // Every token and its logits as they arrive, so a run that stops (no spare left) still
  // returns what it produced: partial().
  std::map<uint64_t, Finished> done;
  std::set<uint64_t> own;
  for (const Request& r : requests) own.insert(r.id);
  im.partial.clear();
  for (const Request& r : requests) done[r.id].id = r.id;
  auto snapshot = [&] {
    im.partial.clear();
    for (const Request& r : requests) im.partial.push_back(done.at(r.id));
  };
  auto take = [&](std::vector<Finished> finished) {
    for (Finished& f : finished) {
      if (admission != nullptr && own.count(f.id) == 0) {
        done.erase(f.id);  // a client's request: its tokens went out as they came
        admission->on_finished(std::move(f));
      } else {
        done[f.id] = std::move(f);
      }
    }
  };
  take(batcher.TakeDone());
  const TimePoint start = im.clock.Now();
  const std::function<void(Request)> submit = [&](Request r) { batcher.Submit(std::move(r)); };
  bool serving = admission != nullptr;
  while (true) {
    if (serving) {
      serving = admission->poll(submit, batcher.waiting() == 0 && batcher.running() == 0);
      if (admission->cancelled) {
        for (uint64_t id : admission->cancelled()) {
          if (own.count(id) == 0) batcher.Cancel(id);
        }
      }
      take(batcher.TakeDone());
    }
    std::optional<control::Step> step = batcher.Next();
    if (!step) {
      if (!serving) break;
      im.Pump(Millis(0), {});  // idle: answer heartbeats between polls
      continue;
    }
    if (im.options.supervisor != nullptr) im.options.supervisor->BeforeStep(step->index);
    const TimePoint step_start = im.clock.Now();
    bool decode = true;
    for (const control::SlotWork& w : step->work) decode &= !w.reset && w.tokens.size() == 1;
    const size_t n = im.workers.size();
    std::vector<bool> answered(n, false);
    size_t answers = 0, expected = 0;
    std::vector<control::SlotResult> results;
    std::map<int, int64_t> stage_compute;               // the slowest rank's compute, by stage
    control::StepTimes step_times;                      // summed over the chips with a stage
    std::map<uint32_t, control::StepTimes> chip_times;  // the same, by chip
    int64_t timed_chips = 0;
    int64_t control_messages = 0;  // both directions, liveness (pings, heartbeats) apart
    try {
      const StepMsg msg{*step};
      for (size_t w = 0; w < n; ++w) {
        if (im.gone[w]) continue;
        im.socket->Send(im.peers[w], msg);
        ++expected;
        ++control_messages;
      }
      // A chip no longer in the run (failed, retired) owes no answer: not "behind" either.
      std::vector<bool> settled(n, false);
      for (size_t w = 0; w < n; ++w) settled[w] = im.gone[w];
      TimePoint last_completion = step_start;
      while (answers < expected) {
        if (im.Stalled(last_completion, settled)) im.ReportStall(step->index, settled);
        im.Pump(Millis(50), [&](size_t w, ControlMessage& m) {
          ++control_messages;
          auto* r = std::get_if<StepResultMsg>(&m);
          if (r == nullptr) return;
          if (r->index != step->index || answered[w]) {
            im.Fail(w, ErrorCode::kProtocol,
                    "sent the result of step " + std::to_string(r->index) + " while step " +
                        std::to_string(step->index) + " runs");
          }
          answered[w] = true;
          settled[w] = true;
          ++answers;
          last_completion = im.clock.Now();
          im.last_step[w] = r->index;
          const uint32_t chip = static_cast<uint32_t>(im.workers[w].chip);
          for (const control::LinkBytes& l : r->sent) {
            control::LinkBytes& sum = im.stats.chips[chip].sent[l.link];
            sum = {l.link, l.peer, sum.bytes + l.bytes};
          }
          const auto place = im.places.find(chip);
          if (place != im.places.end() && place->second.first >= 0) {
            int64_t& slowest = stage_compute[place->second.first];
            slowest = std::max(slowest, r->compute_ns);
            step_times += r->times;
            chip_times[chip] = r->times;
            ++timed_chips;
          }
          if (static_cast<uint32_t>(im.workers[w].chip) == im.sampling_chip) {
            results = std::move(r->results);
          }
        });
      }
    } catch (const WorkerLost& lost) {
      if (im.options.supervisor == nullptr || !im.options.supervisor->CanFailOver()) throw;
      // The step is lost: every chip drops it, the sequences re-prefill what they had.
      try {
        im.Failover(lost, step->index, step_start);
      } catch (...) {
        snapshot();
        throw;
      }
      batcher.Rewind();
      continue;
    }
    for (const control::SlotResult& r : results) {
      Finished& f = done[r.request];
      if (on_token) on_token(r.request, r.token, static_cast<int64_t>(f.tokens.size()));
      f.tokens.push_back(r.token);
      if (im.options.keep_logits) f.logits.push_back(r.logits);
    }
    im.stats.tokens += static_cast<int64_t>(results.size());
    take(batcher.Complete(results));
    ++im.stats.steps;
    if (decode) {
      ++im.stats.decode_steps;
      im.stats.decode_tokens += static_cast<int64_t>(results.size());
      for (const auto& [stage, ns] : stage_compute) im.stats.decode_compute_ns += ns;
      im.stats.decode_times += step_times;
      im.stats.decode_chip_steps += timed_chips;
      for (const auto& [chip, times] : chip_times) {
        im.stats.chips[chip].decode_times += times;
        ++im.stats.chips[chip].decode_steps;
      }
      im.stats.decode_control_messages += control_messages;
      im.stats.decode_wall_ns += Ns(im.clock.Now() - step_start);
    }
  }
  im.stats.wall_ns += Ns(im.clock.Now() - start);
  snapshot();
  std::vector<Finished> out;
  for (const Request& r : requests) out.push_back(std::move(done.at(r.id)));
  return out;
}

void Coordinator::Impl::Failover(const WorkerLost& first, int64_t step, TimePoint step_start) {
  std::optional<WorkerLost> lost = first;
  while (lost) {
    const TimePoint detected = clock.Now();
    const size_t failed = lost->worker;
    const uint32_t chip = static_cast<uint32_t>(workers[failed].chip);
    FailoverRecord record{chip, -1, lost->cause, step, Ms(detected - step_start), 0};
    Progress(std::string("failover: ") + lost->what());
    gone[failed] = true;
    // Until they have the new schedule, the survivors' reports are about the old one (a link
    // to the lost chip broke): expected, not a new failure.
    for (size_t w = 0; w < workers.size(); ++w) reassigning[w] = !gone[w];
    // A silent worker may only be stopped (SIGSTOP): it must never come back.
    options.supervisor->StopWorker(workers[failed].pid);
    Deployment d;
    try {
      d = options.supervisor->Redeploy(chip);
    } catch (const Error& e) {
      failovers.push_back(record);
      throw Error(e.code(), std::string(lost->what()) + "; " + e.what());
    }
    // A survivor keeps its worker (and shard) when its chip keeps its (stage, rank); every
    // other chip of the new schedule gets a new worker; a worker whose chip is no longer used,
    // or used in another place, is retired.
    const std::pair<int, int> failed_place = places[chip];
    std::set<uint32_t> old_chips;
    for (size_t w = 0; w < workers.size(); ++w) {
      if (gone[w]) continue;
      const uint32_t c = static_cast<uint32_t>(workers[w].chip);
      const auto same = std::find_if(d.chips.begin(), d.chips.end(), [&](const ChipDeployment& x) {
        return x.chip == c && places[c] == std::make_pair(x.stage, x.rank);
      });
      if (same != d.chips.end()) {
        old_chips.insert(c);
      } else {
        socket->Send(peers[w], ShutdownMsg{});
        gone[w] = true;
      }
    }
    for (const ChipDeployment& c : d.chips) {
      if (old_chips.count(c.chip) == 0) awaiting.insert(static_cast<int32_t>(c.chip));
      if (std::make_pair(c.stage, c.rank) == failed_place) {
        record.spare = static_cast<int32_t>(c.chip);
      }
    }
    Progress("failover: chip " + std::to_string(chip) + " -> spare chip " +
             std::to_string(record.spare) + ", schedule " + std::to_string(d.schedule_id));
    try {
      const std::set<int32_t> starting = awaiting;
      for (int32_t c : starting) options.supervisor->StartWorker(static_cast<uint32_t>(c));
      const TimePoint deadline = clock.Now() + options.ready_timeout;
      while (!awaiting.empty()) {
        if (clock.Now() >= deadline) {
          throw Error(ErrorCode::kUnavailable,
                      "failover: the worker for chip " + std::to_string(*awaiting.begin()) +
                          " did not register within " +
                          std::to_string(options.ready_timeout.count()) + " ms");
        }
        Pump(Millis(20), {});
      }
      std::vector<bool> ready(workers.size(), true);
      ForgetShipments forget{*this};
      for (const ChipDeployment& c : d.chips) {
        for (size_t w = 0; w < workers.size(); ++w) {
          if (gone[w] || workers[w].chip != static_cast<int32_t>(c.chip)) continue;
          const bool survivor = old_chips.count(c.chip) != 0;
          reassigning[w] = survivor;
          ready[w] = false;
          Ship(w, d, c, /*reuse_shard=*/survivor);
        }
      }
      const auto on_ready = [&](size_t w, ControlMessage& m) {
        if (std::holds_alternative<ReadyMsg>(m)) ready[w] = true;
      };
      while (std::find(ready.begin(), ready.end(), false) != ready.end()) {
        if (clock.Now() >= deadline) {
          for (size_t w = 0; w < workers.size(); ++w) {
            if (!ready[w]) Fail(w, ErrorCode::kUnavailable, "was not ready after the failover");
          }
        }
        Pump(Millis(20), on_ready);
      }
      lost.reset();
    } catch (const WorkerLost& again) {
      // Another chip failed while this one was being replaced: replace it too. The workers now
      // stand in `d`'s places (the one that failed perhaps in a place new to it: a spare).
      failovers.push_back(record);
      places.clear();
      for (const ChipDeployment& c : d.chips) places[c.chip] = {c.stage, c.rank};
      lost = again;
      continue;
    }
    sampling_chip = d.sampling_chip;
    stats.critical_hops = CriticalHops(d);
    places.clear();
    for (const ChipDeployment& c : d.chips) places[c.chip] = {c.stage, c.rank};
    record.recover_ms = Ms(clock.Now() - detected);
    failovers.push_back(record);
    Progress("failover: recovered in " + std::to_string(record.recover_ms) + " ms (detected " +
             std::to_string(record.detect_ms) + " ms after step " + std::to_string(step) +
             " started)");
  }
}

std::vector<std::string> Coordinator::CheckLinks(const Deployment& d) {
  Impl& im = *impl_;
  std::map<int32_t, size_t> worker_of;
  for (size_t w = 0; w < im.workers.size(); ++w) worker_of[im.workers[w].chip] = w;
  std::map<uint32_t, std::string> failed;
  size_t pending = 0;
  std::vector<bool> asked(im.workers.size(), false);
  for (const ChipDeployment& c : d.chips) {
    auto it = worker_of.find(static_cast<int32_t>(c.chip));
    if (it == worker_of.end()) {
      failed[c.chip] = "chip " + std::to_string(c.chip) + ": no worker asked for it";
      continue;
    }
    im.socket->Send(im.peers[it->second], LinkCheckMsg{c.chip, c.links, d.transport});
    asked[it->second] = true;
    ++pending;
  }
  std::vector<bool> answered(im.workers.size(), false);
  // Every link answers within the connect timeout or fails; the rest is start-up slack.
  const TimePoint deadline = im.clock.Now() + Millis(d.transport.connect_timeout_ms) + Millis(5000);
  while (pending > 0) {
    if (im.clock.Now() >= deadline) {
      for (size_t w = 0; w < im.workers.size(); ++w) {
        if (asked[w] && !answered[w]) {
          failed[static_cast<uint32_t>(im.workers[w].chip)] =
              im.Name(w) + " did not report its link check";
        }
      }
      break;
    }
    im.Pump(Millis(50), [&](size_t w, ControlMessage& m) {
      auto* r = std::get_if<LinkCheckResultMsg>(&m);
      if (r == nullptr || !asked[w] || answered[w]) return;
      answered[w] = true;
      --pending;
      if (!r->ok) failed[r->chip] = "chip " + std::to_string(r->chip) + ": " + r->message;
    });
  }
  std::vector<std::string> out;
  for (auto& [chip, why] : failed) out.push_back(std::move(why));
  return out;
}

void Coordinator::Shutdown() {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  for (const std::string& peer : impl_->peers) impl_->socket->Send(peer, ShutdownMsg{});
  // A worker still reading its queue gets its shutdown; one that does not is gone or stopped.
  impl_->socket->Drain(Millis(500));
}

// A self-clocked run (issue #19): one start message to every chip, then only the sampling
// chip's token stream and each chip's end of run come back; nothing goes out per step.
SelfClockedResult Coordinator::RunSelfClocked(const std::vector<Request>& requests,
                                              const SelfClockedOptions& o) {
  Impl& im = *impl_;
  if (!im.deployed) throw Error(ErrorCode::kInternal, "RunSelfClocked before Deploy");
  if (im.lookahead < 1) {
    throw InvalidInput(
        "this deployment has no prefill programs (DeployOptions::prompt_buckets): it cannot run "
        "self-clocked");
  }
  control::RunStartMsg start;
  std::map<uint64_t, Finished> done;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    if (!done.emplace(r.id, Finished{}).second) {
      throw InvalidInput("request id " + std::to_string(r.id) + " given twice");
    }
    done[r.id].id = r.id;
    if (r.max_new < 1 || r.prompt.empty()) {
      throw InvalidInput("request " + std::to_string(r.id) +
                         ": a self-clocked run needs a prompt and max_new >= 1");
    }
    control::Admission a;
    a.number = static_cast<int64_t>(i);
    a.step = im.lookahead;
    a.request = r.id;
    a.tokens = r.prompt;
    a.max_new = r.max_new;
    a.sampling = r.sampling;
    a.logits = im.options.keep_logits;
    start.admissions.push_back(std::move(a));
  }
  start.closed = true;  // a batch: the same steps every run
  start.pace = o.pace;
  start.virtual_time = o.virtual_time;
  const Clock::TimePoint begin = im.clock.Now();
  if (o.pace > 0) {
    // One origin for every chip of this host on the clock the workers pace by (the steady clock;
    // CLOCK_MONOTONIC is system-wide), far enough ahead that every chip has the start message
    // by then. Not the injected clock: a time origin, never a decision of the coordinator's.
    start.epoch_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         (std::chrono::steady_clock::now() + o.epoch_margin).time_since_epoch())
                         .count();
  }
  SelfClockedResult result;
  const size_t n = im.workers.size();
  size_t left = 0;
  for (size_t w = 0; w < n; ++w) {
    if (im.gone[w]) continue;
    im.socket->Send(im.peers[w], start);
    ++left;
  }
  std::vector<bool> finished(n, false);
  std::optional<Clock::TimePoint> last_tokens;  // when the last token message came
  while (left > 0) {
    im.Pump(Millis(50), [&](size_t w, ControlMessage& m) {
      if (auto* t = std::get_if<control::TokensMsg>(&m)) {
        if (static_cast<uint32_t>(im.workers[w].chip) != im.sampling_chip) {
          im.Fail(w, ErrorCode::kProtocol,
                  "sent the tokens of step " + std::to_string(t->step) + ", but chip " +
                      std::to_string(im.sampling_chip) + " samples");
        }
        ++result.token_messages;
        const Clock::TimePoint now = im.clock.Now();
        const bool decode = std::all_of(t->tokens.begin(), t->tokens.end(),
                                        [](const control::SampledToken& s) { return s.index > 0; });
        if (last_tokens && decode) {
          ++result.decode_messages;
          result.decode_tokens += static_cast<int64_t>(t->tokens.size());
          result.decode_wall_ns += Ns(now - *last_tokens);
        }
        last_tokens = now;
        for (control::SampledToken& s : t->tokens) {
          auto it = done.find(s.request);
          if (it == done.end() || s.index != static_cast<int64_t>(it->second.tokens.size())) {
            im.Fail(w, ErrorCode::kProtocol,
                    "sent token " + std::to_string(s.index) + " of request " +
                        std::to_string(s.request) + ", which this run does not expect");
          }
          it->second.tokens.push_back(s.token);
          if (im.options.keep_logits) it->second.logits.push_back(std::move(s.logits));
          ++result.tokens;
        }
      } else if (auto* r = std::get_if<control::RunDoneMsg>(&m)) {
        if (finished[w]) im.Fail(w, ErrorCode::kProtocol, "ended the run twice");
        finished[w] = true;
        --left;
        ChipLag c;
        c.chip = static_cast<uint32_t>(im.workers[w].chip);
        c.steps = r->steps;
        c.lag = control::LagHistogram::FromBuckets(std::move(r->lag_buckets), r->lag_max_ns);
        result.lag.Merge(c.lag);
        if (c.chip == im.sampling_chip) result.steps = r->steps;
        result.chips.push_back(std::move(c));
      } else if (auto* f = std::get_if<control::RefusedMsg>(&m)) {
        im.Fail(w, ErrorCode::kInvalidInput,
                "refused admission " + std::to_string(f->number) + ": " + f->reason);
      } else {
        im.Fail(w, ErrorCode::kProtocol,
                std::string("sent a ") + control::MessageName(m) + " message during a run");
      }
    });
  }
  result.wall_ns = Ns(im.clock.Now() - begin);
  std::sort(result.chips.begin(), result.chips.end(),
            [](const ChipLag& a, const ChipLag& b) { return a.chip < b.chip; });
  for (const Request& r : requests) {
    Finished& f = done.at(r.id);
    if (static_cast<int64_t>(f.tokens.size()) != r.max_new) {
      throw Error(ErrorCode::kProtocol, "request " + std::to_string(r.id) + " got " +
                                            std::to_string(f.tokens.size()) + " of its " +
                                            std::to_string(r.max_new) + " tokens");
    }
    result.finished.push_back(std::move(f));
  }
  return result;
}

}  // namespace lockstep::coordinator
