#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "lockstep/common/error.h"
#include "lockstep/partition/plan.h"
#include "lockstep/proto/plan.capnp.h"
#include "lockstep/topology/generators.h"

namespace lockstep::partition {
namespace {

Plan SamplePlan(Objective objective) {
  const ModelSpec spec = LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" /
                                       "models" / "llama-2-7b");
  PlanOptions o;
  o.objective = objective;
  o.workload.batch = 2;
  o.workload.context = 2048;
  return MakePlan(spec, topology::GenerateRack(topology::LpuV1()), o);
}

TEST(PlanCapnpTest, RoundTripGivesTheSamePlanAndBytes) {
  for (Objective objective : {Objective::kLatency, Objective::kThroughput}) {
    const Plan plan = SamplePlan(objective);
    const std::string bytes = SerializePlan(plan);
    const Plan back = ParsePlan(bytes, "mem");
    EXPECT_EQ(back, plan);
    EXPECT_EQ(SerializePlan(back), bytes);
    EXPECT_EQ(PlanToJson(back), PlanToJson(plan));
  }
}

TEST(PlanCapnpTest, AModelSpecTravelsAloneInThePlansCodec) {
  ModelSpec spec = LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" /
                                 "models" / "llama-3.1-405b");
  ASSERT_TRUE(spec.rope_scaling.has_value());
  EXPECT_EQ(ParseModelSpecBytes(SerializeModelSpec(spec), "mem"), spec);
  EXPECT_THROW(ParseModelSpecBytes("garbage!", "mem"), Error);
  ModelSpec empty;
  try {
    ParseModelSpecBytes(SerializeModelSpec(empty), "assignment");
    FAIL() << "a spec without layers was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("assignment: the model spec is not a valid model"),
              std::string::npos)
        << e.what();
  }
}

TEST(PlanCapnpTest, FilesRoundTrip) {
  const Plan plan = SamplePlan(Objective::kLatency);
  const std::string path = testing::TempDir() + "lockstep_plan_test.plan";
  WritePlanFile(path, plan);
  EXPECT_EQ(ReadPlanFile(path), plan);
  std::ifstream in(path, std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(on_disk, SerializePlan(plan));
  std::filesystem::remove(path);
  EXPECT_THROW(ReadPlanFile(path), Error);
}

TEST(PlanCapnpTest, RejectsBytesThatAreNotAPlan) {
  const std::string bytes = SerializePlan(SamplePlan(Objective::kLatency));
  for (const std::string& bad :
       {std::string(), std::string("hello"), bytes.substr(0, bytes.size() / 2 / 8 * 8),
        std::string(64, '\xff')}) {
    try {
      ParsePlan(bad, "bad.plan");
      ADD_FAILURE() << "accepted " << bad.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
      EXPECT_EQ(std::string(e.what()).rfind("bad.plan: not a Lockstep plan", 0), 0u) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
}

TEST(PlanCapnpTest, CarriesModelTopologyAndCostFigures) {
  // A rack with a down chip and link and non-default cost figures; then the spec's rarer fields
  // (MoE, RoPE scaling, sliding window, biases, tied embeddings): everything must come back.
  ModelSpec spec = LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" /
                                 "models" / "llama-2-7b");
  topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  topo.SetChipDown(3);
  topo.SetLinkDown(100);
  PlanOptions o;
  o.chip_params = CostParamsFor(topology::LpuV1());
  o.chip_params->op_overhead_ns = 321;
  o.chip_params->matrix_fill_ns = 45;
  o.chip_params->vector_fill_ns = 46;
  o.chip_params->layer_sync_ns = 47;
  o.link_params = LinkCostParamsFor(topology::LpuV1());
  o.link_params->collective_step_overhead_ns = 77;
  o.workload.context = 512;
  Plan plan = MakePlan(spec, topo, o);
  EXPECT_EQ(plan.spec, spec);
  EXPECT_EQ(TopologyDifference(PlanTopology(plan), topo), "");
  spec.num_experts = 2;
  spec.experts_per_token = 1;
  spec.sliding_window = 4096;
  spec.qkv_bias = true;
  spec.tie_word_embeddings = true;
  spec.rope_scaling = RopeScaling{.type = "llama3",
                                  .factor = 8,
                                  .low_freq_factor = 1,
                                  .high_freq_factor = 4,
                                  .original_max_position_embeddings = 8192};
  spec.torch_dtype = Dtype::kBf16;
  plan.spec = spec;
  const Plan back = ParsePlan(SerializePlan(plan), "mem");
  EXPECT_EQ(back.spec, spec);
  EXPECT_EQ(back.chip_params.op_overhead_ns, 321);
  EXPECT_EQ(back.chip_params.matrix_fill_ns, 45);
  EXPECT_EQ(back.chip_params.vector_fill_ns, 46);
  EXPECT_EQ(back.chip_params.layer_sync_ns, 47);
  EXPECT_EQ(back.link_params.collective_step_overhead_ns, 77);
  EXPECT_TRUE(PlanTopology(back).chip(3).down);
  EXPECT_TRUE(PlanTopology(back).link(100).down);
  EXPECT_EQ(TopologyDifference(PlanTopology(back), topo), "");
  EXPECT_EQ(back, plan);
  EXPECT_EQ(SerializePlan(back), SerializePlan(plan));
}

TEST(PlanCapnpTest, DifferencesNameWhatDiffers) {
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  topology::Topology other = rack;
  EXPECT_EQ(TopologyDifference(rack, other), "");
  other.SetChipDown(9);
  EXPECT_EQ(TopologyDifference(rack, other), "chip 9 is up in the plan's topology, down in 'rack'");
  other = rack;
  other.SetLinkDown(5);
  EXPECT_NE(TopologyDifference(rack, other).find("link 5 is up"), std::string::npos);
  EXPECT_NE(TopologyDifference(rack, topology::GenerateNode(topology::LpuV1())), "");
  ModelSpec a = SamplePlan(Objective::kLatency).spec;
  ModelSpec b = a;
  b.name = "another path";
  EXPECT_EQ(ModelSpecDifference(a, b), "");
  b.num_layers = 3;
  EXPECT_EQ(ModelSpecDifference(a, b), "num_hidden_layers 32 vs 3");
}

TEST(PlanCapnpTest, APlanWithoutItsModelAndTopologyAsksToReplan) {
  // The layout of plans written before they carried their inputs: only the old fields.
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<proto::Plan>();
  root.setModel("llama-2-7b");
  root.setTopology("rack");
  root.initStages(1)[0].setTp(8);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  const std::string bytes(reinterpret_cast<const char*>(words.asBytes().begin()),
                          words.asBytes().size());
  try {
    ParsePlan(bytes, "old.plan");
    FAIL() << "accepted an old plan";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "plan old.plan was written without its model/topology; re-run lockstep plan");
  }
}

TEST(PlanCapnpTest, A145RackSystemStaysAFewMegabytes) {
  Plan plan = SamplePlan(Objective::kLatency);
  plan.system.topology = topology::GenerateSystem(topology::LpuV1(), 145);
  const std::string bytes = SerializePlan(plan);
  EXPECT_LT(bytes.size(), 4u << 20) << bytes.size();
  EXPECT_EQ(ParsePlan(bytes, "big").system, plan.system);
}

}  // namespace
}  // namespace lockstep::partition
