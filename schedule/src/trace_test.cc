#include "lockstep/schedule/trace.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lockstep::schedule {
namespace {

TEST(Trace, ValidJsonOrderedTimesEveryFlowHasBothEnds) {
  const partition::ModelSpec spec = testing::SmallModel(10);
  const topology::Topology topo = topology::GenerateSystem(topology::LpuV1(), 2);
  const partition::Plan plan = testing::LayoutPlan(
      spec, topo, {{4, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}});
  ScheduleOptions o;
  o.sequences = 1;
  const GlobalSchedule s = Compile(plan, spec, topo, o);
  SimulateOptions so;
  so.jitter = 0.1;
  const SimResult r = Simulate(s, topo, so);
  for (const std::string& text : {TraceJson(s), TraceJson(s, &r)}) {
    const nlohmann::json j = nlohmann::json::parse(text);  // throws when not valid JSON
    ASSERT_TRUE(j.contains("traceEvents"));
    double last = -1;
    std::map<int64_t, int> starts, finishes;
    size_t slices = 0, chip_tracks = 0, link_tracks = 0;
    for (const auto& e : j["traceEvents"]) {
      const std::string ph = e["ph"];
      if (ph == "M") {
        if (e["name"] == "thread_name") (e["pid"] == 1 ? chip_tracks : link_tracks) += 1;
        continue;
      }
      const double ts = e["ts"];
      EXPECT_GE(ts, last);
      last = ts;
      if (ph == "s") ++starts[e["id"].get<int64_t>()];
      if (ph == "f") ++finishes[e["id"].get<int64_t>()];
      if (ph == "X") {
        ++slices;
        EXPECT_GE(e["dur"].get<double>(), 0.0);
      }
    }
    EXPECT_EQ(chip_tracks, s.programs.size());
    EXPECT_EQ(link_tracks, s.links.size());
    EXPECT_GE(slices, s.instruction_count());
    ASSERT_FALSE(starts.empty());
    EXPECT_EQ(starts, finishes);  // each flow id once at each end
    for (const auto& [id, n] : starts) EXPECT_EQ(n, 1) << "flow " << id;
  }
}

}  // namespace
}  // namespace lockstep::schedule
