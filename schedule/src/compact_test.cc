#include "lockstep/schedule/compact.h"

#include <gtest/gtest.h>

#include "lockstep/common/error.h"
#include "lockstep/schedule/simulate.h"
#include "lockstep/schedule/validate.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

using testing::LayoutPlan;
using testing::SmallModel;

struct Case {
  const char* name;
  int racks;  // 0 = one node
  std::vector<std::pair<int64_t, int>> layout;
  int64_t sequences;
};

std::vector<Case> Cases() {
  return {{"node, 2 stages x TP 4", 0, {{4, 4}, {4, 4}}, 3},
          {"node, TP 8", 0, {{8, 8}}, 2},
          {"rack, 4 stages", 1, {{2, 8}, {2, 8}, {2, 8}, {2, 8}}, 4},
          {"rack, TP 16 ring", 1, {{8, 16}}, 2},
          {"2 racks, forwarded", 2, {{4, 8}, {2, 8}, {2, 8}}, 2}};
}

topology::Topology TopologyFor(int racks) {
  if (racks == 0) return topology::GenerateNode(topology::LpuV1());
  if (racks == 1) return topology::GenerateRack(topology::LpuV1());
  return topology::GenerateSystem(topology::LpuV1(), racks);
}

// The runtime's agreement: one chip's program for one decode period, from the compact form, is the
// explicit compile's program for that chip — on every chip of every plan.
TEST(Compact, DecodePeriodProgramIsTheExplicitCompilesProgram) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const partition::ModelSpec spec = SmallModel();
    const topology::Topology topo = TopologyFor(c.racks);
    const partition::Plan plan = LayoutPlan(spec, topo, c.layout);
    ScheduleOptions o;
    o.tokens = 1;
    o.sequences = c.sequences;
    const GlobalSchedule explicit_form = Compile(plan, spec, topo, o);
    for (bool prefill : {false, true}) {
      ScheduleOptions co = o;
      co.tokens = 5;  // the decode phase does not depend on tokens or a prompt before it
      co.prefill = prefill;
      co.prompt_len = 300;
      co.prefill_chunk = 128;
      const CompactSchedule compact = CompileCompact(plan, spec, topo, co);
      ASSERT_EQ(compact.chips.size(), explicit_form.programs.size());
      for (const ChipProgram& p : explicit_form.programs) {
        EXPECT_EQ(DecodePeriodProgram(compact, p.chip), p) << "chip " << p.chip;
        std::vector<LinkTable> incoming;
        for (const LinkTable& t : explicit_form.links) {
          if (t.to == p.chip) incoming.push_back(t);
        }
        EXPECT_EQ(DecodePeriodIncoming(compact, IncomingOf(compact, p.chip)), incoming);
      }
    }
  }
}

// The expansion of several tokens agrees with the old, independent Unroll of the modulo form.
TEST(Compact, ExpandAgreesWithUnrollOfTheModuloForm) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const partition::ModelSpec spec = SmallModel();
    const topology::Topology topo = TopologyFor(c.racks);
    const partition::Plan plan = LayoutPlan(spec, topo, c.layout);
    ScheduleOptions o;
    o.tokens = 3;
    o.sequences = c.sequences;
    const CompactSchedule compact = CompileCompact(plan, spec, topo, o);
    const GlobalSchedule expanded = Expand(compact);
    const GlobalSchedule unrolled = Unroll(DecodePeriod(compact, 3), 3);
    ASSERT_EQ(expanded.programs.size(), unrolled.programs.size());
    for (size_t p = 0; p < expanded.programs.size(); ++p) {
      EXPECT_EQ(expanded.programs[p], unrolled.programs[p]) << "chip " << expanded.programs[p].chip;
    }
    EXPECT_EQ(expanded.links, unrolled.links);
    EXPECT_EQ(expanded.instruction_count(), static_cast<size_t>(compact.instruction_count()));
    EXPECT_EQ(expanded.makespan_ns, compact.makespan_ns);
  }
}

// The compact form validates and simulates as its explicit expansion does: the same figures
// from the same run.
TEST(Compact, ValidatorAndSimulatorReadTheCompactFormAsTheExpandedOne) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const partition::ModelSpec spec = SmallModel();
    const topology::Topology topo = TopologyFor(c.racks);
    const partition::Plan plan = LayoutPlan(spec, topo, c.layout);
    ScheduleOptions o;
    o.tokens = 3;
    o.sequences = c.sequences;
    o.prefill = true;
    o.prompt_len = 300;
    o.prefill_chunk = 128;
    const CompactSchedule compact = CompileCompact(plan, spec, topo, o);
    const GlobalSchedule expanded = Expand(compact);
    const std::vector<std::string> a = Validate(compact, topo), b = Validate(expanded, topo);
    EXPECT_TRUE(a.empty()) << a.front();
    EXPECT_TRUE(b.empty()) << b.front();
    const SimResult rc = Simulate(compact, topo), re = Simulate(expanded, topo);
    ASSERT_TRUE(rc.ok) << rc.failure;
    ASSERT_TRUE(re.ok) << re.failure;
    EXPECT_EQ(rc.metrics.events, re.metrics.events);
    EXPECT_EQ(rc.metrics.events, 2 * compact.instruction_count());
    EXPECT_EQ(rc.metrics.makespan_ns, re.metrics.makespan_ns);
    EXPECT_EQ(rc.metrics.token_latency_ns.value, re.metrics.token_latency_ns.value);
    EXPECT_EQ(rc.metrics.time_to_first_token_ns.value, re.metrics.time_to_first_token_ns.value);
    // Unperturbed, nothing runs later than planned.
    EXPECT_LE(rc.metrics.makespan_ns, compact.makespan_ns);
    EXPECT_LE(rc.metrics.time_to_first_token_ns.value,
              static_cast<double>(compact.time_to_first_token_ns));
  }
}

// One chip's program for a prefill pass: that pass's instructions of the whole run's program.
TEST(Compact, PrefillPassProgramIsThatPassOfTheRun) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{3, 8}, {3, 8}, {2, 8}});
  ScheduleOptions o;
  o.sequences = 3;
  o.prefill = true;
  o.prompt_len = 500;
  o.prefill_chunk = 128;
  const CompactSchedule compact = CompileCompact(plan, spec, topo, o);
  ASSERT_EQ(compact.prefill_chunks, 4);
  const GlobalSchedule run = Expand(compact);
  for (const ChipProgram& p : run.programs) {
    for (int64_t pass = 0; pass < compact.prefill_chunks; ++pass) {
      const int32_t token = static_cast<int32_t>(pass - compact.prefill_chunks);
      std::vector<int32_t> where(p.instructions.size(), -1);
      std::vector<Instruction> mine;
      for (size_t i = 0; i < p.instructions.size(); ++i) {
        if (p.instructions[i].token != token) continue;
        where[i] = static_cast<int32_t>(mine.size());
        Instruction in = p.instructions[i];
        std::vector<int32_t> deps;
        for (int32_t d : in.deps) {
          if (where[static_cast<size_t>(d)] >= 0) deps.push_back(where[static_cast<size_t>(d)]);
        }
        in.deps = deps;
        mine.push_back(in);
      }
      const ChipProgram pass_program = PrefillPassProgram(compact, p.chip, pass);
      EXPECT_EQ(pass_program.instructions, mine) << "chip " << p.chip << " pass " << pass;
    }
  }
  EXPECT_THROW(PrefillPassProgram(compact, run.programs.front().chip, 4), Error);
  EXPECT_THROW(DecodePeriodProgram(compact, 100000), Error);
}

// The compact form's size depends on chips and ops, not on slots or tokens.
TEST(Compact, SizeIsIndependentOfSlotsAndTokens) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{2, 8}, {2, 8}, {2, 8}, {2, 8}});
  ScheduleOptions few, many;
  few.sequences = 2;
  few.tokens = 1;
  many.sequences = 16;
  many.tokens = 1000000;
  const CompactSchedule a = CompileCompact(plan, spec, topo, few);
  const CompactSchedule b = CompileCompact(plan, spec, topo, many);
  EXPECT_EQ(a.body_instruction_count(), b.body_instruction_count());
  EXPECT_EQ(b.instruction_count(), static_cast<int64_t>(b.body_instruction_count()) * 16 * 1000000);
  EXPECT_TRUE(Validate(b, topo).empty());
  // Enough slots for every stage: the pass repeats as soon as the busiest chip allows, and no
  // later than the token's round trip needs.
  EXPECT_GE(b.cycle_ns, b.token_latency_ns);
  EXPECT_EQ(b.cycle_ns, 16 * b.period_ns);
}

// Copies that would meet, and phases that would overlap, are caught naming the chip.
TEST(Compact, ValidatorCatchesCopiesAndPhasesThatMeet) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{4, 4}, {4, 4}});
  ScheduleOptions o;
  o.sequences = 4;
  o.tokens = 2;
  o.prefill = true;
  o.prompt_len = 64;
  const CompactSchedule good = CompileCompact(plan, spec, topo, o);
  ASSERT_TRUE(Validate(good, topo).empty());
  CompactSchedule tight = good;
  tight.phases.back().slot_ns = good.phases.back().slot_ns / 3;
  std::vector<std::string> problems = Validate(tight, topo);
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems.front().find("chip "), std::string::npos) << problems.front();
  EXPECT_NE(problems.front().find("repeat every"), std::string::npos) << problems.front();
  CompactSchedule early = good;
  early.phases.back().start_ns = early.phases[early.phases.size() - 2].start_ns;
  problems = Validate(early, topo);
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems.front().find("decode phase after the prefill_last phase starts at"),
            std::string::npos)
      << problems.front();
}

}  // namespace
}  // namespace lockstep::schedule
