// The ipc and tcp backends between two real processes: a forked child is the peer chip.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>

#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

TEST(IpcAcrossProcesses, ForkedChildExchangesTensors) {
  TransportOptions options = OptionsFor("ipc");
  LinkSpec link;
  link.a = {0, 4};
  link.b = {1, 4};
  constexpr int kCount = 8;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Child: its own transport (no state shared with the parent), echoes each tensor back.
    int status = 0;
    try {
      auto t = CreateTransport(options);
      auto e = t->Open(link, link.b, kWait);
      for (int i = 0; i < kCount; ++i) {
        Message m = e->Receive(Want(i, 1), kWait);
        if (!HasPattern(m.payload, i)) status = 3;
        m.header.tensor_id = 2;
        e->Send(std::move(m), kWait);
      }
      e->Close(kWait);
    } catch (const std::exception&) {
      status = 4;
    }
    _exit(status);
  }
  {
    auto t = CreateTransport(options);
    auto e = t->Open(link, link.a, kWait);
    for (int i = 0; i < kCount; ++i) {
      e->Send(Tensor(i, 1, 100'000 + i, i), kWait);
      Message back = e->Receive(Want(i, 2), kWait);
      EXPECT_EQ(back.header.src, link.b);
      EXPECT_TRUE(HasPattern(back.payload, i));
    }
    ExpectError([&] { e->Receive(Want(kCount, 2), kWait); }, ErrorCode::kDisconnected,
                {"peer chip 1:4 closed the link after 8 messages"});
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::filesystem::remove_all(options.ipc_dir);
}

// A peer process that is killed (no end-of-stream marker) is reported as kDisconnected naming the
// link and the peer, after the messages it sent before dying, and long before the receive timeout.
class PeerKilled : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(PeerKilled, ReportsDisconnectedNamingThePeerWithoutWaitingForTheTimeout) {
  const auto& [backend, parent_binds] = GetParam();
  TransportOptions options = OptionsFor(backend);
  LinkSpec link;
  link.a = {3, 7};
  link.b = {12, 7};
  // The lower end (chip 3:7) binds.
  const PortRef mine = parent_binds ? link.a : link.b;
  const PortRef theirs = parent_binds ? link.b : link.a;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      auto t = CreateTransport(options);
      auto e = t->Open(link, theirs, kWait);
      for (int i = 0; i < 2; ++i) e->Send(Tensor(i, 1, 3000, i), kWait);
      pause();  // until killed
    } catch (const std::exception&) {
    }
    _exit(4);
  }
  auto t = CreateTransport(options);
  auto e = t->Open(link, mine, kWait);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(HasPattern(e->Receive(Want(i, 1), kWait).payload, i));
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  const Millis timeout{20000};
  const auto start = std::chrono::steady_clock::now();
  ExpectError([&] { e->Receive(Want(2, 1), timeout); }, ErrorCode::kDisconnected,
              {LinkName(link), "expecting step 2",
               "peer chip " + std::to_string(theirs.chip) + " disconnected"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, Millis(5000));
  // The send side knows too (once the link direction has no room, or at once after a receive
  // saw the loss).
  ExpectError([&] { e->Send(Tensor(2, 1, 8, 0), timeout); }, ErrorCode::kDisconnected,
              {LinkName(link), "disconnected"});
  e->Close(kWait);
  if (backend == "ipc") std::filesystem::remove_all(options.ipc_dir);
}

INSTANTIATE_TEST_SUITE_P(IpcTcp, PeerKilled,
                         ::testing::Combine(::testing::Values("ipc", "tcp"), ::testing::Bool()),
                         [](const auto& p) {
                           return std::get<0>(p.param) +
                                  (std::get<1>(p.param) ? "_ParentBinds" : "_ParentConnects");
                         });

}  // namespace
}  // namespace lockstep::transport
