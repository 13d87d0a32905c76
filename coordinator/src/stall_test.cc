// The coordinator's stall path against a scripted worker that keeps answering pings but stops
// completing steps: it must ask for the flight recorder, name the chip, step, op and link in the
// error, and write the recorder file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "fake_spec_test_util.h"
#include "lockstep/control/channel.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::coordinator {

using control::ControlMessage;
using control::FlightRecorderMsg;
using control::FlightRecorderRequestMsg;
using control::HeartbeatMsg;
using control::PingMsg;
using control::ReadyMsg;
using control::RegisterMsg;
using control::ShardDoneMsg;
using control::ShutdownMsg;
using control::StepMsg;
using control::StepResultMsg;
namespace {

using Clock = std::chrono::steady_clock;

Deployment OneChip(uint32_t chip) {
  Deployment d;
  d.spec = FakeSpec();
  d.slots = 1;
  d.sampling_chip = chip;
  ChipDeployment c;
  c.chip = chip;
  c.stage = 0;
  c.rank = 0;
  c.program.chip = static_cast<int32_t>(chip);
  c.shard = {std::byte{1}, std::byte{2}};
  d.chips.push_back(c);
  return d;
}

// Answers `steps` steps, then hangs "in a receive on link 3 (port 2) from chip 4" while still
// answering pings (with that progress) and the flight recorder request.
void StallingWorker(const std::string& address, int steps, std::atomic<bool>& asked) {
  std::unique_ptr<control::ControlConnection> socket = control::Connect(address);
  socket->Send(RegisterMsg{static_cast<int64_t>(getpid()), "test-host", {}, "test", 5});
  int answered = 0;
  control::ChipProgress progress;
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < give_up) {
    std::optional<ControlMessage> m = socket->Receive(Millis(20));
    if (!m) continue;
    if (std::holds_alternative<PingMsg>(*m)) {
      socket->Send(HeartbeatMsg{5, answered - 1, progress});
    } else if (std::holds_alternative<ShardDoneMsg>(*m)) {
      socket->Send(ReadyMsg{5});
    } else if (auto* s = std::get_if<StepMsg>(&*m)) {
      if (answered == steps) {
        progress.step = s->step.index;
        progress.running = true;
        progress.last_completed_step = answered - 1;
        progress.current = {s->step.index, 37, schedule::InstrKind::kRecv, 3, 2, 4, 64, 1000, -1};
        continue;
      }
      StepResultMsg r{5, s->step.index, {}};
      for (const control::SlotWork& w : s->step.work) {
        r.results.push_back({w.slot, w.request, 1, std::vector<float>(4, 0.5f)});
      }
      socket->Send(r);
      ++answered;
    } else if (std::holds_alternative<FlightRecorderRequestMsg>(*m)) {
      asked = true;
      control::FlightEntry done{
          progress.step, 36, schedule::InstrKind::kCompute, -1, -1, -1, 0, 10, 900};
      socket->Send(FlightRecorderMsg{5, progress, {done}});
    } else if (std::holds_alternative<ShutdownMsg>(*m)) {
      return;
    }
  }
}

TEST(Coordinator, AStallNamesTheChipStepOpAndLinkAndWritesTheRecorder) {
  const std::string file =
      "/tmp/lockstep-stall-test-" + std::to_string(getpid()) + "-recorder.json";
  CoordinatorOptions options;
  options.address = "ipc:///tmp/lockstep-stall-test-" + std::to_string(getpid());
  options.heartbeat_interval = Millis(50);
  options.heartbeat_timeout = Millis(5000);
  options.stall_timeout = Millis(300);
  options.flight_recorder_file = file;
  Coordinator coordinator(options);
  std::atomic<bool> asked{false};
  std::thread worker([&] { StallingWorker(coordinator.address(), 2, asked); });
  coordinator.AwaitWorkers(1, Millis(5000));
  coordinator.Deploy(OneChip(5));
  const Clock::time_point start = Clock::now();
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
    EXPECT_NE(what.find("flight recorders in " + file), std::string::npos) << what;
  }
  // Well before the heartbeat timeout: the worker still answers, so it is a stall, not a death.
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(asked);
  coordinator.Shutdown();
  worker.join();
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

}  // namespace
}  // namespace lockstep::coordinator
