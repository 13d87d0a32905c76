// The coordinator's stall path against a scripted worker that keeps answering pings but stops
// completing steps: it must ask for the flight recorder, name the chip, step, op and link in the
// error, and write the recorder file. On the manual clock and the in-memory channel, and end to
// end over ipc:// sockets (scripted_worker_test_util.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "lockstep/coordinator/coordinator.h"
#include "scripted_worker_test_util.h"

namespace lockstep::coordinator {
namespace {

class StallTest : public testing::TestWithParam<Net> {};

TEST_P(StallTest, AStallNamesTheChipStepOpAndLinkAndWritesTheRecorder) {
  TestNet net(GetParam(), "stall");
  const auto epoch = net.clock().Now();
  const std::string file = "/tmp/lockstep-stall-test-" + std::to_string(getpid()) + "-" +
                           (net.manual() ? "manual" : "sockets") + "-recorder.json";
  CoordinatorOptions options = net.Options();
  options.heartbeat_interval = Millis(50);
  options.heartbeat_timeout = Millis(5000);
  options.stall_timeout = Millis(300);
  options.flight_recorder_file = file;
  Coordinator coordinator(options);
  ScriptedWorker fake;
  fake.chip = 5;
  fake.steps = 2;
  fake.then = ScriptedWorker::Then::kStall;
  std::thread worker = Start(fake, net, epoch);
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(FakeDeployment({5}, 2));
  const auto start = net.clock().Now();
  try {
    coordinator.Generate({{1, {1}, 5, {}}});
    FAIL() << "the run survived a stall";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("step 2 stalled: chip 5 waits at step 2 op 37: recv on link 3 (port 2) "
                         "from chip 4",
                         0),
              0u)
        << what;
    EXPECT_NE(what.find("(no step completed for 300 ms)"), std::string::npos) << what;
    EXPECT_NE(what.find("flight recorders in " + file), std::string::npos) << what;
  }
  // A stall, not a death: the worker still answers, so it is named after the stall timeout (and
  // the flight recorder's round trip), well before the heartbeat timeout.
  // (Since() truncates to whole ms: on the real clock 300.6 ms reads 300.)
  EXPECT_GE(net.Since(start), 300);
  if (net.manual()) {
    EXPECT_GT(net.Since(start), 300);
    EXPECT_LE(net.Since(start), 450);
  }
  coordinator.Shutdown();
  worker.join();
  EXPECT_TRUE(fake.flight_recorder_asked);
  std::ifstream in(file);
  ASSERT_TRUE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["step"], 2);
  ASSERT_EQ(j["chips"].size(), 1u);
  EXPECT_EQ(j["chips"][0]["chip"], 5);
  EXPECT_EQ(j["chips"][0]["answered"], true);
  EXPECT_EQ(j["chips"][0]["progress"]["current"]["op"], 37);
  ASSERT_EQ(j["chips"][0]["entries"].size(), 1u);
  EXPECT_EQ(j["chips"][0]["entries"][0]["op"], 36);
  std::filesystem::remove(file);
}

INSTANTIATE_TEST_SUITE_P(Nets, StallTest, testing::Values(Net::kManualClock, Net::kSockets),
                         NetName);

}  // namespace
}  // namespace lockstep::coordinator
