// Failover planning: the spare chosen for a failed chip, the patched plan and topology, and
// that the patched plan compiles into a deployment whose survivors keep their (stage, rank).
#include "lockstep/coordinator/failover.h"

#include <gtest/gtest.h>

#include <map>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"
#include "lockstep/topology/routing.h"

namespace lockstep::coordinator {
namespace {

partition::ModelSpec Spec() {
  return partition::ParseModelSpec(
      R"({"_name_or_path": "failover-test", "model_type": "llama", "hidden_size": 128,
          "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 2,
          "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 96,
          "max_position_embeddings": 32})",
      "failover-test");
}

struct Fixture {
  partition::ModelSpec spec = Spec();
  topology::Topology topo = topology::GenerateRack(*topology::ChipPreset("lpu-v1"));
  partition::Plan plan;
  Fixture(int tp, int pp) {
    partition::PlanOptions o;
    o.tp = tp;
    o.pp = pp;
    plan = partition::MakePlan(spec, topo, o);
  }
};

TEST(Failover, ChoosesTheNearestSpareDeterministically) {
  const Fixture f(2, 2);
  const topology::ChipId failed = f.plan.stages[0].chips[1];
  const std::optional<topology::ChipId> spare = ChooseSpare(f.plan, f.topo, failed);
  ASSERT_TRUE(spare.has_value());
  EXPECT_TRUE(f.topo.chip(*spare).spare);
  EXPECT_EQ(ChooseSpare(f.plan, f.topo, failed), spare);  // same inputs, same choice
  // No spare is nearer to the group (hops summed over its chips), and ties go to the lower id.
  topology::Router router(f.topo);
  auto hops = [&](topology::ChipId s) {
    int total = 0;
    for (topology::ChipId g : f.plan.stages[0].chips) total += router.Distance(s, g);
    return total;
  };
  for (const topology::Chip& c : f.topo.chips()) {
    if (!c.spare) continue;
    EXPECT_GE(hops(c.id), hops(*spare)) << "spare " << c.id;
    if (c.id < *spare) {
      EXPECT_GT(hops(c.id), hops(*spare)) << "spare " << c.id;
    }
  }
}

TEST(Failover, PatchedPlanPutsTheSpareInPlaceAndCompiles) {
  const Fixture f(2, 2);
  const topology::ChipId failed = f.plan.stages[1].chips[0];  // the sampling chip
  const PatchedPlan p = ReplaceChip(f.plan, f.topo, failed);
  ASSERT_GE(p.spare, 0);
  EXPECT_TRUE(p.topology.chip(failed).down);
  EXPECT_FALSE(p.topology.chip(p.spare).spare);
  EXPECT_EQ(p.plan.stages[1].chips[0], p.spare);
  EXPECT_EQ(p.plan.stages[1].chips[1], f.plan.stages[1].chips[1]);
  EXPECT_EQ(p.plan.stages[0].chips, f.plan.stages[0].chips);
  EXPECT_TRUE(partition::VerifyPlan(p.plan, f.spec, p.topology).empty());

  const model::LlamaWeights weights = model::GenerateLlamaWeights(f.spec, 3);
  DeployOptions o;
  o.slots = 2;
  const Deployment before = MakeDeployment(f.plan, f.spec, f.topo, weights, o);
  const Deployment after = MakeDeployment(p.plan, f.spec, p.topology, weights, o);
  EXPECT_NE(after.schedule_id, before.schedule_id);
  EXPECT_EQ(after.sampling_chip, static_cast<uint32_t>(p.spare));
  // Every chip in both keeps its place and its shard; the spare gets the failed chip's.
  std::map<uint32_t, const ChipDeployment*> old;
  for (const ChipDeployment& c : before.chips) old[c.chip] = &c;
  bool spare_seen = false;
  for (const ChipDeployment& c : after.chips) {
    EXPECT_NE(c.chip, static_cast<uint32_t>(failed));
    const uint32_t was = c.chip == static_cast<uint32_t>(p.spare) ? failed : c.chip;
    spare_seen |= c.chip == static_cast<uint32_t>(p.spare);
    if (old.count(was) == 0) {
      EXPECT_EQ(c.stage, -1) << "chip " << c.chip << " is new: it may only forward";
      continue;
    }
    EXPECT_EQ(c.stage, old[was]->stage);
    EXPECT_EQ(c.rank, old[was]->rank);
    EXPECT_EQ(c.shard, old[was]->shard);
  }
  EXPECT_TRUE(spare_seen);
}

TEST(Failover, WiderGroupsKeepTheDirectExchangeAcrossNodes) {
  // TP 4 in a node with one rank on the spare node: still compiled as a direct exchange (each
  // rank sends to every other), which the runtime executes; hops are forwarded on the way.
  const Fixture f(4, 1);
  const PatchedPlan p = ReplaceChip(f.plan, f.topo, f.plan.stages[0].chips[2]);
  schedule::ScheduleOptions so;
  so.sequences = 1;
  const schedule::GlobalSchedule s = schedule::Compile(p.plan, f.spec, p.topology, so);
  // Direct: per all-reduce each rank sends tp - 1 pieces and reduces once; a ring would
  // reduce after every one of its tp - 1 sends.
  for (const schedule::ChipProgram& prog : s.programs) {
    if (prog.stage != 0) continue;
    int sends = 0, reduces = 0;
    for (const schedule::Instruction& in : prog.instructions) {
      if (in.tag != schedule::Tag::kReduceScatter) continue;
      sends += in.kind == schedule::InstrKind::kSend;
      reduces += in.kind == schedule::InstrKind::kReduce;
    }
    EXPECT_GT(reduces, 0) << "chip " << prog.chip;
    EXPECT_EQ(sends, 3 * reduces) << "chip " << prog.chip;
  }
}

TEST(Failover, NoSpareLeftNamesTheChip) {
  Fixture f(2, 2);
  const topology::ChipId failed = f.plan.stages[0].chips[0];
  for (const topology::Chip& c : f.topo.chips()) {
    if (c.spare) f.topo.SetChipDown(c.id, true);
  }
  f.plan.system.topology = f.topo;
  EXPECT_FALSE(ChooseSpare(f.plan, f.topo, failed).has_value());
  try {
    ReplaceChip(f.plan, f.topo, failed);
    FAIL() << "no spare: must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCannotFit);
    EXPECT_NE(std::string(e.what()).find("chip " + std::to_string(failed)), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lockstep::coordinator
