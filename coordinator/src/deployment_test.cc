// The deployment checks the schedule with the independent validator before any shard is cut:
// a hand-broken schedule is refused with the validator's finding, naming the chip and the step.
#include "lockstep/coordinator/deployment.h"

#include <gtest/gtest.h>

#include "lockstep/common/error.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"

namespace lockstep::coordinator {
namespace {

partition::ModelSpec Spec() {
  return partition::ParseModelSpec(
      R"({"_name_or_path": "deploy-test", "model_type": "llama", "hidden_size": 128,
          "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 2,
          "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 96,
          "max_position_embeddings": 32})",
      "deploy-test");
}

struct Fixture {
  partition::ModelSpec spec = Spec();
  topology::Topology topo = topology::GenerateNode(*topology::ChipPreset("lpu-v1"));
  partition::Plan plan;
  schedule::GlobalSchedule schedule;
  Fixture() {
    partition::PlanOptions o;
    o.tp = 2;
    o.pp = 2;
    plan = partition::MakePlan(spec, topo, o);
    schedule::ScheduleOptions so;
    so.tokens = 1;
    so.sequences = 2;
    schedule = schedule::Compile(plan, spec, topo, so);
  }
};

TEST(Deployment, ValidScheduleDeploys) {
  const Fixture f;
  EXPECT_NO_THROW(CheckSchedule(f.schedule, f.topo, {}));
  const Deployment d = MakeDeployment(f.plan, f.spec, f.topo,
                                      model::GenerateLlamaWeights(f.spec, 1), DeployOptions{});
  EXPECT_EQ(d.chips.size(), 4u);
}

TEST(Deployment, OneSequenceInFlightTakesItsOwnStep) {
  // Two stages, two slots: the deployment's step carries both slots' tokens, the second
  // overlapping the first's second stage. One sequence in flight computes half of it, and its
  // step is its two stages in a row: shorter, though more than half (no overlap).
  const Fixture f;
  const Deployment d = MakeDeployment(f.plan, f.spec, f.topo,
                                      model::GenerateLlamaWeights(f.spec, 1), DeployOptions{});
  ASSERT_EQ(d.slots, 2);
  const ScheduleStep all = InFlightStep(f.plan, f.spec, f.topo, 2);
  EXPECT_EQ(all.step_ns, d.schedule_step_ns);
  EXPECT_EQ(all.compute_ns, d.schedule_compute_ns);
  const ScheduleStep one = InFlightStep(f.plan, f.spec, f.topo, 1);
  EXPECT_EQ(2 * one.compute_ns, d.schedule_compute_ns);
  EXPECT_LT(one.step_ns, d.schedule_step_ns);
  EXPECT_GT(2 * one.step_ns, d.schedule_step_ns);
  EXPECT_THROW(InFlightStep(f.plan, f.spec, f.topo, 0), Error);
}

TEST(Deployment, BrokenScheduleIsRefusedNamingChipAndStep) {
  Fixture f;
  // A compute instruction pulled before its inputs can be there: a dependency violated.
  schedule::ChipProgram& p = f.schedule.programs.back();
  schedule::Instruction* moved = nullptr;
  for (schedule::Instruction& in : p.instructions) {
    if (in.kind == schedule::InstrKind::kCompute && !in.deps.empty()) {
      moved = &in;
      break;
    }
  }
  ASSERT_NE(moved, nullptr);
  const int64_t shift = moved->start_ns;
  moved->start_ns -= shift;
  moved->end_ns -= shift;
  try {
    CheckSchedule(f.schedule, f.topo, {});
    FAIL() << "a broken schedule passed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    const std::string what = e.what();
    EXPECT_NE(what.find("fails validation (nothing deployed)"), std::string::npos) << what;
    EXPECT_NE(what.find("chip " + std::to_string(p.chip)), std::string::npos) << what;
    EXPECT_NE(what.find("token 0 sequence"), std::string::npos) << what;  // the step
  }
}

}  // namespace
}  // namespace lockstep::coordinator
