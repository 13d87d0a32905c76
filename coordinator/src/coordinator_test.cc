// The control plane against scripted workers (scripted_worker_test_util.h): registration, chunked
// and checksummed shipping, heartbeats, ready timeouts, failure reports and a dead peer's root
// cause. Every case runs twice: on the manual clock and the in-memory channel (no sockets, no
// sleeps; the times asserted are exact up to one receive), and end to end over ipc:// sockets on
// the real clock (only lower bounds on time there: the machine may be slow).
#include "lockstep/coordinator/coordinator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "lockstep/control/channel.h"
#include "scripted_worker_test_util.h"

namespace lockstep::coordinator {

using control::ControlMessage;
using control::HeartbeatMsg;
using control::PingMsg;
using control::RegisterMsg;
using control::ShutdownMsg;
namespace {

RegisterMsg Hello(int32_t chip) {
  return RegisterMsg{
      static_cast<int64_t>(getpid()), "test-host", {"fake", 1, 1, 2, 2, {0, 1}}, "test", chip};
}

class CoordinatorTest : public testing::TestWithParam<Net> {
 protected:
  TestNet net_{GetParam(), testing::UnitTest::GetInstance()->current_test_info()->name()};
  const control::Clock::TimePoint epoch_ = net_.clock().Now();
};

TEST_P(CoordinatorTest, AwaitWorkersSaysHowManyRegistered) {
  Coordinator coordinator(net_.Options());
  std::unique_ptr<control::ControlConnection> one = net_.Connect();
  one->Send(Hello(-1));
  const auto start = net_.clock().Now();
  try {
    coordinator.AwaitWorkers(2, Millis(300));
    FAIL() << "two workers registered?";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("1 of 2 workers registered"), std::string::npos)
        << e.what();
  }
  EXPECT_GE(net_.Since(start), 300);
  if (net_.manual()) {
    EXPECT_EQ(net_.Since(start), 300);
  }
  ASSERT_EQ(coordinator.workers().size(), 1u);
  EXPECT_EQ(coordinator.workers()[0].hostname, "test-host");
}

// Regression (issue #7, a sanitized 64-process run): a worker's heartbeat that reaches the
// coordinator before its register (the register lost on a dropped connection, then re-sent) once
// got a shutdown. Before deploy it is ignored, and the worker registers when its register comes.
TEST_P(CoordinatorTest, AHeartbeatBeforeTheRegisterIsNotAShutdown) {
  Coordinator coordinator(net_.Options());
  std::unique_ptr<control::ControlConnection> worker = net_.Connect();
  worker->Send(HeartbeatMsg{-1, -1, {}});
  // The coordinator sees the stranger's heartbeat first, then (a moment later) its register.
  EXPECT_THROW(coordinator.AwaitWorkers(1, Millis(100)), Error);
  worker->Send(Hello(-1));
  coordinator.AwaitWorkers(1, Millis(5000));
  std::optional<ControlMessage> m = worker->Receive(Millis(5000));
  ASSERT_TRUE(m);
  EXPECT_FALSE(std::holds_alternative<ShutdownMsg>(*m)) << "the worker was told to shut down";
  EXPECT_TRUE(std::holds_alternative<PingMsg>(*m)) << "not welcomed";
  EXPECT_EQ(coordinator.workers().size(), 1u);
}

TEST_P(CoordinatorTest, ShipsShardInCheckedChunksWithProgress) {
  CoordinatorOptions options = net_.Options();
  options.chunk_bytes = 7;
  std::vector<std::string> progress;
  options.progress = [&](std::string_view line) { progress.emplace_back(line); };
  Coordinator coordinator(options);
  ScriptedWorker fake;
  std::thread worker = Start(fake, net_, epoch_);
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(FakeDeployment({3}, 20));
  const std::vector<Finished> out = coordinator.Generate({{7, {1, 2}, 2, {}}});
  coordinator.Shutdown();
  worker.join();
  EXPECT_EQ(fake.chunks, 3u);  // ceil(20 / 7)
  EXPECT_TRUE(fake.digest_ok);
  ASSERT_EQ(fake.assignments.size(), 1u);
  EXPECT_EQ(fake.assignments[0].chip, 3u);
  EXPECT_EQ(fake.assignments[0].shard_bytes, 20u);
  EXPECT_EQ(fake.assignments[0].cpus, std::vector<int>{0});  // chip index 0 -> core 0's PU
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tokens, FakeGeneration({1, 2}, 2));
  bool shipped = false;
  for (const std::string& line : progress) {
    shipped |= line == "shipping shards: 0.0 MiB of 0.0 MiB sent to 1 chips";
  }
  EXPECT_TRUE(shipped);
  EXPECT_EQ(coordinator.stats().shard_bytes, 20);
  EXPECT_GE(coordinator.stats().deploy_ns, coordinator.stats().ship_ns);
  EXPECT_EQ(coordinator.stats().steps, 2);
}

TEST_P(CoordinatorTest, SilentWorkerIsNamedWithItsLastCompletedStep) {
  CoordinatorOptions options = net_.Options();
  options.heartbeat_interval = Millis(50);
  options.heartbeat_timeout = Millis(400);
  Coordinator coordinator(options);
  ScriptedWorker fake;
  fake.steps = 2;
  fake.then = ScriptedWorker::Then::kSilent;
  std::thread worker = Start(fake, net_, epoch_);
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(FakeDeployment({3}, 8));
  const auto start = net_.clock().Now();
  try {
    coordinator.Generate({{1, {1}, 5, {}}});
    FAIL() << "the run survived a silent worker";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDisconnected);
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("chip 3 (worker pid 1003 on test-host) stopped answering for ", 0), 0u)
        << what;
    EXPECT_NE(what.find("last completed step 1"), std::string::npos) << what;
  }
  // Its last answer came as step 1 ended, at the start on the manual clock: it is declared gone
  // once the timeout has passed, at the first check after it (checks are at most 50 ms apart).
  // (Since() truncates to whole ms: on the real clock 400.6 ms reads 400.)
  EXPECT_GE(net_.Since(start), 400);
  if (net_.manual()) {
    EXPECT_GT(net_.Since(start), 400);
    EXPECT_LE(net_.Since(start), 450);
  }
  coordinator.Shutdown();
  worker.join();
}

TEST_P(CoordinatorTest, AWorkerThatIsNotReadyInTimeIsNamed) {
  CoordinatorOptions options = net_.Options();
  options.ready_timeout = Millis(net_.manual() ? 2000 : 500);
  Coordinator coordinator(options);
  ScriptedWorker fake;
  fake.ready = false;  // takes its shard, answers pings, never opens its links
  std::thread worker = Start(fake, net_, epoch_);
  coordinator.AwaitWorkers(1, Millis(5000));
  const auto start = net_.clock().Now();
  try {
    coordinator.Deploy(FakeDeployment({3}, 8));
    FAIL() << "deployed without a ready";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_EQ(std::string(e.what()), "chip 3 (worker pid 1003 on test-host) was not ready within " +
                                         std::to_string(options.ready_timeout.count()) +
                                         " ms (links or shard); last completed step -1");
  }
  EXPECT_GE(net_.Since(start), options.ready_timeout.count());
  if (net_.manual()) {
    EXPECT_LE(net_.Since(start), 2000 + 50);
  }
  EXPECT_TRUE(fake.digest_ok);  // the shard went; only the ready is missing
  coordinator.Shutdown();
  worker.join();
}

// Regression (CI, a 128-chip in-process deploy under load): more messages queued than one
// Pump handles at a time (1,024) — heartbeats from many workers while shards ship — and the one
// received past that batch was dropped, so a worker's ready was never counted and the run
// failed "not ready". Every queued message is handled, in order, across Pumps: here the ready
// sits just before, at, and just past the batch's edge.
TEST_P(CoordinatorTest, AReadyBehindAThousandHeartbeatsIsCounted) {
  for (const int beats : {1023, 1024, 1025}) {
    SCOPED_TRACE(std::to_string(beats) + " heartbeats before the ready");
    CoordinatorOptions options = net_.Options();
    options.ready_timeout = Millis(3000);
    Coordinator coordinator(options);
    std::unique_ptr<control::ControlConnection> worker = net_.Connect();
    worker->Send(Hello(3));
    coordinator.AwaitWorkers(1, Millis(5000));
    // All queued before the coordinator looks again.
    for (int i = 0; i < beats; ++i) worker->Send(HeartbeatMsg{3, -1, {}});
    worker->Send(control::ReadyMsg{3});
    if (!net_.manual()) std::this_thread::sleep_for(Millis(200));  // let the socket deliver
    const auto start = net_.clock().Now();
    coordinator.Deploy(FakeDeployment({3}, 8));  // threw "chip 3 ... was not ready" before
    EXPECT_LT(net_.Since(start), 3000);
  }
}

TEST_P(CoordinatorTest, WorkerErrorReportFailsTheRunWithItsMessage) {
  Coordinator coordinator(net_.Options());
  ScriptedWorker fake;
  fake.steps = 0;
  fake.then = ScriptedWorker::Then::kError;
  std::thread worker = Start(fake, net_, epoch_);
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(FakeDeployment({3}, 8));
  try {
    coordinator.Generate({{1, {1}, 5, {}}});
    FAIL() << "the run survived a worker's error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProtocol);
    EXPECT_EQ(std::string(e.what()),
              "chip 3 (worker pid 1003 on test-host) failed: link chip 3:1 broke");
  }
  worker.join();
}

// A supervisor that reports each death once, as soon as it is `known` (a launcher's reaper).
struct Reaper : WorkerSupervisor {
  struct Death {
    int64_t pid;
    std::function<bool()> known;
    bool told = false;
  };
  std::vector<Death> deaths;
  std::optional<DeadWorker> Dead() override {
    for (Death& d : deaths) {
      if (!d.told && d.known()) {
        d.told = true;
        return DeadWorker{d.pid, "was killed by signal 9"};
      }
    }
    return std::nullopt;
  }
};

TEST_P(CoordinatorTest, ADeadWorkerProcessIsNamedAtOnce) {
  CoordinatorOptions options = net_.Options();
  options.heartbeat_timeout = Millis(60000);
  Reaper reaper;
  options.supervisor = &reaper;
  Coordinator coordinator(options);
  std::unique_ptr<control::ControlConnection> fake = net_.Connect();
  fake->Send(Hello(5));
  coordinator.AwaitWorkers(1, Millis(5000));
  reaper.deaths.push_back({getpid(), [] { return true; }});
  const auto start = net_.clock().Now();
  try {
    coordinator.AwaitWorkers(2, Millis(5000));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDisconnected);
    EXPECT_EQ(std::string(e.what()).rfind("chip 5 (worker pid", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("was killed by signal 9"), std::string::npos);
  }
  if (net_.manual()) {
    EXPECT_LE(net_.Since(start), 200);  // a ping's wait, not the timeout
  }
}

// A worker whose link to a dead peer broke reports "disconnected" before the launcher's reaper
// knows of the death; the coordinator gives the reaper a moment (300 ms) and names the dead chip,
// the root cause, instead of the messenger.
TEST_P(CoordinatorTest, ALostPeerIsBlamedOnTheChipThatDied) {
  CoordinatorOptions options = net_.Options();
  Reaper reaper;
  options.supervisor = &reaper;
  Coordinator coordinator(options);
  ScriptedWorker first, last;
  first.chip = 0;
  first.steps = 2;
  first.then = ScriptedWorker::Then::kExit;
  last.chip = 3;
  last.steps = 2;
  last.then = ScriptedWorker::Then::kError;
  last.error_code = ErrorCode::kDisconnected;
  last.error = "link 0 to chip 0: peer disconnected";
  std::thread w0 = Start(first, net_, epoch_);
  std::thread w3 = Start(last, net_, epoch_);
  coordinator.AwaitWorkers(2, Millis(5000));
  coordinator.Deploy(FakeDeployment({0, 3}, 8));
  // Chip 0's process dies at step 2; its reaper knows 100 ms later.
  reaper.deaths.push_back({first.Pid(), [&] {
                             const int64_t exited = first.exited_at_ms;
                             return exited >= 0 && net_.Since(epoch_) >= exited + 100;
                           }});
  const auto start = net_.clock().Now();
  try {
    coordinator.Generate({{1, {1}, 5, {}}});
    FAIL() << "the run survived a dead worker";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDisconnected);
    EXPECT_EQ(
        std::string(e.what()),
        "chip 0 (worker pid 1000 on test-host) was killed by signal 9; last completed step 1");
  }
  EXPECT_GE(net_.Since(start), 100);
  if (net_.manual()) {
    EXPECT_LE(net_.Since(start), 110);
  }
  coordinator.Shutdown();
  w0.join();
  w3.join();
}

INSTANTIATE_TEST_SUITE_P(Nets, CoordinatorTest, testing::Values(Net::kManualClock, Net::kSockets),
                         NetName);

}  // namespace
}  // namespace lockstep::coordinator
