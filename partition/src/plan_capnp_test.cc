#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "lockstep/common/error.h"
#include "lockstep/partition/plan.h"
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

}  // namespace
}  // namespace lockstep::partition
