#include "lockstep/schedule/simulate.h"

#include <gtest/gtest.h>

#include "lockstep/schedule/schedule.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

using testing::LayoutPlan;
using testing::SmallModel;

class SimulateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ScheduleOptions o;
    o.tokens = 3;
    o.sequences = 3;
    schedule_ = Compile(LayoutPlan(spec_, topo_, {{3, 2}, {3, 2}, {2, 2}}), spec_, topo_, o);
  }
  partition::ModelSpec spec_ = SmallModel();
  topology::Topology topo_ = topology::GenerateNode(topology::LpuV1());
  GlobalSchedule schedule_;
};

TEST_F(SimulateTest, JitterIsSeededAndOnlyDelays) {
  SimulateOptions o;
  o.jitter = 0.2;
  o.seed = 7;
  const SimResult a = Simulate(schedule_, topo_, o);
  const SimResult b = Simulate(schedule_, topo_, o);
  o.seed = 8;
  const SimResult c = Simulate(schedule_, topo_, o);
  ASSERT_TRUE(a.ok && b.ok && c.ok);
  EXPECT_EQ(a.end_ns, b.end_ns);
  EXPECT_NE(a.end_ns, c.end_ns);
  // Longer computes never start anything earlier than the unperturbed run does.
  o.jitter = 0;
  const SimResult steady = Simulate(schedule_, topo_, o);
  EXPECT_GT(a.metrics.makespan_ns, steady.metrics.makespan_ns);
  for (size_t p = 0; p < schedule_.programs.size(); ++p) {
    for (size_t i = 0; i < schedule_.programs[p].instructions.size(); ++i) {
      EXPECT_GE(a.start_ns[p][i], steady.start_ns[p][i]);
    }
  }
}

TEST_F(SimulateTest, FailedLinkIsReportedAtTheStepItBreaks) {
  // The link that carries stage 0 -> stage 1 activations of rank 0.
  const Instruction* send = nullptr;
  ChipId chip = -1;
  for (const ChipProgram& p : schedule_.programs) {
    for (const Instruction& in : p.instructions) {
      if (!send && in.kind == InstrKind::kSend && in.tag == Tag::kActivation && in.stage == 0) {
        send = &in;
        chip = p.chip;
      }
    }
  }
  ASSERT_NE(send, nullptr);
  SimulateOptions o;
  o.failed_links = {send->link};
  const SimResult r = Simulate(schedule_, topo_, o);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failure_ns, send->start_ns);
  EXPECT_NE(r.failure.find("chip " + std::to_string(chip) + " link " + std::to_string(send->link)),
            std::string::npos)
      << r.failure;
  EXPECT_NE(r.failure.find("token 0 sequence 0 stage 0 activation send"), std::string::npos)
      << r.failure;
}

TEST_F(SimulateTest, MetricsSitBesideTheirBounds) {
  const SimResult r = Simulate(schedule_, topo_);
  ASSERT_TRUE(r.ok);
  const SimMetrics& m = r.metrics;
  EXPECT_EQ(m.events, 2 * static_cast<int64_t>(schedule_.instruction_count()));
  EXPECT_GE(m.token_latency_ns.ratio, 1.0);  // a lower bound of time
  EXPECT_LE(m.tokens_per_s_per_user.ratio, 1.0);
  EXPECT_LE(m.tokens_per_s.ratio, 1.0);                            // an upper bound of rate
  EXPECT_GT(m.tokens_per_s.value, m.tokens_per_s_per_user.value);  // 3 sequences in flight
  EXPECT_GT(m.compute_utilization.value, 0.0);
  EXPECT_LE(m.compute_utilization_max, 1.0);
  EXPECT_GT(m.link_utilization.value, 0.0);
  EXPECT_NEAR(m.bubble_fraction.value, 1.0 - m.compute_utilization.value, 1e-12);
  EXPECT_EQ(m.predicted_token_latency_ns, schedule_.token_latency_ns);
}

TEST_F(SimulateTest, MissingMessageIsADeadlockNotAHang) {
  for (ChipProgram& p : schedule_.programs) {
    for (Instruction& in : p.instructions) {
      if (in.kind == InstrKind::kRecv) {
        in.in_msg = -42;
        const SimResult r = Simulate(schedule_, topo_);
        EXPECT_FALSE(r.ok);
        EXPECT_NE(r.failure.find("never ran"), std::string::npos) << r.failure;
        return;
      }
    }
  }
}

}  // namespace
}  // namespace lockstep::schedule
