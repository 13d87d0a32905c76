// Failover as the coordinator runs it, against scripted workers on the manual clock and the
// in-memory channel (scripted_worker_test_util.h): a silent or dead chip is stopped, a spare
// started and deployed, the survivors keep their shards, the step in flight is re-prefilled, and
// the tokens are those of a fault-free run; no spare, a spare that never comes and a spare that
// fails in turn are named. Over real processes and sockets: tests/failover_test.sh.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "lockstep/coordinator/coordinator.h"
#include "scripted_worker_test_util.h"

namespace lockstep::coordinator {
namespace {

// What a launcher does for failover, for scripted workers: Redeploy gives the deployment listed
// for the failed chip (none listed: no spare left), StartWorker starts the scripted worker listed
// for the chip, StopWorker stops the worker of that pid for good; Dead reports a worker that
// exited (Then::kExit) at once, as a reaper would.
struct Spares : WorkerSupervisor {
  Spares(TestNet& n, control::Clock::TimePoint e) : net(n), epoch(e) {}
  TestNet& net;
  control::Clock::TimePoint epoch;
  std::map<uint32_t, Deployment> redeploy;     // by failed chip
  std::map<uint32_t, ScriptedWorker*> spares;  // by chip
  std::vector<ScriptedWorker*> watched;        // whose exit Dead reports (null once reported)
  std::vector<uint32_t> started;
  std::vector<int64_t> stopped;
  std::vector<std::thread> threads;  // joined by the test (FailoverRun::Stop)

  bool CanFailOver() const override { return true; }
  Deployment Redeploy(uint32_t chip) override {
    auto it = redeploy.find(chip);
    if (it == redeploy.end()) {
      throw Error(ErrorCode::kUnavailable, "no spare left for chip " + std::to_string(chip));
    }
    return it->second;
  }
  void StartWorker(uint32_t chip) override {
    started.push_back(chip);
    auto it = spares.find(chip);
    if (it != spares.end()) threads.push_back(Start(*it->second, net, epoch));
  }
  void StopWorker(int64_t pid) override {
    stopped.push_back(pid);
    for (ScriptedWorker* w : watched) {
      if (w != nullptr && w->Pid() == pid) w->stop = true;
    }
    for (auto& [chip, w] : spares) {
      if (w->Pid() == pid) w->stop = true;
    }
  }
  std::optional<DeadWorker> Dead() override {
    for (ScriptedWorker*& w : watched) {
      if (w != nullptr && w->exited_at_ms >= 0 && !w->stop) {
        const int64_t pid = w->Pid();
        w = nullptr;
        return DeadWorker{pid, "was killed by signal 9"};
      }
    }
    return std::nullopt;
  }
};

struct FailoverRun : testing::Test {
  TestNet net{Net::kManualClock, testing::UnitTest::GetInstance()->current_test_info()->name()};
  const control::Clock::TimePoint epoch = net.clock().Now();
  Spares spares{net, epoch};
  ScriptedWorker first, last;  // chips 0 (stage 0) and 3 (stage 1, sampling)
  ScriptedWorker spare, mute;  // spares, when a test starts them
  std::vector<std::thread> threads;
  std::unique_ptr<Coordinator> coordinator;

  FailoverRun() {
    first.chip = 0;
    last.chip = 3;
    spares.watched = {&first, &last};
  }
  ~FailoverRun() override { Stop(); }
  // Tells every worker to exit and waits until they have.
  void Stop() {
    if (coordinator) coordinator->Shutdown();
    for (std::thread& t : threads) t.join();
    threads.clear();
    for (std::thread& t : spares.threads) t.join();
    spares.threads.clear();
  }
  void Deploy() {
    CoordinatorOptions options = net.Options();
    options.heartbeat_interval = Millis(50);
    options.heartbeat_timeout = Millis(400);
    options.ready_timeout = Millis(2000);
    options.supervisor = &spares;
    coordinator = std::make_unique<Coordinator>(options);
    threads.push_back(Start(first, net, epoch));
    threads.push_back(Start(last, net, epoch));
    coordinator->AwaitWorkers(2, Millis(5000));
    coordinator->Deploy(FakeDeployment({0, 3}, 16));
  }
};

TEST_F(FailoverRun, ASilentChipIsReplacedAndTheTokensAreAFaultFreeRuns) {
  last.steps = 2;
  last.then = ScriptedWorker::Then::kSilent;
  spare.chip = 4;
  spares.redeploy[3] = FakeDeployment({0, 4}, 16, /*schedule_id=*/2);
  spares.spares[4] = &spare;
  Deploy();
  const std::vector<Finished> out = coordinator->Generate({{1, {5, 6, 7}, 6, {}}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tokens, FakeGeneration({5, 6, 7}, 6));
  EXPECT_EQ(out[0].logits.size(), 6u);

  ASSERT_EQ(coordinator->failovers().size(), 1u);
  const FailoverRecord& f = coordinator->failovers()[0];
  EXPECT_EQ(f.chip, 3u);
  EXPECT_EQ(f.spare, 4);
  EXPECT_EQ(f.step, 2);
  EXPECT_EQ(f.cause.rfind("stopped answering for ", 0), 0u) << f.cause;
  // Silent from step 2's start: found once the heartbeat timeout has passed (checks are at most
  // 50 ms apart); the spare's registration, shard and ready take no time on the manual clock.
  EXPECT_GT(f.detect_ms, 400);
  EXPECT_LE(f.detect_ms, 450);
  EXPECT_EQ(spares.stopped, std::vector<int64_t>{last.Pid()});
  EXPECT_EQ(spares.started, std::vector<uint32_t>{4});

  Stop();
  // The survivor got the new schedule and kept its shard (one shipment of one chunk in all).
  ASSERT_EQ(first.assignments.size(), 2u);
  EXPECT_FALSE(first.assignments[0].reuse_shard);
  EXPECT_TRUE(first.assignments[1].reuse_shard);
  EXPECT_EQ(first.assignments[1].schedule_id, 2u);
  EXPECT_EQ(first.chunks, 1u);
  // The spare took chip 3's place with its own shard.
  ASSERT_EQ(spare.assignments.size(), 1u);
  EXPECT_EQ(spare.assignments[0].chip, 4u);
  EXPECT_EQ(spare.assignments[0].stage, 1);
  EXPECT_TRUE(spare.digest_ok);
}

TEST_F(FailoverRun, ADeadChipIsReplacedAtOnce) {
  last.steps = 1;
  last.then = ScriptedWorker::Then::kExit;
  spare.chip = 4;
  spares.redeploy[3] = FakeDeployment({0, 4}, 16, 2);
  spares.spares[4] = &spare;
  Deploy();
  const std::vector<Finished> out = coordinator->Generate({{1, {2}, 4, {}}});
  EXPECT_EQ(out[0].tokens, FakeGeneration({2}, 4));
  ASSERT_EQ(coordinator->failovers().size(), 1u);
  const FailoverRecord& f = coordinator->failovers()[0];
  EXPECT_EQ(f.cause, "was killed by signal 9");
  EXPECT_EQ(f.step, 1);
  EXPECT_LE(f.detect_ms, 50);  // the reaper's word, not the heartbeat timeout
  EXPECT_EQ(f.spare, 4);
}

TEST_F(FailoverRun, NoSpareLeftEndsTheRunWithWhatItProduced) {
  last.steps = 2;
  last.then = ScriptedWorker::Then::kSilent;
  Deploy();
  try {
    coordinator->Generate({{1, {5, 6, 7}, 6, {}}});
    FAIL() << "the run went on without a spare";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("chip 3 (worker pid 1003 on test-host) stopped answering for ", 0), 0u)
        << what;
    EXPECT_NE(what.find("; last completed step 1; no spare left for chip 3"), std::string::npos)
        << what;
  }
  ASSERT_EQ(coordinator->partial().size(), 1u);
  const std::vector<int32_t> all = FakeGeneration({5, 6, 7}, 6);
  EXPECT_EQ(coordinator->partial()[0].tokens, std::vector<int32_t>(all.begin(), all.begin() + 2));
  ASSERT_EQ(coordinator->failovers().size(), 1u);
  EXPECT_EQ(coordinator->failovers()[0].spare, -1);
}

TEST_F(FailoverRun, ASpareThatNeverRegistersIsNamed) {
  last.steps = 2;
  last.then = ScriptedWorker::Then::kSilent;
  spares.redeploy[3] = FakeDeployment({0, 4}, 16, 2);  // and no worker comes for chip 4
  Deploy();
  const auto start = net.clock().Now();
  try {
    coordinator->Generate({{1, {5}, 6, {}}});
    FAIL() << "the run went on without its spare";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_EQ(std::string(e.what()),
              "failover: the worker for chip 4 did not register within 2000 ms");
  }
  EXPECT_EQ(spares.started, std::vector<uint32_t>{4});
  // The heartbeat timeout, then the ready timeout.
  EXPECT_GE(net.Since(start), 400 + 2000);
  EXPECT_LE(net.Since(start), 450 + 2000 + 20);
}

TEST_F(FailoverRun, ASpareThatFailsInTurnIsReplacedToo) {
  last.steps = 2;
  last.then = ScriptedWorker::Then::kSilent;
  mute.chip = 4;
  mute.steps = 0;
  mute.then = ScriptedWorker::Then::kSilent;  // registers, then never answers
  spare.chip = 5;
  spares.redeploy[3] = FakeDeployment({0, 4}, 16, 2);
  spares.redeploy[4] = FakeDeployment({0, 5}, 16, 3);
  spares.spares[4] = &mute;
  spares.spares[5] = &spare;
  Deploy();
  const std::vector<Finished> out = coordinator->Generate({{1, {9, 9}, 5, {}}});
  EXPECT_EQ(out[0].tokens, FakeGeneration({9, 9}, 5));
  ASSERT_EQ(coordinator->failovers().size(), 2u);
  EXPECT_EQ(coordinator->failovers()[0].chip, 3u);
  EXPECT_EQ(coordinator->failovers()[0].spare, 4);
  EXPECT_EQ(coordinator->failovers()[1].chip, 4u);
  EXPECT_EQ(coordinator->failovers()[1].spare, 5);
  EXPECT_EQ(spares.stopped, (std::vector<int64_t>{last.Pid(), mute.Pid()}));
  EXPECT_EQ(spares.started, (std::vector<uint32_t>{4, 5}));
}

}  // namespace
}  // namespace lockstep::coordinator
