#include "lockstep/schedule/validate.h"

#include <gtest/gtest.h>

#include <functional>

#include "lockstep/schedule/schedule.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

using testing::LayoutPlan;
using testing::SmallModel;

class ValidateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ScheduleOptions o;
    o.tokens = 2;
    o.sequences = 2;
    schedule_ = Compile(LayoutPlan(spec_, topo_, {{4, 4}, {4, 4}}), spec_, topo_, o);
    ASSERT_TRUE(Validate(schedule_, topo_).empty());
  }

  // The first instruction (program, index) that satisfies `pred`.
  std::pair<size_t, size_t> Find(const std::function<bool(const Instruction&)>& pred) const {
    for (size_t p = 0; p < schedule_.programs.size(); ++p) {
      const auto& prog = schedule_.programs[p].instructions;
      for (size_t i = 0; i < prog.size(); ++i) {
        if (pred(prog[i])) return {p, i};
      }
    }
    ADD_FAILURE() << "no such instruction";
    return {0, 0};
  }
  Instruction& At(std::pair<size_t, size_t> w) {
    return schedule_.programs[w.first].instructions[w.second];
  }
  std::string Chip(std::pair<size_t, size_t> w) const {
    return "chip " + std::to_string(schedule_.programs[w.first].chip) + " ";
  }

  // Some problem contains every one of `parts`.
  void ExpectProblem(const std::vector<std::string>& parts) {
    const std::vector<std::string> problems = Validate(schedule_, topo_);
    ASSERT_FALSE(problems.empty());
    for (const std::string& p : problems) {
      bool all = true;
      for (const std::string& part : parts) all &= p.find(part) != std::string::npos;
      if (all) return;
    }
    std::string joined;
    for (const std::string& p : problems) joined += p + "\n";
    ADD_FAILURE() << "no problem mentions all expected parts; got:\n" << joined;
  }

  partition::ModelSpec spec_ = SmallModel();
  topology::Topology topo_ = topology::GenerateNode(topology::LpuV1());
  GlobalSchedule schedule_;
};

TEST_F(ValidateTest, LocalDependencyStartsTooEarly) {
  // A compute that consumes a received chunk, moved to start 1 ns before the chunk is there.
  const auto w = Find([](const Instruction& in) {
    return in.kind == InstrKind::kReduce && in.tag == Tag::kAllReduce && in.stage == 1;
  });
  At(w).start_ns -= 1;
  At(w).end_ns -= 1;
  ExpectProblem({Chip(w), "stage 1", "all_reduce reduce", "before its input"});
}

TEST_F(ValidateTest, MessageArrivesAfterItsReceiver) {
  const auto w = Find([](const Instruction& in) {
    return in.kind == InstrKind::kRecv && in.tag == Tag::kActivation;
  });
  const std::string link = "link " + std::to_string(At(w).in_link);
  At(w).start_ns -= 5;
  At(w).end_ns -= 5;
  ExpectProblem({Chip(w), link, "token 0 sequence 0 stage", "activation recv", "arrives"});
}

TEST_F(ValidateTest, TwoTransfersOverlapOnALinkDirection) {
  // Sequence 1's first activation send, moved onto sequence 0's on the same link direction.
  const auto first = Find([](const Instruction& in) {
    return in.kind == InstrKind::kSend && in.tag == Tag::kActivation && in.sequence == 0;
  });
  const LinkId link = At(first).link;
  const auto second = Find([&](const Instruction& in) {
    return in.kind == InstrKind::kSend && in.tag == Tag::kActivation && in.sequence == 1 &&
           in.link == link;
  });
  ASSERT_EQ(first.first, second.first);
  const int64_t shift = At(second).start_ns - At(first).start_ns - 1;
  At(second).start_ns -= shift;
  At(second).end_ns -= shift;
  ExpectProblem({Chip(second), "link " + std::to_string(link), "sequence 1", "overlaps",
                 "one transfer at a time"});
}

TEST_F(ValidateTest, ChipRunsTwoComputesAtOnce) {
  const auto w = Find([](const Instruction& in) {
    return in.kind == InstrKind::kCompute && in.op == partition::OpKind::kRope && in.stage == 0;
  });
  At(w).start_ns -= 10;
  At(w).end_ns -= 10;
  ExpectProblem({Chip(w), "rope compute", "compute overlaps", "qkv compute"});
}

TEST_F(ValidateTest, SendWithoutReceive) {
  const auto w = Find([](const Instruction& in) { return in.kind == InstrKind::kRecv; });
  const int64_t msg = At(w).in_msg;
  At(w).in_msg = 1'000'000'000;
  ExpectProblem({"message " + std::to_string(msg) + " is never received", "link"});
  ExpectProblem({Chip(w), "message 1000000000 is never sent"});
}

TEST_F(ValidateTest, MessageReceivedTwice) {
  const auto a = Find([](const Instruction& in) {
    return in.kind == InstrKind::kRecv && in.tag == Tag::kAllReduce;
  });
  const auto b = Find([&](const Instruction& in) {
    return in.kind == InstrKind::kRecv && in.tag == Tag::kAllReduce && in.in_msg != At(a).in_msg;
  });
  At(b).in_msg = At(a).in_msg;
  ExpectProblem({"message " + std::to_string(At(a).in_msg) + " is received 2 times"});
}

TEST_F(ValidateTest, MemoryExceedsSram) {
  // Resident bytes just below SRAM: the first received activation buffer overflows it.
  const auto w = Find([](const Instruction& in) {
    return in.kind == InstrKind::kRecv && in.tag == Tag::kActivation;
  });
  schedule_.programs[w.first].resident_bytes = topo_.spec_of(0).sram_bytes - 1;
  ExpectProblem(
      {Chip(w), "link " + std::to_string(At(w).in_link), "activation recv", "exceeds SRAM"});
}

TEST_F(ValidateTest, ProgramOrderAgainstPlannedTime) {
  const auto w = Find(
      [](const Instruction& in) { return in.kind == InstrKind::kSend && in.tag == Tag::kToken; });
  // Swap a late send's slot with time 0: now it sits after instructions that start later.
  const int64_t d = At(w).end_ns - At(w).start_ns;
  At(w).start_ns = 0;
  At(w).end_ns = d;
  ExpectProblem({Chip(w), "link " + std::to_string(At(w).link), "token send",
                 "program order must follow planned time"});
}

TEST_F(ValidateTest, SendOverALinkThatDoesNotJoinThePeers) {
  const auto w = Find([](const Instruction& in) { return in.kind == InstrKind::kSend; });
  const ChipId chip = schedule_.programs[w.first].chip;
  for (const topology::Link& l : topo_.links()) {
    if (l.a.chip != chip && l.b.chip != chip) {
      At(w).link = l.id;
      break;
    }
  }
  ExpectProblem({Chip(w), "link " + std::to_string(At(w).link), "not this chip and its peer"});
}

TEST_F(ValidateTest, TransferShorterThanTheLinkAllows) {
  const auto w = Find([](const Instruction& in) { return in.kind == InstrKind::kSend; });
  At(w).end_ns -= 1;
  ExpectProblem({Chip(w), "link " + std::to_string(At(w).link), "transfer ends at"});
}

TEST_F(ValidateTest, ReservationTableDisagreesWithThePrograms) {
  LinkTable& t = schedule_.links.front();
  t.reservations.front().start_ns += 1;
  ExpectProblem(
      {"chip " + std::to_string(t.from), "link " + std::to_string(t.link), "matches no transfer"});
  t.reservations.front().start_ns -= 1;
  schedule_.links.back().reservations.pop_back();
  ExpectProblem({"reservation tables list"});
}

TEST_F(ValidateTest, DownLinkIsRejected) {
  const auto w = Find([](const Instruction& in) { return in.kind == InstrKind::kSend; });
  topo_.SetLinkDown(At(w).link);
  ExpectProblem({Chip(w), "link " + std::to_string(At(w).link), "link is down"});
}

}  // namespace
}  // namespace lockstep::schedule
