// Failover planning: the spare chosen for a failed chip, the patched plan and topology, and
// that the patched plan compiles into a deployment whose survivors keep their (stage, rank).
#include "lockstep/coordinator/failover.h"

#include <gtest/gtest.h>

#include <algorithm>
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

bool Linked(const topology::Topology& topo, topology::ChipId a, topology::ChipId b) {
  for (const topology::Adjacent& n : topo.Neighbors(a)) {
    if (n.peer == b) return true;
  }
  return false;
}

TEST(Failover, TpOneTakesTheNearestSpareDeterministically) {
  const Fixture f(1, 2);
  const topology::ChipId failed = f.plan.stages[1].chips[0];
  const SpareChoice choice = ChooseSpare(f.plan, f.topo, failed);
  ASSERT_EQ(choice.chips.size(), 1u);
  EXPECT_FALSE(choice.whole_group);
  const topology::ChipId spare = choice.chips[0];
  EXPECT_TRUE(f.topo.chip(spare).spare);
  EXPECT_EQ(ChooseSpare(f.plan, f.topo, failed).chips, choice.chips);  // same inputs, same choice
  // No spare is nearer, and ties go to the lower id.
  topology::Router router(f.topo);
  for (const topology::Chip& c : f.topo.chips()) {
    if (!c.spare) continue;
    EXPECT_GE(router.Distance(c.id, failed), router.Distance(spare, failed)) << "spare " << c.id;
    if (c.id < spare) {
      EXPECT_GT(router.Distance(c.id, failed), router.Distance(spare, failed)) << "spare " << c.id;
    }
  }
}

TEST(Failover, TpGroupStaysDirectlyLinked) {
  const Fixture f(2, 2);
  for (topology::ChipId failed : f.plan.stages[0].chips) {
    const SpareChoice choice = ChooseSpare(f.plan, f.topo, failed);
    ASSERT_FALSE(choice.chips.empty()) << "chip " << failed;
    const PatchedPlan p = ReplaceChip(f.plan, f.topo, failed);
    const std::vector<topology::ChipId>& group = p.plan.stages[0].chips;
    ASSERT_EQ(group.size(), 2u);
    EXPECT_TRUE(Linked(f.topo, group[0], group[1])) << "chip " << failed;
    EXPECT_EQ(std::count(group.begin(), group.end(), failed), 0);
    if (choice.whole_group) {
      EXPECT_EQ(group, choice.chips);
      EXPECT_EQ(f.topo.chip(group[0]).node, f.topo.chip(group[1]).node);
    } else {
      EXPECT_EQ(std::count(group.begin(), group.end(), choice.chips[0]), 1);
    }
    EXPECT_TRUE(partition::VerifyPlan(p.plan, f.spec, p.topology).empty());
  }
}

TEST(Failover, PatchedPlanKeepsSurvivorsInPlaceAndCompiles) {
  const Fixture f(1, 2);
  const topology::ChipId failed = f.plan.stages[1].chips[0];  // the sampling chip
  const PatchedPlan p = ReplaceChip(f.plan, f.topo, failed);
  ASSERT_EQ(p.choice.chips.size(), 1u);
  const topology::ChipId spare = p.choice.chips[0];
  EXPECT_TRUE(p.topology.chip(failed).down);
  EXPECT_FALSE(p.topology.chip(spare).spare);
  EXPECT_EQ(p.plan.stages[1].chips[0], spare);
  EXPECT_EQ(p.plan.stages[0].chips, f.plan.stages[0].chips);
  EXPECT_TRUE(partition::VerifyPlan(p.plan, f.spec, p.topology).empty());

  const model::LlamaWeights weights = model::GenerateLlamaWeights(f.spec, 3);
  DeployOptions o;
  o.slots = 2;
  const Deployment before = MakeDeployment(f.plan, f.spec, f.topo, weights, o);
  const Deployment after = MakeDeployment(p.plan, f.spec, p.topology, weights, o);
  EXPECT_NE(after.schedule_id, before.schedule_id);
  EXPECT_EQ(after.sampling_chip, static_cast<uint32_t>(spare));
  // Every chip in both keeps its place and its shard; the spare gets the failed chip's.
  std::map<uint32_t, const ChipDeployment*> old;
  for (const ChipDeployment& c : before.chips) old[c.chip] = &c;
  bool spare_seen = false;
  for (const ChipDeployment& c : after.chips) {
    EXPECT_NE(c.chip, static_cast<uint32_t>(failed));
    const uint32_t was = c.chip == static_cast<uint32_t>(spare) ? failed : c.chip;
    spare_seen |= c.chip == static_cast<uint32_t>(spare);
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

TEST(Failover, NoSpareLeftNamesTheChip) {
  Fixture f(2, 2);
  const topology::ChipId failed = f.plan.stages[0].chips[0];
  for (const topology::Chip& c : f.topo.chips()) {
    if (c.spare) f.topo.SetChipDown(c.id, true);
  }
  f.plan.system.topology = f.topo;
  EXPECT_TRUE(ChooseSpare(f.plan, f.topo, failed).chips.empty());
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
