// The fault injector produces each fault deterministically from its seed, and the receiving
// endpoint reports each one clearly, naming the link and the step.
#include "lockstep/transport/fault.h"

#include <set>

#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

class Faults : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    options_ = OptionsFor(GetParam());
    options_.queue_capacity = 32;             // the tests send everything before receiving
    options_.checksums = LinkChecksums::kOn;  // corruption is detected by the CRC
    transport_ = CreateTransport(options_);
    link_.a = {0, 2};
    link_.b = {1, 2};
    link_.latency_ns = 100;
    link_.bytes_per_second = 1'000'000'000;
    Pair p = OpenPair(*transport_, link_);
    receiver_ = std::move(p.b);
    sender_ = std::move(p.a);
  }
  void TearDown() override {
    sender_.reset();
    receiver_.reset();
    if (GetParam() == "ipc") std::filesystem::remove_all(options_.ipc_dir);
  }

  // Sends steps 0..count-1 through a faulty wrapper; returns the injected faults.
  std::vector<FaultEvent> SendThrough(const FaultOptions& fo, int count) {
    auto faulty = InjectFaults(std::move(sender_), fo);
    for (int i = 0; i < count; ++i) faulty->Send(Tensor(i, 0, 256, i), kWait);
    auto events = faulty->events();
    sender_ = std::move(faulty);
    return events;
  }

  TransportOptions options_;
  std::unique_ptr<Transport> transport_;
  LinkSpec link_;
  std::unique_ptr<Endpoint> sender_;
  std::unique_ptr<Endpoint> receiver_;
};

// Receives steps in order until the first error; returns it.
std::string ReceiveUntilError(Endpoint& e, int count, Millis timeout = Millis(300)) {
  for (int i = 0; i < count; ++i) {
    try {
      e.Receive(Want(i, 0), timeout);
    } catch (const Error& err) {
      return err.what();
    }
  }
  return "";
}

TEST_P(Faults, DropIsReportedAsLostMessageAtTheFirstDroppedStep) {
  FaultOptions fo;
  fo.seed = 11;
  fo.drop_probability = 0.3;
  auto events = SendThrough(fo, 12);
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.front().kind, FaultKind::kDrop);
  int64_t first = events.front().step;
  ASSERT_LT(first, 11) << "choose a seed that drops before the last message";
  std::string err = ReceiveUntilError(*receiver_, 12);
  EXPECT_NE(err.find("link chip 0:2 <-> chip 1:2"), std::string::npos) << err;
  EXPECT_NE(err.find("expecting step " + std::to_string(first)), std::string::npos) << err;
  EXPECT_NE(err.find("a message was lost"), std::string::npos) << err;
}

TEST_P(Faults, SameSeedSameFaults) {
  FaultOptions fo;
  fo.seed = 5;
  fo.drop_probability = 0.2;
  fo.corrupt_probability = 0.2;
  auto first = SendThrough(fo, 10);
  auto second = SendThrough(fo, 10);
  EXPECT_EQ(first, second);
  EXPECT_FALSE(first.empty());
}

TEST_P(Faults, CorruptionIsReportedAsCrcMismatchAtThatStep) {
  FaultOptions fo;
  fo.seed = 3;
  fo.corrupt_probability = 0.25;
  auto events = SendThrough(fo, 12);
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.front().kind, FaultKind::kCorrupt);
  std::string err = ReceiveUntilError(*receiver_, 12);
  EXPECT_NE(err.find("step " + std::to_string(events.front().step) + ": payload CRC32C mismatch"),
            std::string::npos)
      << err;
}

TEST_P(Faults, DisconnectStopsSenderAndReceiverNoticesAfterTheLastDelivered) {
  FaultOptions fo;
  fo.disconnect_after = 3;
  auto faulty = InjectFaults(std::move(sender_), fo);
  for (int i = 0; i < 3; ++i) faulty->Send(Tensor(i, 0, 64, i), kWait);
  ExpectError([&] { faulty->Send(Tensor(3, 0, 64, 3), kWait); }, ErrorCode::kDisconnected,
              {"link chip 0:2 <-> chip 1:2", "injected disconnect after 3 frames"});
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(HasPattern(receiver_->Receive(Want(i, 0), kWait).payload, i));
  // sim sees the peer vanish; on ZeroMQ a silent peer is a timeout.
  ErrorCode code = GetParam() == "sim" ? ErrorCode::kDisconnected : ErrorCode::kUnavailable;
  ExpectError([&] { receiver_->Receive(Want(3, 0), Millis(200)); }, code,
              {"link chip 0:2 <-> chip 1:2", "expecting step 3"});
  EXPECT_EQ(faulty->events(), (std::vector<FaultEvent>{{FaultKind::kDisconnect, 3}}));
}

TEST_P(Faults, DelayMakesTheMessageLate) {
  FaultOptions fo;
  fo.delay_probability = 1.0;
  fo.delay_ns = 50'000;
  fo.delay_real = Millis(150);
  auto faulty = InjectFaults(std::move(sender_), fo);
  auto sender = std::async(std::launch::async, [&] { faulty->Send(Tensor(0, 0, 1000, 0), kWait); });
  Expect e = Want(0, 0);
  if (GetParam() == "sim") {
    // Planned: 1000 B at 1 B/ns + 100 ns latency = 1100 ns; the fault adds 50 us.
    sender.get();
    e.deadline_ns = 1100;
    ExpectError([&] { receiver_->Receive(e, kWait); }, ErrorCode::kProtocol,
                {"expecting step 0", "arrived at 51100 ns, after the planned 1100 ns"});
  } else {
    ExpectError([&] { receiver_->Receive(e, Millis(20)); }, ErrorCode::kUnavailable,
                {"expecting step 0", "nothing received from chip 0:2 within 20 ms"});
    sender.get();
    EXPECT_TRUE(HasPattern(receiver_->Receive(e, kWait).payload, 0));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, Faults, ::testing::Values("sim", "inproc"),
                         [](const auto& p) { return p.param; });

// The injector's corruption under the link checksum policies (transport.h LinkChecksums), on the
// backends that move bytes between processes: wherever checks are on — tcp by default, any link
// kind with `on` — the flipped bit is reported as a CRC mismatch at its step; with auto on ipc
// the payload travels unchecked (the header says so) and the flip goes unseen, which is what
// auto trades on a same-host link.
class CorruptionByPolicy : public ::testing::TestWithParam<std::string> {};

TEST_P(CorruptionByPolicy, IsCaughtWhereChecksAreOn) {
  TransportOptions o = OptionsFor(GetParam());
  o.queue_capacity = 32;
  const bool checked = ChecksumsPayloads(o);
  {
    std::unique_ptr<Transport> t = CreateTransport(o);
    LinkSpec link;
    link.a = {0, 6};
    link.b = {1, 6};
    Pair p = OpenPair(*t, link);
    FaultOptions fo;
    fo.seed = 3;
    fo.corrupt_probability = 0.25;
    auto faulty = InjectFaults(std::move(p.a), fo);
    for (int i = 0; i < 12; ++i) faulty->Send(Tensor(i, 0, 256, i), kWait);
    ASSERT_FALSE(faulty->events().empty());
    const int64_t first = faulty->events().front().step;
    std::set<int64_t> corrupted;
    for (const FaultEvent& e : faulty->events()) corrupted.insert(e.step);
    for (int i = 0; i < 12; ++i) {
      if (checked && i == first) {
        ExpectError([&] { p.b->Receive(Want(i, 0), kWait); }, ErrorCode::kProtocol,
                    {"link chip 0:6 <-> chip 1:6",
                     "step " + std::to_string(first) + ": payload CRC32C mismatch"});
        break;
      }
      const Message m = p.b->Receive(Want(i, 0), kWait);
      EXPECT_EQ(HasPattern(m.payload, i), corrupted.count(i) == 0) << "step " << i;
    }
  }
  if (o.backend == "ipc") std::filesystem::remove_all(o.ipc_dir);
}

INSTANTIATE_TEST_SUITE_P(Policies, CorruptionByPolicy,
                         ::testing::Values("tcp", "ipcOn", "tcpOn", "ipc"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace lockstep::transport
