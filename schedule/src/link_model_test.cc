// The link model (link_model.h) as the compiler uses it, activations relayed per node, and the
// compiled schedule against the partitioner's cost model on the plans BENCHMARKS.md reports.
#include "link_model.h"

#include <gtest/gtest.h>

#include <filesystem>
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

// The activation crosses once into each receiving node and spreads there; every phase uses the
// same links (a worker opens its links from its decode program alone).
TEST(RelayActivations, OneCrossingPerNodeAndTheSameLinksInEveryPhase) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{3, 8}, {3, 8}, {2, 8}});
  ScheduleOptions o;
  o.sequences = 2;
  o.prefill = true;
  o.prompt_len = 300;
  o.prefill_chunk = 128;
  const CompactSchedule s = CompileCompact(plan, spec, topo, o);
  ASSERT_TRUE(Validate(s, topo).empty()) << Validate(s, topo).front();
  const size_t decode = s.phases.size() - 1;
  // Into stage 1's node: the sends of stage 0 chips that end in stage 1's node.
  std::set<ChipId> stage1(plan.stages[1].chips.begin(), plan.stages[1].chips.end());
  std::set<ChipId> stage0(plan.stages[0].chips.begin(), plan.stages[0].chips.end());
  int crossings = 0, received = 0;
  for (const CompactChip& c : s.chips) {
    for (const Instruction& in : c.bodies[decode]) {
      if (in.tag != Tag::kActivation || in.stage != 0) continue;
      if (stage0.count(c.chip) && in.link >= 0) ++crossings;  // leaves stage 0
      if (in.kind == InstrKind::kRecv && stage1.count(c.chip)) ++received;
    }
  }
  EXPECT_EQ(received, 8);   // every rank of stage 1
  EXPECT_LE(crossings, 2);  // two links join a pair of nodes: no more transfers leave stage 0
  for (const CompactChip& c : s.chips) {
    std::set<LinkId> decode_links;
    for (const Instruction& in : c.bodies[decode]) {
      if (in.link >= 0) decode_links.insert(in.link);
      if (in.in_link >= 0) decode_links.insert(in.in_link);
    }
    for (size_t x = 0; x < decode; ++x) {
      for (const Instruction& in : c.bodies[x]) {
        if (in.link >= 0) {
          EXPECT_TRUE(decode_links.count(in.link)) << "chip " << c.chip;
        }
        if (in.in_link >= 0) {
          EXPECT_TRUE(decode_links.count(in.in_link)) << "chip " << c.chip;
        }
      }
    }
  }
}

partition::Plan LatencyPlan(const std::string& model, const topology::Topology& topo) {
  partition::PlanOptions o;
  o.workload.dtype = Dtype::kInt8;
  o.workload.context = 4096;
  return partition::MakePlan(partition::LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) /
                                                      "examples" / "models" / model),
                             topo, o);
}

// The compiled token latency stays within 5% of the cost model's prediction (the compiler and
// the partitioner price the same ops, hops and collective steps).
TEST(CostModelAgreement, Llama2OnARackAndOnEightRacks) {
  topology::RackShape no_spare;
  no_spare.spare_nodes = 0;
  const std::vector<std::pair<std::string, topology::Topology>> cases = {
      {"llama-2-7b", topology::GenerateRack(topology::LpuV1())},
      {"llama-2-70b", topology::GenerateSystem(topology::LpuV1(), 8, no_spare)}};
  for (const auto& [model, topo] : cases) {
    const partition::Plan plan = LatencyPlan(model, topo);
    const CompactSchedule s = CompileCompact(plan);
    const double ratio = static_cast<double>(s.token_latency_ns) /
                         static_cast<double>(plan.predicted.token_latency_ns);
    EXPECT_GE(ratio, 0.95) << model;
    EXPECT_LE(ratio, 1.05) << model;
  }
}

}  // namespace
}  // namespace lockstep::schedule
