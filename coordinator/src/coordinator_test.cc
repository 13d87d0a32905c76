// The control plane against scripted fake peers (a raw DealerSocket as a worker, a raw
// RouterSocket as a coordinator): registration, chunked and checksummed shipping, heartbeats,
// failure reports and bounded waits.
#include "lockstep/coordinator/coordinator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "fake_spec_test_util.h"
#include "lockstep/control/channel.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::coordinator {

using control::AssignmentMsg;
using control::ControlMessage;
using control::ErrorMsg;
using control::HeartbeatMsg;
using control::PingMsg;
using control::ReadyMsg;
using control::RegisterMsg;
using control::ShardChunkMsg;
using control::ShardDoneMsg;
using control::ShutdownMsg;
using control::StepMsg;
using control::StepResultMsg;
namespace {

using Clock = std::chrono::steady_clock;

std::string Address(const std::string& name) {
  return "ipc:///tmp/lockstep-coord-test-" + std::to_string(getpid()) + "-" + name;
}

RegisterMsg Hello(int32_t chip) {
  return RegisterMsg{
      static_cast<int64_t>(getpid()), "test-host", {"fake", 1, 1, 2, 2, {0, 1}}, "test", chip};
}

// One chip, one slot; the shard is opaque bytes (the fake worker does not load it).
Deployment OneChip(uint32_t chip, size_t shard_bytes) {
  Deployment d;
  d.spec = FakeSpec();
  d.slots = 1;
  d.sampling_chip = chip;
  ChipDeployment c;
  c.chip = chip;
  c.stage = 0;
  c.rank = 0;
  c.program.chip = static_cast<int32_t>(chip);
  for (size_t i = 0; i < shard_bytes; ++i) c.shard.push_back(std::byte(static_cast<uint8_t>(i)));
  d.chips.push_back(c);
  return d;
}

// A scripted worker: registers, receives and checks its shard, says ready, then answers pings
// and the first `steps` steps (sampling token 1 for every slot) and goes silent or reports an
// error.
struct FakeWorker {
  FakeWorker(std::string a, int s, bool e = false)
      : address(std::move(a)), steps(s), report_error(e) {}
  std::string address;
  int steps = 0;
  bool report_error = false;
  // Observed:
  uint32_t chunks = 0;
  bool digest_ok = false;
  std::optional<AssignmentMsg> assignment;

  void Run() {
    std::unique_ptr<control::ControlConnection> socket = control::Connect(address);
    socket->Send(Hello(3));
    std::vector<std::byte> shard;
    int answered = 0;
    const Clock::time_point give_up = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < give_up) {
      std::optional<ControlMessage> m = socket->Receive(Millis(20));
      if (!m) continue;
      if (std::holds_alternative<PingMsg>(*m)) {
        socket->Send(HeartbeatMsg{3, answered - 1, {}});
      } else if (auto* a = std::get_if<AssignmentMsg>(&*m)) {
        assignment = *a;
      } else if (auto* c = std::get_if<ShardChunkMsg>(&*m)) {
        EXPECT_EQ(c->crc32c, transport::Crc32c(c->data));
        EXPECT_EQ(c->offset, shard.size());
        shard.insert(shard.end(), c->data.begin(), c->data.end());
        ++chunks;
      } else if (auto* d = std::get_if<ShardDoneMsg>(&*m)) {
        digest_ok = d->total_bytes == shard.size() && d->crc32c == transport::Crc32c(shard);
        socket->Send(ReadyMsg{3});
      } else if (auto* s = std::get_if<StepMsg>(&*m)) {
        if (answered == steps) {
          if (report_error) socket->Send(ErrorMsg{3, ErrorCode::kProtocol, "link chip 3:1 broke"});
          return;  // silent from now on
        }
        StepResultMsg r{3, s->step.index, {}};
        for (const control::SlotWork& w : s->step.work) {
          r.results.push_back({w.slot, w.request, 1, std::vector<float>(4, 0.5f)});
        }
        socket->Send(r);
        ++answered;
      } else if (std::holds_alternative<ShutdownMsg>(*m)) {
        return;
      }
    }
  }
};

TEST(Coordinator, AwaitWorkersSaysHowManyRegistered) {
  CoordinatorOptions options;
  options.address = Address("await");
  Coordinator coordinator(options);
  std::unique_ptr<control::ControlConnection> one = control::Connect(coordinator.address());
  one->Send(Hello(-1));
  try {
    coordinator.AwaitWorkers(2, Millis(300));
    FAIL() << "two workers registered?";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("1 of 2 workers registered"), std::string::npos)
        << e.what();
  }
  ASSERT_EQ(coordinator.workers().size(), 1u);
  EXPECT_EQ(coordinator.workers()[0].hostname, "test-host");
}

// Regression (issue #7, a sanitized 64-process run): a worker's heartbeat that reaches the
// coordinator before its register (the register lost on a dropped connection, then re-sent) once
// got a shutdown. Before deploy it is ignored, and the worker registers when its register comes.
TEST(Coordinator, AHeartbeatBeforeTheRegisterIsNotAShutdown) {
  CoordinatorOptions options;
  options.address = Address("early-beat");
  Coordinator coordinator(options);
  std::unique_ptr<control::ControlConnection> worker = control::Connect(coordinator.address());
  worker->Send(HeartbeatMsg{-1, -1, {}});
  // The coordinator sees the stranger's heartbeat first, then (a moment later) its register.
  EXPECT_THROW(coordinator.AwaitWorkers(1, Millis(100)), Error);
  worker->Send(Hello(-1));
  coordinator.AwaitWorkers(1, Millis(5000));
  bool welcomed = false;
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(5);
  while (!welcomed && Clock::now() < give_up) {
    std::optional<ControlMessage> m = worker->Receive(Millis(20));
    if (!m) continue;
    ASSERT_FALSE(std::holds_alternative<ShutdownMsg>(*m)) << "the worker was told to shut down";
    welcomed = std::holds_alternative<PingMsg>(*m);
  }
  EXPECT_TRUE(welcomed);
  EXPECT_EQ(coordinator.workers().size(), 1u);
}

TEST(Coordinator, ShipsShardInCheckedChunksWithProgress) {
  CoordinatorOptions options;
  options.address = Address("ship");
  options.chunk_bytes = 7;
  std::vector<std::string> progress;
  options.progress = [&](std::string_view line) { progress.emplace_back(line); };
  Coordinator coordinator(options);
  FakeWorker fake(coordinator.address(), 1);
  std::thread worker([&] { fake.Run(); });
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(OneChip(3, 20));
  const std::vector<Finished> out = coordinator.Generate({{7, {1, 2}, 1, {}}});
  coordinator.Shutdown();
  worker.join();
  EXPECT_EQ(fake.chunks, 3u);  // ceil(20 / 7)
  EXPECT_TRUE(fake.digest_ok);
  ASSERT_TRUE(fake.assignment);
  EXPECT_EQ(fake.assignment->chip, 3u);
  EXPECT_EQ(fake.assignment->shard_bytes, 20u);
  EXPECT_EQ(fake.assignment->cpus, std::vector<int>{0});  // chip index 0 -> core 0's PU
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tokens, std::vector<int32_t>{1});
  bool shipped = false;
  for (const std::string& line : progress) {
    shipped |= line == "shipping shards: 0.0 MiB of 0.0 MiB sent to 1 chips";
  }
  EXPECT_TRUE(shipped);
  EXPECT_EQ(coordinator.stats().shard_bytes, 20);
  EXPECT_GT(coordinator.stats().ship_ns, 0);
  EXPECT_GE(coordinator.stats().deploy_ns, coordinator.stats().ship_ns);
}

TEST(Coordinator, SilentWorkerIsNamedWithItsLastCompletedStep) {
  CoordinatorOptions options;
  options.address = Address("silent");
  options.heartbeat_interval = Millis(50);
  options.heartbeat_timeout = Millis(400);
  Coordinator coordinator(options);
  FakeWorker fake(coordinator.address(), 2);
  std::thread worker([&] { fake.Run(); });
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(OneChip(3, 8));
  const Clock::time_point start = Clock::now();
  try {
    coordinator.Generate({{1, {1}, 5, {}}});
    FAIL() << "the run survived a silent worker";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDisconnected);
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("chip 3 (worker pid", 0), 0u) << what;
    EXPECT_NE(what.find("stopped answering"), std::string::npos) << what;
    EXPECT_NE(what.find("last completed step 1"), std::string::npos) << what;
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
  worker.join();
}

TEST(Coordinator, WorkerErrorReportFailsTheRunWithItsMessage) {
  CoordinatorOptions options;
  options.address = Address("error");
  Coordinator coordinator(options);
  FakeWorker fake(coordinator.address(), 0, true);
  std::thread worker([&] { fake.Run(); });
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(OneChip(3, 8));
  try {
    coordinator.Generate({{1, {1}, 5, {}}});
    FAIL() << "the run survived a worker's error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProtocol);
    EXPECT_NE(std::string(e.what()).find("chip 3 (worker pid"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("failed: link chip 3:1 broke"), std::string::npos)
        << e.what();
  }
  worker.join();
}

TEST(Coordinator, ADeadWorkerProcessIsNamedAtOnce) {
  CoordinatorOptions options;
  options.address = Address("dead");
  options.heartbeat_timeout = Millis(60000);
  struct Reaper : WorkerSupervisor {
    bool dead = false;
    std::optional<DeadWorker> Dead() override {
      if (!dead) return std::nullopt;
      return DeadWorker{getpid(), "was killed by signal 9"};
    }
  } reaper;
  options.supervisor = &reaper;
  Coordinator coordinator(options);
  std::unique_ptr<control::ControlConnection> fake = control::Connect(coordinator.address());
  fake->Send(Hello(5));
  coordinator.AwaitWorkers(1, Millis(5000));
  reaper.dead = true;
  try {
    coordinator.AwaitWorkers(2, Millis(5000));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("chip 5 (worker pid", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("was killed by signal 9"), std::string::npos);
  }
}

}  // namespace
}  // namespace lockstep::coordinator
