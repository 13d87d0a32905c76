// CriticalHops: the longest chain of link messages in a step, read off the chip programs.
#include <gtest/gtest.h>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/deployment.h"

namespace lockstep::coordinator {
namespace {

using schedule::InstrKind;
using schedule::Instruction;

Instruction Compute(std::vector<int32_t> deps = {}) {
  Instruction in;
  in.kind = InstrKind::kCompute;
  in.deps = std::move(deps);
  return in;
}
Instruction Send(topology::LinkId link, int64_t msg, std::vector<int32_t> deps) {
  Instruction in;
  in.kind = InstrKind::kSend;
  in.link = link;
  in.msg = msg;
  in.deps = std::move(deps);
  return in;
}
Instruction Recv(topology::LinkId link, int64_t msg) {
  Instruction in;
  in.kind = InstrKind::kRecv;
  in.in_link = link;
  in.in_msg = msg;
  return in;
}
Instruction Forward(topology::LinkId in_link, int64_t in_msg, topology::LinkId link, int64_t msg) {
  Instruction in;
  in.kind = InstrKind::kForward;
  in.in_link = in_link;
  in.in_msg = in_msg;
  in.link = link;
  in.msg = msg;
  return in;
}

Deployment Of(std::vector<std::vector<Instruction>> programs) {
  Deployment d;
  for (size_t c = 0; c < programs.size(); ++c) {
    ChipDeployment chip;
    chip.chip = static_cast<uint32_t>(c);
    chip.program.chip = static_cast<topology::ChipId>(c);
    chip.program.instructions = std::move(programs[c]);
    d.chips.push_back(std::move(chip));
  }
  return d;
}

TEST(CriticalHops, AChipAloneHasNone) {
  EXPECT_EQ(CriticalHops(Of({{Compute(), Compute({0})}})), 0);
}

TEST(CriticalHops, APipelineOfThreeStagesIsTwoHops) {
  EXPECT_EQ(CriticalHops(Of({
                {Compute(), Send(0, 1, {0})},
                {Recv(0, 1), Compute({0}), Send(1, 2, {1})},
                {Recv(1, 2), Compute({0})},
            })),
            2);
}

TEST(CriticalHops, AForwardingChipAddsAHop) {
  EXPECT_EQ(CriticalHops(Of({
                {Compute(), Send(0, 1, {0})},
                {Forward(0, 1, 1, 7)},
                {Recv(1, 7), Compute({0})},
            })),
            2);
}

TEST(CriticalHops, ParallelMessagesCountOnceAndExchangesInARowAddUp) {
  // Two ranks exchange partials twice (two all-reduces): each exchange is one hop deep, and
  // the second waits for the first through each rank's compute.
  EXPECT_EQ(CriticalHops(Of({
                {Compute(), Send(0, 1, {0}), Recv(0, 2), Compute({0, 2}), Send(0, 3, {3}),
                 Recv(0, 4), Compute({3, 5})},
                {Compute(), Send(0, 2, {0}), Recv(0, 1), Compute({0, 2}), Send(0, 4, {3}),
                 Recv(0, 3), Compute({3, 5})},
            })),
            2);
}

TEST(CriticalHops, AMessageNoProgramSendsIsAnInternalError) {
  EXPECT_THROW(CriticalHops(Of({{Recv(3, 9)}})), Error);
}

TEST(CriticalHops, MessagesInACycleAreAnInternalError) {
  // Each chip sends only after receiving the other's message.
  EXPECT_THROW(CriticalHops(Of({
                   {Recv(0, 2), Send(0, 1, {0})},
                   {Recv(0, 1), Send(0, 2, {0})},
               })),
               Error);
}

}  // namespace
}  // namespace lockstep::coordinator
