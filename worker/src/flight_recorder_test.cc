#include "lockstep/worker/flight_recorder.h"

#include <gtest/gtest.h>

#include "lockstep/common/error.h"

namespace lockstep::worker {

using control::ChipProgress;
using control::FlightEntry;
using control::StepTimes;

namespace {

using schedule::InstrKind;

FlightEntry Op(int32_t op, InstrKind kind = InstrKind::kCompute, int32_t link = -1) {
  FlightEntry e;
  e.op = op;
  e.kind = kind;
  e.link = link;
  e.port = link >= 0 ? 1 : -1;
  e.peer = link >= 0 ? 4 : -1;
  e.bytes = link >= 0 ? 4096 : 0;
  return e;
}

TEST(FlightRecorder, KeepsTheLastNInOrderWithStepAndTimes) {
  int64_t now = 1000;
  FlightRecorder rec(4, [&] { return now; });
  rec.BeginStep(7);
  for (int32_t i = 0; i < 6; ++i) {
    now += 10;
    rec.BeginOp(Op(i));
    now += 5;
    rec.EndOp();
  }
  rec.EndStep();
  EXPECT_EQ(rec.recorded(), 6);
  const std::vector<FlightEntry> e = rec.Entries();
  ASSERT_EQ(e.size(), 4u);  // ops 2..5: the two oldest were overwritten
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(e[k].op, static_cast<int32_t>(k + 2));
    EXPECT_EQ(e[k].step, 7);
    EXPECT_EQ(e[k].start_ns, 15 * static_cast<int64_t>(k + 2) + 10);
    EXPECT_EQ(e[k].end_ns, e[k].start_ns + 5);
  }
  const ChipProgress p = rec.Progress();
  EXPECT_FALSE(p.running);
  EXPECT_EQ(p.last_completed_step, 7);
}

TEST(FlightRecorder, StepTimesSumEachKindAndTheWholeStep) {
  int64_t now = 0;
  FlightRecorder rec(2, [&] { return now; });  // fewer entries than ops: the sums still see all
  EXPECT_EQ(rec.LastStepTimes(), StepTimes{});
  auto op = [&](InstrKind kind, int64_t gap, int64_t took) {
    now += gap;
    rec.BeginOp(Op(0, kind, kind == InstrKind::kCompute ? -1 : 3));
    now += took;
    rec.EndOp();
  };
  rec.BeginStep(1);
  op(InstrKind::kCompute, 1, 100);
  op(InstrKind::kSend, 2, 10);
  op(InstrKind::kRecv, 3, 40);
  op(InstrKind::kReduce, 4, 6);
  op(InstrKind::kCompute, 5, 200);
  now += 7;
  EXPECT_EQ(rec.LastStepTimes(), StepTimes{});  // only a completed step is reported
  rec.EndStep();
  StepTimes t = rec.LastStepTimes();
  EXPECT_EQ(t.of(InstrKind::kCompute), 300);
  EXPECT_EQ(t.of(InstrKind::kSend), 10);
  EXPECT_EQ(t.of(InstrKind::kRecv), 40);
  EXPECT_EQ(t.of(InstrKind::kReduce), 6);
  EXPECT_EQ(t.of(InstrKind::kForward), 0);
  EXPECT_EQ(t.step_ns, 1 + 100 + 2 + 10 + 3 + 40 + 4 + 6 + 5 + 200 + 7);
  // The next step starts from zero.
  rec.BeginStep(2);
  op(InstrKind::kForward, 0, 9);
  rec.EndStep();
  t = rec.LastStepTimes();
  EXPECT_EQ(t.of(InstrKind::kForward), 9);
  EXPECT_EQ(t.of(InstrKind::kCompute), 0);
  EXPECT_EQ(t.step_ns, 9);
}

TEST(FlightRecorder, SentBytesSumPerLinkInLinkOrderAndStepByStep) {
  FlightRecorder rec(2, [] { return int64_t{0}; });
  EXPECT_TRUE(rec.LastStepSent().empty());
  rec.BeginStep(1);
  rec.Sent(9, 4, 100);
  rec.Sent(2, 1, 8);
  rec.Sent(9, 4, 28);
  rec.Sent(5, 3, 0);                        // an idle slot's empty tensor: the link was used
  EXPECT_TRUE(rec.LastStepSent().empty());  // only a completed step is reported
  rec.EndStep();
  using control::LinkBytes;
  EXPECT_EQ(rec.LastStepSent(),
            (std::vector<LinkBytes>{LinkBytes{2, 1, 8}, LinkBytes{5, 3, 0}, LinkBytes{9, 4, 128}}));
  // The next step starts from nothing.
  rec.BeginStep(2);
  rec.Sent(5, 3, 7);
  rec.EndStep();
  EXPECT_EQ(rec.LastStepSent(), (std::vector<LinkBytes>{LinkBytes{5, 3, 7}}));
}

TEST(FlightRecorder, FewerThanCapacityAndExactlyFull) {
  FlightRecorder rec(3, [] { return int64_t{0}; });
  EXPECT_TRUE(rec.Entries().empty());
  rec.BeginStep(0);
  for (int32_t i = 0; i < 2; ++i) {
    rec.BeginOp(Op(i));
    rec.EndOp();
  }
  ASSERT_EQ(rec.Entries().size(), 2u);
  EXPECT_EQ(rec.Entries()[0].op, 0);
  rec.BeginOp(Op(2));
  rec.EndOp();
  const std::vector<FlightEntry> e = rec.Entries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].op, 0);
  EXPECT_EQ(e[2].op, 2);
  EXPECT_EQ(rec.capacity(), 3u);
  EXPECT_THROW(FlightRecorder{0}, Error);
}

TEST(FlightRecorder, ProgressNamesTheInstructionItWaitsIn) {
  int64_t now = 0;
  FlightRecorder rec(8, [&] { return now; });
  rec.BeginStep(12);
  rec.BeginOp(Op(36));
  now = 100;
  rec.EndOp();
  rec.BeginOp(Op(37, InstrKind::kRecv, 3));
  now = 2'000'100;  // blocked in the receive
  ChipProgress p = rec.Progress();
  EXPECT_TRUE(p.running);
  EXPECT_EQ(p.step, 12);
  EXPECT_EQ(p.last_completed_step, -1);
  EXPECT_EQ(p.current.op, 37);
  EXPECT_EQ(p.current.kind, InstrKind::kRecv);
  EXPECT_EQ(p.current.link, 3);
  EXPECT_EQ(p.current.peer, 4);
  EXPECT_EQ(p.current.start_ns, 100);
  EXPECT_EQ(p.current.end_ns, -1);
  EXPECT_EQ(p.since_step_start_ns, 2'000'100);
  // The unfinished instruction is not in the ring yet.
  ASSERT_EQ(rec.Entries().size(), 1u);
  EXPECT_EQ(rec.Entries()[0].op, 36);
}

}  // namespace
}  // namespace lockstep::worker
