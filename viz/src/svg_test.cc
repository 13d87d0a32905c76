#include "lockstep/viz/svg.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/topology/generators.h"

namespace lockstep::viz {
namespace {

partition::ModelSpec SmallModel(int64_t layers) {
  partition::ModelSpec m;
  m.name = "small";
  m.model_type = "llama";
  m.hidden_size = 1024;
  m.intermediate_size = 2048;
  m.num_layers = layers;
  m.num_heads = 16;
  m.num_kv_heads = 4;
  m.head_dim = 64;
  m.vocab_size = 1024;
  m.max_position_embeddings = 4096;
  return m;
}

partition::Plan PlanOn(const topology::Topology& topo, int64_t layers,
                       std::vector<std::pair<int64_t, int>> layout) {
  partition::PlanOptions o;
  o.layout = std::move(layout);
  o.workload.context = 512;
  return partition::MakePlan(SmallModel(layers), topo, o);
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Every element opened is closed, in order (the XML is well formed as far as tags go).
bool Balanced(const std::string& svg) {
  std::vector<std::string> open;
  for (size_t at = svg.find('<'); at != std::string::npos; at = svg.find('<', at + 1)) {
    const size_t end = svg.find('>', at);
    if (end == std::string::npos) return false;
    const std::string tag = svg.substr(at + 1, end - at - 1);
    if (tag.empty() || tag[0] == '?') continue;
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) return false;
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
  }
  return open.empty();
}

TEST(PlanSvg, DrawsEveryChipByStageWithGroupsSparesDownChipsAndRoutes) {
  topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  topo.SetChipDown(60);  // an unused chip of node 7
  const partition::Plan plan = PlanOn(topo, 6, {{4, 8}, {3, 8}, {1, 4}});
  const std::string svg = PlanSvg(plan);
  EXPECT_TRUE(Balanced(svg));
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(Count(svg, "<rect class=\"chip"), 72u);  // every chip, one square each
  EXPECT_EQ(Count(svg, "<rect class=\"chip spare"), 8u);
  EXPECT_EQ(Count(svg, "<rect class=\"chip down"), 1u);
  EXPECT_EQ(Count(svg, "class=\"down-mark\""), 1u);
  for (int s = 0; s < 3; ++s) {
    const size_t tp = static_cast<size_t>(plan.stages[static_cast<size_t>(s)].tp);
    EXPECT_EQ(Count(svg, "data-stage=\"" + std::to_string(s) + "\"><title>"), tp) << s;
    EXPECT_NE(svg.find("stage " + std::to_string(s) + ": "), std::string::npos);  // legend
  }
  EXPECT_EQ(Count(svg, "class=\"tp-group\""), 3u);  // every group inside one node
  EXPECT_EQ(Count(svg, "<polyline class=\"route\""), 2u);
  EXPECT_EQ(Count(svg, "<polyline class=\"route token\""), 1u);
  EXPECT_NE(svg.find("class=\"legend\""), std::string::npos);
  EXPECT_EQ(svg.find("too many to draw"), std::string::npos);
  EXPECT_EQ(PlanSvg(plan), svg);  // deterministic
}

TEST(PlanSvg, TheLargestSystemIsDrawnByNodeAndSaysSo) {
  const topology::Topology topo = topology::GenerateSystem(topology::LpuV1(), 145);
  const partition::Plan plan = PlanOn(topo, 6, {{4, 16}, {4, 8}});
  const std::string svg = PlanSvg(plan);
  EXPECT_TRUE(Balanced(svg));
  EXPECT_EQ(Count(svg, "<rect class=\"chip"), 0u);
  // One square per node (nodes with two stages split in two).
  EXPECT_GE(Count(svg, "<rect class=\"node-cell"), 1305u);
  EXPECT_LE(Count(svg, "<rect class=\"node-cell"), 1305u + 2u);
  EXPECT_EQ(Count(svg, "<rect class=\"node-cell spare"), 145u);
  EXPECT_NE(svg.find("10,440 chips are too many to draw one by one: each square is a node"),
            std::string::npos);
  EXPECT_EQ(Count(svg, "class=\"tp-group\""), 3u);  // TP 16 over two nodes: outlined in both
}

struct Simulated {
  partition::Plan plan;
  schedule::CompactSchedule schedule;
  schedule::SimResult run;
};

Simulated Simulate(const topology::Topology& topo, int64_t layers,
                   std::vector<std::pair<int64_t, int>> layout, int64_t sequences) {
  Simulated s;
  s.plan = PlanOn(topo, layers, std::move(layout));
  schedule::ScheduleOptions o;
  o.sequences = sequences;
  s.schedule = schedule::CompileCompact(s.plan, o);
  schedule::SimulateOptions so;
  so.link_params = s.plan.link_params;
  s.run = schedule::Simulate(s.schedule, partition::PlanTopology(s.plan), so);
  return s;
}

TEST(GanttSvg, OnePeriodByChipWithEveryKindAndTheCriticalPath) {
  const Simulated x = Simulate(topology::GenerateRack(topology::LpuV1()), 6, {{4, 8}, {4, 8}}, 3);
  ASSERT_TRUE(x.run.ok);
  const std::string svg = GanttSvg(x.plan, x.schedule, x.run);
  EXPECT_TRUE(Balanced(svg));
  // A row per chip with instructions, labelled with the chip.
  size_t chips = 0;
  for (const schedule::CompactChip& c : x.schedule.chips) {
    chips += !c.bodies.back().empty();
    EXPECT_NE(svg.find(">chip " + std::to_string(c.chip) + " "), std::string::npos);
  }
  EXPECT_GE(Count(svg, "class=\"row\""), chips / 2);
  for (const char* kind : {"compute", "reduce", "send", "receive"}) {
    EXPECT_GT(Count(svg, std::string("class=\"bar ") + kind + "\""), 0u) << kind;
  }
  EXPECT_GT(Count(svg, "class=\"critical\""), 10u);
  EXPECT_LE(Count(svg, "class=\"critical\""), x.run.critical_path.size());
  EXPECT_EQ(Count(svg, "class=\"critical-path\""), 1u);
  EXPECT_NE(svg.find("3 sequence slots"), std::string::npos);
  EXPECT_NE(svg.find("class=\"legend\""), std::string::npos);
  EXPECT_EQ(GanttSvg(x.plan, x.schedule, x.run), svg);
}

TEST(GanttSvg, ManyChipsAreDrawnAsOneRowPerStageAndSaySo) {
  std::vector<std::pair<int64_t, int>> layout(13, {1, 8});  // 104 chips
  const Simulated x = Simulate(topology::GenerateSystem(topology::LpuV1(), 2), 11, layout, 2);
  ASSERT_TRUE(x.run.ok);
  const std::string svg = GanttSvg(x.plan, x.schedule, x.run);
  EXPECT_TRUE(Balanced(svg));
  EXPECT_NE(svg.find("chips are too many for a row each: one row per stage"), std::string::npos);
  for (int s = 0; s < 13; ++s) {
    EXPECT_NE(svg.find(">stage " + std::to_string(s) + " (chip "), std::string::npos) << s;
  }
  EXPECT_EQ(svg.find(">chip "), std::string::npos);
}

TEST(GanttSvg, RefusesARunWithoutTimes) {
  Simulated x = Simulate(topology::GenerateNode(topology::LpuV1()), 6, {{8, 4}}, 1);
  x.run.instance_start_ns.clear();
  x.run.instance_end_ns.clear();
  EXPECT_THROW(GanttSvg(x.plan, x.schedule, x.run), Error);
}

}  // namespace
}  // namespace lockstep::viz
