#include "lockstep/model/layout_from_plan.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "lockstep/common/error.h"
#include "lockstep/model/reference.h"
#include "lockstep/topology/generators.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;
using partition::Plan;

ModelSpec TinyLlamaExample() {
  return partition::LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" /
                                  "models" / "tiny-llama");
}

Plan PlanFor(const ModelSpec& spec, int tp, int pp,
             std::vector<std::pair<int64_t, int>> units = {}) {
  partition::PlanOptions o;
  o.workload.dtype = Dtype::kFp16;
  o.workload.context = 64;
  if (units.empty()) {
    o.tp = tp;
    o.pp = pp;
  }
  o.layout = std::move(units);
  return partition::MakePlan(spec, topology::GenerateRack(topology::LpuV1()), o);
}

// Greedy decode of a few tokens: the plan's layout against the reference, bit for bit.
void ExpectSameLogits(const ModelSpec& spec, const ModelLayout& layout) {
  const LlamaWeights weights = GenerateLlamaWeights(spec, 3);
  const ReferenceModel reference(spec, weights);
  const ShardedModel sharded(spec, weights, layout);
  KvCache rc = reference.NewCache(16);
  ShardedKvCache sc = sharded.NewCache(16);
  std::vector<int32_t> tokens = {5, 7, 11};
  for (int step = 0; step < 4; ++step) {
    std::vector<SequenceStep> r = {{&rc, tokens}};
    std::vector<ShardedStep> s = {{&sc, tokens}};
    const std::vector<float> want = reference.Forward(r)[0], got = sharded.Forward(s)[0];
    ASSERT_EQ(want.size(), got.size());
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
        << layout.ToString() << " step " << step;
    tokens = {static_cast<int32_t>(std::max_element(want.begin(), want.end()) - want.begin())};
  }
}

TEST(LayoutFromPlan, PartitionerPlansForTinyLlamaRunBitIdentical) {
  const ModelSpec spec = TinyLlamaExample();
  // Every degree the partitioner allows for this model (4 heads, 2 KV heads, intermediate 172),
  // with the embedding and head in their own stages or sharing one with the layers.
  for (int tp : {1, 2, 4}) {
    for (int pp : {1, 2, 4}) {
      const Plan plan = PlanFor(spec, tp, pp);
      const ModelLayout layout = LayoutFromPlan(plan, spec);
      for (const StageLayout& s : layout.stages) EXPECT_EQ(s.tp, tp) << layout.ToString();
      EXPECT_EQ(layout.EmbedTp(), tp);
      EXPECT_EQ(layout.HeadTp(), tp);
      ExpectSameLogits(spec, layout);
    }
  }
}

TEST(LayoutFromPlan, EmbeddingAndHeadStagesKeepTheirDegrees) {
  const ModelSpec spec = TinyLlamaExample();
  // Units: embedding alone at TP 4, both layers at TP 2, the head alone at TP 1.
  const Plan plan = PlanFor(spec, 0, 0, {{1, 4}, {2, 2}, {1, 1}});
  ASSERT_EQ(plan.stages.size(), 3u);
  const ModelLayout layout = LayoutFromPlan(plan, spec);
  ASSERT_EQ(layout.stages.size(), 1u);
  EXPECT_EQ(layout.stages[0].first_layer, 0);
  EXPECT_EQ(layout.stages[0].end_layer, 2);
  EXPECT_EQ(layout.stages[0].tp, 2);
  EXPECT_EQ(layout.EmbedTp(), 4);
  EXPECT_EQ(layout.HeadTp(), 1);
  EXPECT_EQ(layout.ToString(), "embed x4 [0,2)x2 head x1");
  ExpectSameLogits(spec, layout);
}

TEST(LayoutFromPlan, RejectsAPlanForAnotherModel) {
  const ModelSpec spec = TinyLlamaExample();
  const Plan plan = PlanFor(spec, 1, 1);
  ModelSpec deeper = spec;
  deeper.num_layers = 3;
  try {
    LayoutFromPlan(plan, deeper);
    ADD_FAILURE() << "accepted a 2-layer plan for a 3-layer model";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    const std::string m = e.what();
    EXPECT_NE(m.find("'" + spec.name + "' with 2 layers"), std::string::npos) << m;
    EXPECT_NE(m.find("with 3 layers"), std::string::npos) << m;
  }
  ModelSpec renamed = spec;
  renamed.name = "other";
  EXPECT_THROW(LayoutFromPlan(plan, renamed), Error);
  Plan gap = plan;
  gap.stages[0].end_unit -= 1;
  EXPECT_THROW(LayoutFromPlan(gap, spec), Error);
}

}  // namespace
}  // namespace lockstep::model
