// The control channel's contract (channel.h), run against every implementation: ZeroMQ over ipc,
// and the in-memory network on the real clock and on a manual clock. Each case states one promise
// of the contract and fails if an implementation breaks it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <variant>

#include "lockstep/common/error.h"
#include "lockstep/control/channel.h"

namespace lockstep::control {
namespace {

enum class Kind { kZmqIpc, kMemoryRealClock, kMemoryManualClock };

std::string KindName(const testing::TestParamInfo<Kind>& info) {
  switch (info.param) {
    case Kind::kZmqIpc:
      return "ZmqIpc";
    case Kind::kMemoryRealClock:
      return "MemoryRealClock";
    case Kind::kMemoryManualClock:
      return "MemoryManualClock";
  }
  return "?";
}

class ChannelConformance : public testing::TestWithParam<Kind> {
 protected:
  ChannelConformance()
      : network_(GetParam() == Kind::kMemoryManualClock ? static_cast<Clock&>(manual_)
                                                        : RealClock()) {}

  Clock& clock() { return network_.clock(); }

  ChannelOptions Options() {
    ChannelOptions o;
    if (GetParam() != Kind::kZmqIpc) o.network = &network_;
    return o;
  }

  std::string Address(const std::string& name) const {
    if (GetParam() == Kind::kZmqIpc) {
      return "ipc:///tmp/lockstep-channel-test-" + std::to_string(getpid()) + "-" + name;
    }
    return "mem://" + name;
  }

  std::unique_ptr<ControlChannel> Listen(const std::string& name) {
    return control::Listen(Address(name), Options());
  }
  std::unique_ptr<ControlConnection> Connect(const ControlChannel& listener) {
    return control::Connect(listener.address(), Options());
  }

  // The peer id the listener knows `connection` by: its first message.
  std::string Introduce(ControlChannel& listener, ControlConnection& connection) {
    connection.Send(PingMsg{});
    for (int i = 0; i < 500; ++i) {
      if (auto in = listener.Receive(Millis(10))) {
        EXPECT_TRUE(in->message && std::holds_alternative<PingMsg>(*in->message));
        return in->peer;
      }
    }
    ADD_FAILURE() << "the connection's first message never arrived";
    return "";
  }

  ManualClock manual_;
  InMemoryNetwork network_;
};

TEST_P(ChannelConformance, MessagesGoBothWaysWhole) {
  auto listener = Listen("both-ways");
  auto connection = Connect(*listener);
  connection->Send(RegisterMsg{42, "host-a", {"fake", 1, 1, 2, 2, {0, 1}}, "tag", 3});
  std::optional<ControlChannel::Incoming> in;
  for (int i = 0; i < 500 && !in; ++i) in = listener->Receive(Millis(10));
  ASSERT_TRUE(in && in->message) << (in ? in->error : "nothing arrived");
  const auto* r = std::get_if<RegisterMsg>(&*in->message);
  ASSERT_NE(r, nullptr) << MessageName(*in->message);
  EXPECT_EQ(r->pid, 42);
  EXPECT_EQ(r->host.core_pus, (std::vector<int>{0, 1}));
  ShardChunkMsg chunk;
  chunk.index = 7;
  chunk.data.assign(size_t{1} << 20, std::byte{0x5a});  // a whole shard chunk
  ASSERT_TRUE(listener->Send(in->peer, chunk));
  std::optional<ControlMessage> back;
  for (int i = 0; i < 500 && !back; ++i) back = connection->Receive(Millis(10));
  ASSERT_TRUE(back);
  const auto* c = std::get_if<ShardChunkMsg>(&*back);
  ASSERT_NE(c, nullptr) << MessageName(*back);
  EXPECT_EQ(c->index, 7u);
  EXPECT_EQ(c->data, chunk.data);
}

TEST_P(ChannelConformance, EachDirectionKeepsTheSendOrder) {
  auto listener = Listen("order");
  auto connection = Connect(*listener);
  const std::string peer = Introduce(*listener, *connection);
  ASSERT_FALSE(peer.empty());
  constexpr int64_t kCount = 100;
  for (int64_t i = 0; i < kCount; ++i) {
    connection->Send(HeartbeatMsg{1, i, {}});
    ASSERT_TRUE(listener->Send(peer, ReadyMsg{static_cast<uint32_t>(i)}));
  }
  for (int64_t i = 0; i < kCount; ++i) {
    std::optional<ControlChannel::Incoming> in = listener->Receive(Millis(5000));
    ASSERT_TRUE(in && in->message);
    ASSERT_EQ(std::get<HeartbeatMsg>(*in->message).last_step, i);
    std::optional<ControlMessage> m = connection->Receive(Millis(5000));
    ASSERT_TRUE(m);
    ASSERT_EQ(std::get<ReadyMsg>(*m).chip, static_cast<uint32_t>(i));
  }
}

// A peer that does not read holds up only its own messages; they wait in the listener's backlog
// in order and nothing is lost.
TEST_P(ChannelConformance, APeerThatDoesNotReadGetsItsMessagesLaterInOrder) {
  auto listener = Listen("backlog");
  auto connection = Connect(*listener);
  const std::string peer = Introduce(*listener, *connection);
  ASSERT_FALSE(peer.empty());
  constexpr uint32_t kCount = 200;  // far more than a peer's queue holds
  for (uint32_t i = 0; i < kCount; ++i) {
    ShardChunkMsg chunk;
    chunk.index = i;
    chunk.data.assign(64 * 1024, std::byte{static_cast<unsigned char>(i)});
    ASSERT_TRUE(listener->Send(peer, chunk));
  }
  EXPECT_TRUE(listener->Backlogged(peer));
  uint32_t next = 0;
  for (int round = 0; next < kCount && round < 20000; ++round) {
    (void)listener->Receive(Millis(0));  // hands the backlog on as the peer reads
    if (auto m = connection->Receive(Millis(5))) {
      const auto* chunk = std::get_if<ShardChunkMsg>(&*m);
      ASSERT_NE(chunk, nullptr) << MessageName(*m);
      ASSERT_EQ(chunk->index, next);
      ASSERT_EQ(chunk->data.size(), 64u * 1024u);
      EXPECT_EQ(chunk->data.front(), std::byte{static_cast<unsigned char>(next)});
      ++next;
    }
  }
  EXPECT_EQ(next, kCount);
  EXPECT_FALSE(listener->Backlogged(peer));
  EXPECT_TRUE(listener->Drain(Millis(1000)));
}

TEST_P(ChannelConformance, AMessageToAPeerWithABacklogQueuesBehindIt) {
  auto listener = Listen("behind");
  auto connection = Connect(*listener);
  const std::string peer = Introduce(*listener, *connection);
  ASSERT_FALSE(peer.empty());
  uint32_t sent = 0;
  while (!listener->Backlogged(peer) && sent < 10000) {
    ShardChunkMsg chunk;
    chunk.index = sent++;
    ASSERT_TRUE(listener->Send(peer, chunk));
  }
  ASSERT_TRUE(listener->Backlogged(peer));
  ASSERT_TRUE(listener->Send(peer, ShutdownMsg{}));  // must arrive after every chunk
  uint32_t chunks = 0;
  bool shutdown = false;
  for (int round = 0; !shutdown && round < 20000; ++round) {
    (void)listener->Receive(Millis(0));
    if (auto m = connection->Receive(Millis(5))) {
      if (std::holds_alternative<ShutdownMsg>(*m)) {
        shutdown = true;
      } else {
        ASSERT_EQ(std::get<ShardChunkMsg>(*m).index, chunks);
        ++chunks;
      }
    }
  }
  EXPECT_TRUE(shutdown);
  EXPECT_EQ(chunks, sent);
}

TEST_P(ChannelConformance, SendingToAnUnknownPeerReportsItGone) {
  auto listener = Listen("unknown");
  EXPECT_FALSE(listener->Send("nobody", PingMsg{}));
  EXPECT_FALSE(listener->Backlogged("nobody"));
}

TEST_P(ChannelConformance, ReceiveGivesUpOnceItsTimeoutHasPassedOnTheClock) {
  auto listener = Listen("timeout");
  auto connection = Connect(*listener);
  ASSERT_FALSE(Introduce(*listener, *connection).empty());  // both ends in use by this thread
  Clock::TimePoint start = clock().Now();
  EXPECT_FALSE(listener->Receive(Millis(30)));
  EXPECT_GE(clock().Now() - start, Millis(30));
  start = clock().Now();
  EXPECT_FALSE(connection->Receive(Millis(30)));
  EXPECT_GE(clock().Now() - start, Millis(30));
}

TEST_P(ChannelConformance, AnOutboxHandsOverAnotherThreadsMessagesInOrder) {
  auto listener = Listen("outbox");
  auto connection = Connect(*listener);
  const std::string peer = Introduce(*listener, *connection);
  ASSERT_FALSE(peer.empty());
  std::unique_ptr<ControlConnection::Outbox> outbox = connection->MakeOutbox();
  constexpr int64_t kCount = 50;
  std::thread poster([&] {
    for (int64_t i = 0; i < kCount; ++i) outbox->Post(StepResultMsg{2, i, {}});
  });
  // A poster is no end of the channel: a manual clock does not wait for it, so let it finish.
  poster.join();
  int64_t next = 0;
  for (int round = 0; next < kCount && round < 20000; ++round) {
    (void)connection->Receive(Millis(0));  // the owner's thread forwards what was posted
    if (auto in = listener->Receive(Millis(5))) {
      ASSERT_TRUE(in->message);
      EXPECT_EQ(in->peer, peer);
      ASSERT_EQ(std::get<StepResultMsg>(*in->message).index, next);
      ++next;
    }
  }
  EXPECT_EQ(next, kCount);
}

TEST_P(ChannelConformance, AMalformedAddressIsInvalidInput) {
  try {
    control::Listen(GetParam() == Kind::kZmqIpc ? "carrier-pigeon://coop" : "mem://", Options());
    // mem:// with an empty name is a name like any other; ZeroMQ must refuse the pigeon.
    EXPECT_NE(GetParam(), Kind::kZmqIpc);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("carrier-pigeon://coop"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Every, ChannelConformance,
                         testing::Values(Kind::kZmqIpc, Kind::kMemoryRealClock,
                                         Kind::kMemoryManualClock),
                         KindName);

// --- what only one implementation promises ---

TEST(InMemoryChannel, AnAddressInUseIsRefused) {
  InMemoryNetwork network;
  auto first = Listen("mem://taken", {.network = &network});
  try {
    Listen("mem://taken", {.network = &network});
    FAIL() << "two listeners on one address";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("mem://taken"), std::string::npos) << e.what();
  }
}

// On a manual clock time jumps to the earliest deadline once every end waits, and only then.
TEST(InMemoryChannel, ManualTimeMovesOnlyWhenEveryEndWaits) {
  ManualClock clock;
  InMemoryNetwork network(clock);
  auto listener = Listen("mem://jump", {.network = &network});
  std::unique_ptr<ControlConnection> connection = Connect("mem://jump", {.network = &network});
  const Clock::TimePoint start = clock.Now();
  Clock::TimePoint peer_gave_up;
  std::thread peer([&, c = std::move(connection)]() mutable {
    EXPECT_FALSE(c->Receive(Millis(10000)));
    peer_gave_up = clock.Now();
    c.reset();  // an end that is done must go, or it holds time still
  });
  // Both wait: the listener's deadline is the earlier one.
  EXPECT_FALSE(listener->Receive(Millis(1000)));
  EXPECT_EQ(clock.Now() - start, Millis(1000));
  // Both wait again: now the peer's deadline comes first, then the listener's own.
  EXPECT_FALSE(listener->Receive(Millis(20000)));
  peer.join();
  EXPECT_EQ(peer_gave_up - start, Millis(10000));
  EXPECT_EQ(clock.Now() - start, Millis(21000));
}

TEST(ZmqChannel, RefusesAManualClock) {
  ManualClock clock;
  EXPECT_THROW(Listen("tcp://127.0.0.1:0", {.clock = &clock}), Error);
}

}  // namespace
}  // namespace lockstep::control
