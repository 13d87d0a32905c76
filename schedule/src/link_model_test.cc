// The link model (link_model.h) as the compiler uses it.
#include "link_model.h"

#include <gtest/gtest.h>

#include <set>

#include "lockstep/schedule/compact.h"
#include "lockstep/schedule/validate.h"
#include "lockstep/topology/routing.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

using testing::LayoutPlan;
using testing::SmallModel;

TEST(LinkModel, MessagesPipelineOnALinkAndForwardsCutThrough) {
  topology::Link link;
  link.latency_ns = 600;
  link.bandwidth_bytes_per_s = 10'000'000'000;  // 10 B/ns at efficiency 1
  partition::LinkCostParams p;
  p.link_efficiency = 1.0;
  // A direction is held while the payload goes onto the wire, not while it flies.
  EXPECT_EQ(link_model::OccupancyNs(link, 1000, p), 100);
  EXPECT_EQ(link_model::OccupancyNs(link, 1, p), 1);
  EXPECT_EQ(link_model::ArrivalNs(50, link, 1000, p), 50 + 600 + 100);
  // Cut-through: the next hop starts when the head arrives...
  EXPECT_EQ(link_model::ForwardEarliestNs(0, link, link, 1000, p), 600);
  // ...but a faster outgoing link waits so that the tail never leaves before it arrived.
  topology::Link fast = link;
  fast.bandwidth_bytes_per_s = 20'000'000'000;
  EXPECT_EQ(link_model::ForwardEarliestNs(0, link, fast, 1000, p), 600 + 100 - 50);
}

// A route of several hops on an idle system takes hops x latency + one payload (cut-through).
TEST(LinkModel, ARoutedActivationIsCutThrough) {
  const partition::ModelSpec spec = SmallModel(10);
  const topology::Topology topo = topology::GenerateSystem(topology::LpuV1(), 2);
  const partition::Plan plan = LayoutPlan(
      spec, topo, {{4, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, {1, 1}});
  ScheduleOptions o;
  o.sequences = 1;
  const CompactSchedule s = CompileCompact(plan, spec, topo, o);
  ASSERT_TRUE(Validate(s, topo).empty()) << Validate(s, topo).front();
  // TP 1 everywhere: no collectives, so the token's round trip is every stage's compute and
  // every hand-off's route: its hops' latencies and one payload, cut through.
  topology::Router router(topo);
  int64_t expected = 0;
  const partition::LinkCostParams lp;
  for (size_t st = 0; st < plan.stages.size(); ++st) {
    expected += plan.stages[st].compute_ns;
    const bool last = st + 1 == plan.stages.size();
    const ChipId a = plan.stages[st].chips[0];
    const ChipId b = plan.stages[last ? 0 : st + 1].chips[0];
    const int hops = router.FindRoute(a, b)->hop_count();
    const int64_t bytes = last ? 4 : spec.hidden_size;  // int8 activations, an int32 token
    const topology::Link& l = topo.link(0);
    expected += hops * l.latency_ns + link_model::OccupancyNs(l, bytes, lp);
  }
  EXPECT_EQ(s.token_latency_ns, expected);
  int forwards = 0;
  for (const CompactChip& c : s.chips) {
    for (const Instruction& in : c.bodies.back()) forwards += in.kind == InstrKind::kForward;
  }
  EXPECT_GT(forwards, 0) << "some stage-to-stage route is forwarded";
}

}  // namespace
}  // namespace lockstep::schedule
