// Virtual-time behaviour of the sim backend: arrival = start + bytes / bandwidth + latency, one
// transfer at a time per direction, independent directions, deterministic, deadlines checked.
#include "test_util.h"

namespace lockstep::transport {
namespace {

using namespace testing;

LinkSpec SimLink() {
  LinkSpec l;
  l.a = {0, 1};
  l.b = {1, 1};
  l.latency_ns = 1000;
  l.bytes_per_second = 1'000'000'000;  // 1 byte per ns
  return l;
}

Message At(int64_t step, size_t bytes, int64_t send_time_ns) {
  Message m = Tensor(step, 0, bytes, step);
  m.header.send_time_ns = send_time_ns;
  return m;
}

std::vector<int64_t> RunScenario() {
  auto t = CreateTransport(OptionsFor("sim"));
  Pair p = OpenPair(*t, SimLink());
  // a -> b: 4000 B at t=0 occupies the direction until 4000; the next, issued at 100, waits.
  p.a->Send(At(0, 4000, 0), kWait);
  p.a->Send(At(1, 500, 100), kWait);
  p.a->Send(At(2, 10, 9000), kWait);  // issued after the direction went idle
  // b -> a is independent of a -> b.
  p.b->Send(At(0, 2000, 50), kWait);
  std::vector<int64_t> arrivals;
  for (int i = 0; i < 3; ++i) arrivals.push_back(p.b->Receive(Want(i, 0), kWait).arrival_time_ns);
  arrivals.push_back(p.a->Receive(Want(0, 0), kWait).arrival_time_ns);
  return arrivals;
}

TEST(SimTransport, ArrivalTimesModelLatencyBandwidthAndOneTransferPerDirection) {
  EXPECT_EQ(RunScenario(), (std::vector<int64_t>{5000, 5500, 10010, 3050}));
}

TEST(SimTransport, IsDeterministicAcrossRuns) {
  auto first = RunScenario();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(RunScenario(), first);
}

TEST(SimTransport, RoundsTransferTimeUp) {
  auto t = CreateTransport(OptionsFor("sim"));
  LinkSpec l = SimLink();
  l.latency_ns = 0;
  l.bytes_per_second = 3'000'000'000;  // 1 byte = 1/3 ns
  Pair p = OpenPair(*t, l);
  p.a->Send(At(0, 1, 0), kWait);
  EXPECT_EQ(p.b->Receive(Want(0, 0), kWait).arrival_time_ns, 1);
}

TEST(SimTransport, LateArrivalAgainstPlannedDeadlineIsAnError) {
  auto t = CreateTransport(OptionsFor("sim"));
  Pair p = OpenPair(*t, SimLink());
  p.a->Send(At(0, 1000, 0), kWait);
  p.a->Send(At(1, 1000, 0), kWait);
  Expect on_time = Want(0, 0);
  on_time.deadline_ns = 2000;
  EXPECT_EQ(p.b->Receive(on_time, kWait).arrival_time_ns, 2000);
  Expect late = Want(1, 0);
  late.deadline_ns = 2500;  // the planner forgot the link was busy until 1000
  ExpectError([&] { p.b->Receive(late, kWait); }, ErrorCode::kProtocol,
              {"link chip 0:1 <-> chip 1:1", "expecting step 1", "arrived at 3000 ns",
               "after the planned 2500 ns"});
}

TEST(Transport, RejectsBadOptionsAndLinks) {
  TransportOptions o;
  o.backend = "carrier-pigeon";
  ExpectError([&] { CreateTransport(o); }, ErrorCode::kInvalidInput,
              {"'carrier-pigeon' is unknown (valid: sim, inproc, ipc, tcp)"});
  o.backend = "sim";
  o.queue_capacity = 0;
  ExpectError([&] { CreateTransport(o); }, ErrorCode::kInvalidInput, {"queue_capacity 0"});
  auto t = CreateTransport(OptionsFor("sim"));
  LinkSpec l = SimLink();
  ExpectError([&] { t->OpenChip(5, {l}, kWait); }, ErrorCode::kInvalidInput,
              {"link chip 0:1 <-> chip 1:1: chip 5 is at neither end"});
  l.b = {0, 2};
  ExpectError([&] { t->OpenChip(0, {l}, kWait); }, ErrorCode::kInvalidInput,
              {"both ends are on chip 0"});
}

}  // namespace
}  // namespace lockstep::transport
