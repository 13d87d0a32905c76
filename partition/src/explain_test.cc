#include <gtest/gtest.h>

#include <filesystem>

#include "lockstep/common/error.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/generators.h"

namespace lockstep::partition {
namespace {

ModelSpec Example(const std::string& name) {
  return LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" / "models" / name);
}

// The shares of every stage add up to exactly what the plan charges for it, so the token's
// shares add up to the predicted token latency.
void ExpectSharesAddUp(const Plan& plan) {
  TimeShares token;
  for (const StagePlan& st : plan.stages) {
    const TimeShares s = StageShares(plan, st.index);
    EXPECT_EQ(s.total(), st.stage_ns + st.send_ns) << "stage " << st.index;
    token += s;
  }
  EXPECT_EQ(token.total(), plan.predicted.token_latency_ns);
}

TEST(ExplainTest, StageSharesAddUpToTheStageTime) {
  PlanOptions o;
  o.workload.dtype = Dtype::kInt8;
  topology::RackShape shape;
  shape.spare_nodes = 0;
  const Plan big =
      MakePlan(Example("llama-2-70b"), topology::GenerateSystem(topology::LpuV1(), 8, shape), o);
  ExpectSharesAddUp(big);
  // Decode at batch 1 on lpu-v1: weights dominate, then the fixed latencies and hops; the
  // compute share is small (one use per weight).
  TimeShares token;
  for (const StagePlan& st : big.stages) token += StageShares(big, st.index);
  EXPECT_GT(token.weight_stream_ns, token.total() / 2);
  EXPECT_GT(token.fixed_ns, 0);
  EXPECT_GT(token.link_latency_ns, 0);
  EXPECT_LT(token.compute_ns, token.total() / 20);

  // A TP 16 stage (two nodes: ring all-reduce) and a single-stage plan (no send).
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  o.tp = 16;
  ExpectSharesAddUp(MakePlan(Example("llama-2-7b"), rack, o));
  o.tp.reset();
  o.workload.dtype = Dtype::kFp16;
  ExpectSharesAddUp(MakePlan(Example("tiny-llama"), topology::GenerateNode(topology::LpuV1()), o));
  // MoE.
  o.workload.dtype = Dtype::kInt8;
  ExpectSharesAddUp(
      MakePlan(Example("mixtral-8x7b"), topology::GenerateSystem(topology::LpuV1(), 4), o));
}

TEST(ExplainTest, FixedSharesGrowWithTheFills) {
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  PlanOptions o;
  o.workload.dtype = Dtype::kInt8;
  o.tp = 8;
  o.pp = 8;
  const Plan base = MakePlan(Example("llama-2-7b"), rack, o);
  o.chip_params = LpuV1CostParams();
  o.chip_params->matrix_fill_ns *= 2;
  const Plan slower = MakePlan(Example("llama-2-7b"), rack, o);
  TimeShares a, b;
  for (const StagePlan& st : base.stages) a += StageShares(base, st.index);
  for (const StagePlan& st : slower.stages) b += StageShares(slower, st.index);
  // Every matrix pass of the model pays the fill once more, wherever its stage is.
  int64_t passes = 0;
  for (const OpCost& op : ModelOps(Example("llama-2-7b"), o.workload, 8))
    passes += op.matrix_passes;
  EXPECT_EQ(b.fixed_ns - a.fixed_ns, passes * LpuV1CostParams().matrix_fill_ns);
  EXPECT_EQ(b.weight_stream_ns, a.weight_stream_ns);
  EXPECT_THROW(StageShares(base, 8), Error);
}

}  // namespace
}  // namespace lockstep::partition
