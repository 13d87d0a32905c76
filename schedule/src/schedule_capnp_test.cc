#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "lockstep/common/error.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/simulate.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

GlobalSchedule Sample() {
  const partition::ModelSpec spec = testing::SmallModel();
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  ScheduleOptions o;
  o.tokens = 2;
  o.prefill = true;
  o.prompt_len = 100;
  o.prefill_chunk = 64;
  return Compile(testing::LayoutPlan(spec, topo, {{3, 8}, {3, 8}, {2, 4}}), spec, topo, o);
}

TEST(ScheduleCapnp, RoundTripGivesTheSameScheduleAndBytes) {
  const GlobalSchedule s = Sample();
  const std::string bytes = SerializeSchedule(s);
  const GlobalSchedule back = ParseSchedule(bytes, "mem");
  EXPECT_EQ(back, s);
  EXPECT_EQ(SerializeSchedule(back), bytes);
  // Byte-identical across compiles.
  EXPECT_EQ(SerializeSchedule(Sample()), bytes);
  // What a worker reads is what the simulator ran.
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  EXPECT_EQ(Simulate(back, topo).metrics.makespan_ns, Simulate(s, topo).metrics.makespan_ns);
}

TEST(ScheduleCapnp, FilesRoundTripAndJsonIsTheJsonForm) {
  const GlobalSchedule s = Sample();
  const std::string path = ::testing::TempDir() + "lockstep_schedule_test.schedule";
  WriteScheduleFile(path, s);
  EXPECT_EQ(ReadScheduleFile(path), s);
  const std::string json = ::testing::TempDir() + "lockstep_schedule_test.json";
  WriteScheduleFile(json, s);
  std::ifstream in(json, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, ScheduleToJson(s));
  std::filesystem::remove(path);
  std::filesystem::remove(json);
  try {
    ReadScheduleFile(path);
    FAIL() << "read a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
}

TEST(ScheduleCapnp, RejectsTruncatedAndGarbledFiles) {
  const std::string bytes = SerializeSchedule(Sample());
  std::string flipped = bytes;
  // Garble the root pointer region and some of the body.
  for (size_t i = 8; i < 16; ++i) flipped[i] = static_cast<char>(0xff);
  for (const std::string& bad : {std::string(), std::string("schedule"), std::string(7, 'x'),
                                 bytes.substr(0, bytes.size() / 2 / 8 * 8), bytes.substr(0, 64),
                                 std::string(64, '\xff'), flipped}) {
    try {
      ParseSchedule(bad, "bad.schedule");
      ADD_FAILURE() << "accepted " << bad.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
      EXPECT_EQ(std::string(e.what()).rfind("bad.schedule: not a Lockstep schedule", 0), 0u)
          << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace lockstep::schedule
