// The control sockets' flow control: a peer that does not read holds up only its own messages,
// which wait in the coordinator's backlog in order, and nothing is lost or reordered.
#include "control_socket.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <variant>

namespace lockstep::coordinator {
namespace {

std::string Address(const std::string& name) {
  return "ipc:///tmp/lockstep-control-test-" + std::to_string(getpid()) + "-" + name;
}

// The peer id the router knows `dealer` by: the first message it receives from it.
std::string Introduce(RouterSocket& router, DealerSocket& dealer) {
  dealer.Send(PingMsg{});
  for (int i = 0; i < 500; ++i) {
    if (auto in = router.Receive(Millis(10))) return in->peer;
  }
  ADD_FAILURE() << "the dealer's first message never arrived";
  return "";
}

TEST(RouterSocket, APeerThatDoesNotReadGetsItsMessagesLaterInOrder) {
  RouterSocket router(Address("backlog"));
  DealerSocket dealer(router.address());
  const std::string peer = Introduce(router, dealer);
  ASSERT_FALSE(peer.empty());
  // Far more than ZeroMQ buffers for one peer: the rest must wait in the backlog.
  constexpr uint32_t kCount = 200;
  for (uint32_t i = 0; i < kCount; ++i) {
    ShardChunkMsg chunk;
    chunk.index = i;
    chunk.data.assign(64 * 1024, std::byte{static_cast<unsigned char>(i)});
    ASSERT_TRUE(router.Send(peer, chunk));
  }
  EXPECT_TRUE(router.Backlogged(peer));
  uint32_t next = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (next < kCount && std::chrono::steady_clock::now() < deadline) {
    (void)router.Receive(Millis(0));  // hands the backlog on as the dealer reads
    if (auto m = dealer.Pump(Millis(5))) {
      const auto* chunk = std::get_if<ShardChunkMsg>(&*m);
      ASSERT_NE(chunk, nullptr) << MessageName(*m);
      ASSERT_EQ(chunk->index, next);
      ASSERT_EQ(chunk->data.size(), 64u * 1024u);
      EXPECT_EQ(chunk->data.front(), std::byte{static_cast<unsigned char>(next)});
      ++next;
    }
  }
  EXPECT_EQ(next, kCount);
  EXPECT_FALSE(router.Backlogged(peer));
}

TEST(RouterSocket, AMessageToAPeerWithABacklogQueuesBehindIt) {
  RouterSocket router(Address("order"));
  DealerSocket dealer(router.address());
  const std::string peer = Introduce(router, dealer);
  ASSERT_FALSE(peer.empty());
  uint32_t sent = 0;
  while (!router.Backlogged(peer) && sent < 10000) {
    ShardChunkMsg chunk;
    chunk.index = sent++;
    ASSERT_TRUE(router.Send(peer, chunk));
  }
  ASSERT_TRUE(router.Backlogged(peer));
  ASSERT_TRUE(router.Send(peer, ShutdownMsg{}));  // must arrive after every chunk
  uint32_t chunks = 0;
  bool shutdown = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!shutdown && std::chrono::steady_clock::now() < deadline) {
    (void)router.Receive(Millis(0));
    if (auto m = dealer.Pump(Millis(5))) {
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

TEST(RouterSocket, SendingToAnUnknownPeerReportsItGone) {
  RouterSocket router(Address("unknown"));
  EXPECT_FALSE(router.Send("nobody", PingMsg{}));
  EXPECT_FALSE(router.Backlogged("nobody"));
}

}  // namespace
}  // namespace lockstep::coordinator
