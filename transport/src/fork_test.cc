// The ipc backend between two real processes: a forked child is chip 1, the test is chip 0.
#include <sys/wait.h>

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

}  // namespace
}  // namespace lockstep::transport
