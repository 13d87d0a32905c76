// The worker process against a scripted coordinator (a raw control channel): a wrong or vanished
// coordinator is reported within its timeouts, a corrupt shard is refused and reported.
#include "lockstep/worker/agent.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/control/channel.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::worker {
namespace {

using Clock = std::chrono::steady_clock;
using control::AssignmentMsg;
using control::ErrorMsg;
using control::Millis;
using control::PingMsg;
using control::RegisterMsg;
using control::ShardChunkMsg;

std::string Address(const std::string& name) {
  return "ipc:///tmp/lockstep-agent-test-" + std::to_string(getpid()) + "-" + name;
}

// The smallest model spec the wire accepts (assignments carry the spec in partition's codec,
// which refuses a model with no layers or heads).
partition::ModelSpec FakeSpec() {
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

TEST(WorkerAgent, WrongAddressGivesUpWithinTheConnectTimeout) {
  WorkerOptions options;
  options.coordinator = Address("nobody-here");
  options.connect_timeout = Millis(200);
  options.host = topology::DiscoverSyntheticHost("core:2 pu:1");
  const Clock::time_point start = Clock::now();
  try {
    RunWorker(options);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("no coordinator answered at " + options.coordinator),
              std::string::npos)
        << e.what();
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
}

TEST(WorkerAgent, MalformedAddressIsInvalidInput) {
  WorkerOptions options;
  options.coordinator = "carrier-pigeon://coop";
  options.host = topology::DiscoverSyntheticHost("core:1 pu:1");
  EXPECT_THROW(RunWorker(options), Error);
}

TEST(WorkerAgent, ACoordinatorThatGoesAwayIsReported) {
  std::unique_ptr<control::ControlChannel> fake = control::Listen(Address("vanishing"));
  WorkerOptions options;
  options.coordinator = fake->address();
  options.coordinator_timeout = Millis(300);
  options.host = topology::DiscoverSyntheticHost("core:2 pu:1");
  std::optional<Error> error;
  std::thread worker([&] {
    try {
      RunWorker(options);
    } catch (const Error& e) {
      error = e;
    }
  });
  std::optional<control::ControlChannel::Incoming> hello = fake->Receive(Millis(5000));
  ASSERT_TRUE(hello && hello->message);
  const auto* r = std::get_if<RegisterMsg>(&*hello->message);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->host.cores, 2);  // the host summary it registered with
  fake->Send(hello->peer, PingMsg{});
  const Clock::time_point start = Clock::now();
  worker.join();  // the fake says nothing more
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code(), ErrorCode::kDisconnected);
  EXPECT_NE(std::string(error->what()).find("went away"), std::string::npos) << error->what();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

TEST(WorkerAgent, AShardThatFailsItsChecksumIsRefused) {
  std::unique_ptr<control::ControlChannel> fake = control::Listen(Address("corrupt"));
  WorkerOptions options;
  options.coordinator = fake->address();
  options.host = topology::DiscoverSyntheticHost("core:1 pu:1");
  std::optional<Error> error;
  std::thread worker([&] {
    try {
      RunWorker(options);
    } catch (const Error& e) {
      error = e;
    }
  });
  std::optional<control::ControlChannel::Incoming> hello = fake->Receive(Millis(5000));
  ASSERT_TRUE(hello);
  AssignmentMsg a;
  a.chip = 2;
  a.stage = 0;
  a.spec = FakeSpec();
  a.shard_bytes = 4;
  a.shard_chunks = 1;
  fake->Send(hello->peer, a);
  ShardChunkMsg c{0, 0, {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}}, 0};
  c.crc32c = transport::Crc32c(c.data) ^ 1u;  // one bit off
  fake->Send(hello->peer, c);
  // The worker reports the error to the coordinator, then stops.
  std::optional<control::ControlChannel::Incoming> report;
  for (int i = 0; i < 20; ++i) {
    report = fake->Receive(Millis(250));
    if (report && report->message && std::holds_alternative<ErrorMsg>(*report->message)) break;
  }
  worker.join();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code(), ErrorCode::kProtocol);
  EXPECT_NE(std::string(error->what()).find("failed its CRC32C"), std::string::npos);
  ASSERT_TRUE(report && report->message && std::holds_alternative<ErrorMsg>(*report->message));
  EXPECT_EQ(std::get<ErrorMsg>(*report->message).chip, 2);
}

}  // namespace
}  // namespace lockstep::worker
