// Tests of the control plane: where a test's coordinator and its scripted workers meet (TestNet),
// and the scripted worker itself — a thread that speaks the control protocol (registers, takes its
// assignment and shard, says ready, answers pings and steps) and then misbehaves as told.
//
// On Net::kManualClock everything runs on an InMemoryNetwork over a ManualClock: no sockets and
// no sleeps; time moves only when every party waits (control/channel.h), so a 3-second heartbeat
// timeout passes at once and the times a test reads are the same on every run. Net::kSockets is
// the same conversation over ipc:// sockets on the real clock: the end-to-end form of each
// behaviour. A worker's connection is made on the test's thread (Start) so that it holds time
// still until the worker's thread uses it.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/control/channel.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::coordinator {

// The smallest model spec the wire accepts (assignments carry the spec in partition's codec,
// which refuses a model with no layers or heads).
inline partition::ModelSpec FakeSpec() {
  partition::ModelSpec s;
  s.name = "fake";
  s.num_layers = 1;
  s.hidden_size = 8;
  s.intermediate_size = 8;
  s.num_heads = 1;
  s.num_kv_heads = 1;
  s.head_dim = 8;
  s.vocab_size = 4;
  return s;
}

// A pipeline of `chips` (one stage each, in order; the last samples), one slot; each shard is
// `shard_bytes` opaque bytes (scripted workers do not load them).
inline Deployment FakeDeployment(const std::vector<uint32_t>& chips, size_t shard_bytes,
                                 uint64_t schedule_id = 1) {
  Deployment d;
  d.spec = FakeSpec();
  d.schedule_id = schedule_id;
  d.slots = 1;
  d.sampling_chip = chips.back();
  for (size_t i = 0; i < chips.size(); ++i) {
    ChipDeployment c;
    c.chip = chips[i];
    c.index = static_cast<int>(i);
    c.stage = static_cast<int>(i);
    c.rank = 0;
    c.program.chip = static_cast<int32_t>(chips[i]);
    for (size_t b = 0; b < shard_bytes; ++b) {
      c.shard.push_back(std::byte(static_cast<uint8_t>(b + i)));
    }
    d.chips.push_back(c);
  }
  return d;
}

// The scripted sampling chip's token after `sequence` (everything the slot holds): a function of
// the whole sequence, so a failover's re-prefill that replays anything else gives other tokens.
inline int32_t FakeToken(const std::vector<int32_t>& sequence) {
  int64_t h = 0;
  for (size_t i = 0; i < sequence.size(); ++i) h += static_cast<int64_t>(i + 1) * sequence[i];
  return static_cast<int32_t>(1 + h % 97);
}

// What a fault-free run of the scripted workers generates for `prompt`.
inline std::vector<int32_t> FakeGeneration(std::vector<int32_t> prompt, int64_t max_new) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < max_new; ++i) {
    out.push_back(FakeToken(prompt));
    prompt.push_back(out.back());
  }
  return out;
}

enum class Net { kManualClock, kSockets };

inline std::string NetName(const testing::TestParamInfo<Net>& info) {
  return info.param == Net::kManualClock ? "ManualClock" : "Sockets";
}

class TestNet {
 public:
  // `name`: unique among the nets of one process (a test's name; '/' is allowed).
  TestNet(Net kind, const std::string& name)
      : kind_(kind),
        network_(kind == Net::kManualClock ? static_cast<control::Clock&>(manual_)
                                           : control::RealClock()),
        address_(kind == Net::kManualClock ? "mem://" + name
                                           : "ipc:///tmp/lockstep-coord-test-" +
                                                 std::to_string(getpid()) + "-" + Flat(name)) {}

  bool manual() const { return kind_ == Net::kManualClock; }
  const std::string& address() const { return address_; }
  control::ChannelOptions channel() {
    if (!manual()) return {};
    return {&manual_, &network_};
  }
  control::Clock& clock() { return control::ChannelClock(channel()); }
  // Options for a coordinator listening on this net.
  CoordinatorOptions Options() {
    CoordinatorOptions o;
    o.address = address_;
    o.control = channel();
    return o;
  }
  std::unique_ptr<control::ControlConnection> Connect() {
    return control::Connect(address_, channel());
  }
  // Milliseconds on this net's clock since `start`.
  int64_t Since(control::Clock::TimePoint start) {
    return std::chrono::duration_cast<Millis>(clock().Now() - start).count();
  }

 private:
  static std::string Flat(std::string name) {
    std::replace(name.begin(), name.end(), '/', '-');
    return name;
  }
  Net kind_;
  control::ManualClock manual_;
  control::InMemoryNetwork network_;
  std::string address_;
};

struct ScriptedWorker {
  enum class Then {
    kAnswer,  // keeps answering every step
    kSilent,  // answers nothing more (a stopped process) until Stop or a shutdown
    kError,   // reports `error` (code kDisconnected: a peer it lost) and exits
    kExit,    // exits (a crashed process; its supervisor says so)
    kStall,   // waits "in a receive on link 3 (port 2) from chip 4" for ever, still answering
              // pings (with that progress) and the flight recorder request
  };
  int32_t chip = 3;
  int64_t pid = 0;      // what it registers with; 0: 1000 + chip
  int steps = 1 << 30;  // steps answered before `then`
  Then then = Then::kAnswer;
  bool ready = true;  // says ready once its shard is complete (or reused)
  std::string error = "link chip 3:1 broke";
  ErrorCode error_code = ErrorCode::kProtocol;

  // Observed (read after the thread is joined).
  std::vector<control::AssignmentMsg> assignments;
  uint32_t chunks = 0;
  bool digest_ok = false;
  bool flight_recorder_asked = false;
  std::atomic<bool> stop{false};          // a StopWorker: exits at its next wake-up
  std::atomic<int64_t> exited_at_ms{-1};  // on its clock, relative to `epoch`

  int64_t Pid() const { return pid != 0 ? pid : 1000 + chip; }

  // Runs the script on `socket` until a shutdown, Stop, its exit, or `limit` on `clock`.
  void Run(std::unique_ptr<control::ControlConnection> socket, control::Clock& clock,
           control::Clock::TimePoint epoch, Millis limit = Millis(30000)) {
    using namespace control;
    socket->Send(RegisterMsg{Pid(), "test-host", {"fake", 1, 1, 2, 2, {0, 1}}, "test", chip});
    std::vector<std::byte> shard;
    std::vector<int32_t> sequence;  // the slot's sequence (its KV cache)
    int answered = 0;
    bool stalled = false;
    ChipProgress progress;
    const Clock::TimePoint give_up = clock.Now() + limit;
    auto leave = [&] {
      exited_at_ms = std::chrono::duration_cast<Millis>(clock.Now() - epoch).count();
    };
    while (clock.Now() < give_up && !stop) {
      // Long waits: on the manual clock every wake-up is a step of the simulation, and the
      // script acts only on messages (a Stop is seen at the next one).
      std::optional<ControlMessage> m = socket->Receive(Millis(1000));
      if (!m) continue;
      if (std::holds_alternative<ShutdownMsg>(*m)) return leave();
      const bool silent = then == Then::kSilent && answered == steps;
      if (silent) continue;
      if (std::holds_alternative<PingMsg>(*m)) {
        socket->Send(HeartbeatMsg{chip, answered - 1, progress});
      } else if (auto* a = std::get_if<AssignmentMsg>(&*m)) {
        assignments.push_back(*a);
        shard.clear();
        if (a->reuse_shard && ready) socket->Send(ReadyMsg{static_cast<uint32_t>(chip)});
      } else if (auto* c = std::get_if<ShardChunkMsg>(&*m)) {
        EXPECT_EQ(c->crc32c, transport::Crc32c(c->data));
        EXPECT_EQ(c->offset, shard.size());
        shard.insert(shard.end(), c->data.begin(), c->data.end());
        ++chunks;
      } else if (auto* d = std::get_if<ShardDoneMsg>(&*m)) {
        digest_ok = d->total_bytes == shard.size() && d->crc32c == transport::Crc32c(shard);
        if (ready) socket->Send(ReadyMsg{static_cast<uint32_t>(chip)});
      } else if (auto* s = std::get_if<StepMsg>(&*m)) {
        if (stalled) continue;
        if (answered == steps) {
          switch (then) {
            case Then::kAnswer:
            case Then::kSilent:
              break;
            case Then::kError:
              socket->Send(ErrorMsg{chip, error_code, error});
              return leave();
            case Then::kExit:
              return leave();
            case Then::kStall:
              stalled = true;
              progress.step = s->step.index;
              progress.running = true;
              progress.last_completed_step = answered - 1;
              progress.current = {s->step.index, 37, schedule::InstrKind::kRecv, 3, 2, 4, 64,
                                  1000,          -1};
              continue;
          }
        }
        StepResultMsg r{static_cast<uint32_t>(chip), s->step.index, {}};
        for (const SlotWork& w : s->step.work) {
          if (w.reset) sequence.clear();
          sequence.resize(static_cast<size_t>(w.position));
          sequence.insert(sequence.end(), w.tokens.begin(), w.tokens.end());
          r.results.push_back(
              {w.slot, w.request, FakeToken(sequence), std::vector<float>(4, 0.5f)});
        }
        socket->Send(r);
        ++answered;
      } else if (std::holds_alternative<FlightRecorderRequestMsg>(*m)) {
        flight_recorder_asked = true;
        FlightEntry done{progress.step, 36, schedule::InstrKind::kCompute, -1, -1, -1, 0, 10, 900};
        socket->Send(FlightRecorderMsg{chip, progress, {done}});
      }
    }
    leave();
  }
};

// Starts `worker` on a thread, its connection made here (see above); the thread owns it.
inline std::thread Start(ScriptedWorker& worker, TestNet& net, control::Clock::TimePoint epoch) {
  control::Clock& clock = net.clock();
  return std::thread([&worker, socket = net.Connect(), &clock, epoch]() mutable {
    worker.Run(std::move(socket), clock, epoch);
  });
}

}  // namespace lockstep::coordinator
