#include "lockstep/schedule/link_load.h"

#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "lockstep/common/dtype.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

using testing::LayoutPlan;
using testing::SmallModel;

GlobalSchedule CompileFor(const topology::Topology& topo,
                          std::vector<std::pair<int64_t, int>> layout, bool prefill = false) {
  const partition::ModelSpec spec = SmallModel(6);
  const partition::Plan plan = LayoutPlan(spec, topo, std::move(layout));
  ScheduleOptions o;
  o.tokens = 1;
  o.sequences = 2;
  o.prefill = prefill;
  o.prompt_len = 64;
  return Compile(plan, spec, topo, o);
}

// Per layout: the loads count exactly the link tables' reservations, direction by direction; and
// each program's own view (its sends going out, its receives coming in) equals the whole
// schedule's for every direction it touches — the sending and the receiving side agree.
TEST(LinkLoads, CountTheLinkTablesAndAgreeWithEveryProgramsOwnView) {
  const topology::Topology node = topology::GenerateNode(topology::LpuV1());
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  struct Case {
    const char* name;
    const topology::Topology& topo;
    std::vector<std::pair<int64_t, int>> layout;
    bool prefill;
  };
  const std::vector<Case> cases = {{"tp2_pp2", node, {{4, 2}, {4, 2}}, false},
                                   {"tp2_pp2_prefill", node, {{4, 2}, {4, 2}}, true},
                                   {"tp16_ring", rack, {{4, 16}, {4, 16}}, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const GlobalSchedule s = CompileFor(c.topo, c.layout, c.prefill);
    const std::vector<LinkLoad> loads = LinkLoads(s);
    std::map<std::tuple<LinkId, ChipId, ChipId>, LinkLoad> by_direction;
    for (const LinkLoad& l : loads) {
      EXPECT_GT(l.messages, 0);
      EXPECT_GE(l.bytes, l.max_message_bytes);
      EXPECT_LE(l.bytes, l.max_message_bytes * l.messages);
      EXPECT_TRUE(by_direction.emplace(std::tuple{l.link, l.from, l.to}, l).second)
          << "direction listed twice";
    }
    size_t used = 0;
    for (const LinkTable& t : s.links) {
      if (t.reservations.empty()) continue;
      ++used;
      auto it = by_direction.find({t.link, t.from, t.to});
      ASSERT_NE(it, by_direction.end()) << "link " << t.link << " " << t.from << "->" << t.to;
      EXPECT_EQ(it->second.messages, static_cast<int64_t>(t.reservations.size()));
    }
    EXPECT_EQ(used, loads.size());
    for (const ChipProgram& p : s.programs) {
      size_t touched = 0;
      for (const LinkLoad& l : loads) touched += l.from == p.chip || l.to == p.chip ? 1 : 0;
      const std::vector<LinkLoad> own = ProgramLinkLoads(p);
      EXPECT_EQ(own.size(), touched) << "chip " << p.chip;
      for (const LinkLoad& mine : own) {
        EXPECT_TRUE(mine.from == p.chip || mine.to == p.chip);
        auto it = by_direction.find({mine.link, mine.from, mine.to});
        ASSERT_NE(it, by_direction.end());
        EXPECT_EQ(mine, it->second) << "chip " << p.chip;
      }
    }
    EXPECT_EQ(LinkLoads(CompileFor(c.topo, c.layout, c.prefill)), loads);  // deterministic
  }
}

// A hand-counted case: two stages of one chip each, two sequences of batch 1. Stage 0 sends each
// sequence's activation (hidden x the plan's dtype) to stage 1; with prefill a chunk's activations
// (chunk tokens x hidden) are the largest message on that direction.
TEST(LinkLoads, ActivationsBetweenTwoStagesAsCounted) {
  const topology::Topology node = topology::GenerateNode(topology::LpuV1());
  const partition::ModelSpec spec = SmallModel(6);
  const partition::Plan plan = LayoutPlan(spec, node, {{4, 1}, {4, 1}});
  const int64_t activation = spec.hidden_size * DtypeBytes(plan.workload.dtype);
  const GlobalSchedule decode = CompileFor(node, {{4, 1}, {4, 1}});
  const ChipId first = plan.stages.front().chips.front();
  int directions = 0;
  for (const LinkLoad& l : LinkLoads(decode)) {
    if (l.from != first) continue;
    ++directions;
    EXPECT_EQ(l.messages, 2);  // one activation per sequence
    EXPECT_EQ(l.max_message_bytes, activation);
    EXPECT_EQ(l.bytes, 2 * activation);
  }
  EXPECT_EQ(directions, 1);
  const GlobalSchedule prefill = CompileFor(node, {{4, 1}, {4, 1}}, /*prefill=*/true);
  ASSERT_GT(prefill.prefill_chunk_tokens, 1);
  for (const LinkLoad& l : LinkLoads(prefill)) {
    if (l.from == first) {
      EXPECT_EQ(l.max_message_bytes, prefill.prefill_chunk_tokens * activation);
    }
  }
}

}  // namespace
}  // namespace lockstep::schedule
