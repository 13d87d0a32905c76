#include <gtest/gtest.h>

#include <map>
#include <utility>

#include "lockstep/common/error.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/schedule_file.h"
#include "lockstep/schedule/simulate.h"
#include "lockstep/schedule/validate.h"
#include "test_util.h"

namespace lockstep::schedule {
namespace {

using testing::LayoutPlan;
using testing::SmallModel;

struct Case {
  const char* name;
  int64_t layers;
  int racks;  // 0 = one node
  std::vector<std::pair<int64_t, int>> layout;
};

std::vector<Case> Cases() {
  return {
      {"tp1_pp1", 6, 0, {{8, 1}}},
      {"tp1_pp3", 6, 0, {{3, 1}, {3, 1}, {2, 1}}},
      {"tp2_pp4", 6, 0, {{2, 2}, {2, 2}, {2, 2}, {2, 2}}},
      {"tp4_pp2", 6, 0, {{5, 4}, {3, 4}}},
      {"tp8_pp1", 6, 0, {{8, 8}}},
      {"tp16_two_nodes", 6, 1, {{4, 16}, {4, 16}}},
      // 9 stages of TP 8 overflow rack 0's 64 usable chips: the last stage sits in rack 1.
      {"multi_rack",
       10,
       2,
       {{4, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}}},
  };
}

topology::Topology TopologyFor(const Case& c) {
  if (c.racks == 0) return topology::GenerateNode(topology::LpuV1());
  if (c.racks == 1) return topology::GenerateRack(topology::LpuV1());
  return topology::GenerateSystem(topology::LpuV1(), c.racks);
}

TEST(Compile, ValidAndSimulatorReproducesPlannedTimes) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const partition::ModelSpec spec = SmallModel(c.layers);
    const topology::Topology topo = TopologyFor(c);
    const partition::Plan plan = LayoutPlan(spec, topo, c.layout);
    ScheduleOptions o;
    o.tokens = 3;
    o.sequences = 2;
    const GlobalSchedule s = Compile(plan, spec, topo, o);
    EXPECT_EQ(s.sequences, 2);
    const std::vector<std::string> problems = Validate(s, topo);
    EXPECT_TRUE(problems.empty()) << problems.front();
    const SimResult r = Simulate(s, topo);
    ASSERT_TRUE(r.ok) << r.failure;
    // Self-timed, nothing runs later than planned (the folded reservation tables may leave
    // gaps for copies that run elsewhere in time).
    for (size_t p = 0; p < s.programs.size(); ++p) {
      for (size_t i = 0; i < s.programs[p].instructions.size(); ++i) {
        const Instruction& in = s.programs[p].instructions[i];
        ASSERT_LE(r.start_ns[p][i], in.start_ns)
            << "chip " << s.programs[p].chip << " " << DescribeStep(in);
      }
    }
    EXPECT_LE(r.metrics.makespan_ns, s.makespan_ns);
    // One sequence, one token: nothing folds, and the simulator reproduces every planned time.
    ScheduleOptions one;
    one.sequences = 1;
    const GlobalSchedule s1 = Compile(plan, spec, topo, one);
    const SimResult r1 = Simulate(s1, topo);
    ASSERT_TRUE(r1.ok) << r1.failure;
    for (size_t p = 0; p < s1.programs.size(); ++p) {
      for (size_t i = 0; i < s1.programs[p].instructions.size(); ++i) {
        const Instruction& in = s1.programs[p].instructions[i];
        ASSERT_EQ(r1.start_ns[p][i], in.start_ns)
            << "chip " << s1.programs[p].chip << " " << DescribeStep(in);
        ASSERT_EQ(r1.end_ns[p][i], in.end_ns)
            << "chip " << s1.programs[p].chip << " " << DescribeStep(in);
      }
    }
    EXPECT_EQ(r1.metrics.token_latency_ns.value, static_cast<double>(s1.token_latency_ns));
    EXPECT_GE(r.metrics.token_latency_ns.ratio, 1.0);
  }
}

TEST(Compile, OneNodeLatencyEqualsCostModelPrediction) {
  // Inside one fully connected node every transfer is one hop on its own link, so the compiled
  // pass must take exactly what the partitioner's cost model predicts.
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  for (const auto& layout : std::vector<std::vector<std::pair<int64_t, int>>>{
           {{8, 1}}, {{4, 2}, {4, 2}}, {{8, 8}}, {{5, 4}, {3, 4}}}) {
    const partition::Plan plan = LayoutPlan(spec, topo, layout);
    ScheduleOptions o;
    o.sequences = 1;
    const GlobalSchedule s = Compile(plan, spec, topo, o);
    int64_t expected = plan.predicted.token_latency_ns;
    if (plan.stages.size() == 1 && plan.stages[0].tp > 1) {
      // One stage: the cost model sends nothing, but the sampled token still goes from rank 0
      // to the other ranks (each embeds it from its slice of the vocabulary): one hop.
      expected += HopTimeNs(topo.link(0), plan.workload.batch * 4, {});
    }
    EXPECT_EQ(s.token_latency_ns, expected) << plan.stages.size() << " stages";
  }
}

TEST(Compile, PrefillPassGivesTimeToFirstToken) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{4, 2}, {4, 2}});
  ScheduleOptions o;
  o.prefill = true;
  o.tokens = 2;
  o.sequences = 2;
  const GlobalSchedule s = Compile(plan, spec, topo, o);
  EXPECT_EQ(s.prompt_len, plan.prompt_len);
  // The cost model's prefill prediction plus the sampled token's one hop back to stage 0.
  EXPECT_EQ(s.time_to_first_token_ns,
            plan.predicted.time_to_first_token_ns + HopTimeNs(topo.link(0), 4, {}));
  EXPECT_TRUE(Validate(s, topo).empty());
  const SimResult r = Simulate(s, topo);
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.metrics.time_to_first_token_ns.value, static_cast<double>(s.time_to_first_token_ns));
  EXPECT_GE(r.metrics.time_to_first_token_ns.ratio, 1.0);
  // Decode steps after the prompt are as long as without it.
  ScheduleOptions d = o;
  d.prefill = false;
  d.sequences = 1;
  o.sequences = 1;
  EXPECT_EQ(Compile(plan, spec, topo, o).token_latency_ns,
            Compile(plan, spec, topo, d).token_latency_ns);
}

TEST(Compile, PromptBucketsRoundUp) {
  EXPECT_EQ(PromptBucket(1, {}), 16);
  EXPECT_EQ(PromptBucket(16, {}), 16);
  EXPECT_EQ(PromptBucket(17, {}), 32);
  EXPECT_EQ(PromptBucket(1000, {}), 1024);
  EXPECT_EQ(PromptBucket(100, {128, 512, 2048}), 128);
  EXPECT_EQ(PromptBucket(513, {128, 512, 2048}), 2048);
  EXPECT_EQ(PromptBucket(5000, {128, 512, 2048}), 6144);  // beyond: multiples of the largest
  EXPECT_THROW(PromptBucket(10, {512, 128}), Error);
  EXPECT_THROW(PromptBucket(0, {}), Error);
}

TEST(Compile, LongPromptsArePrefilledInPipelinedChunks) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{4, 2}, {4, 2}});
  ScheduleOptions one;
  one.prefill = true;
  one.sequences = 1;
  one.prompt_len = 1000;  // bucket 1024
  one.prefill_chunk = 1024;
  ScheduleOptions four = one;
  four.prefill_chunk = 256;
  const GlobalSchedule a = Compile(plan, spec, topo, one);
  const GlobalSchedule b = Compile(plan, spec, topo, four);
  EXPECT_EQ(a.prompt_bucket, 1024);
  EXPECT_EQ(a.prefill_chunks, 1);
  EXPECT_EQ(b.prefill_chunks, 4);
  EXPECT_EQ(b.prefill_chunk_tokens, 256);
  // Smaller chunks hold less activation memory at once.
  EXPECT_LT(b.prefill_peak_bytes, a.prefill_peak_bytes);
  // Four chunks pipeline over the two stages: stage 0 starts chunk 2 before stage 1 is done
  // with chunk 1.
  int64_t stage0_chunk2_start = INT64_MAX, stage1_chunk1_end = 0;
  for (const ChipProgram& p : b.programs) {
    for (const Instruction& in : p.instructions) {
      if (in.kind != InstrKind::kCompute) continue;
      if (p.stage == 0 && in.token == -3) {
        stage0_chunk2_start = std::min(stage0_chunk2_start, in.start_ns);
      }
      if (p.stage == 1 && in.token == -4)
        stage1_chunk1_end = std::max(stage1_chunk1_end, in.end_ns);
    }
  }
  EXPECT_LT(stage0_chunk2_start, stage1_chunk1_end);
  for (const GlobalSchedule* s : {&a, &b}) {
    EXPECT_TRUE(Validate(*s, topo).empty());
    const SimResult r = Simulate(*s, topo);
    ASSERT_TRUE(r.ok) << r.failure;
    // Self-timed, the chunks follow each other as soon as a stage is free: no later than the
    // plan's evenly spaced passes.
    EXPECT_LE(r.metrics.time_to_first_token_ns.value,
              static_cast<double>(s->time_to_first_token_ns));
    EXPECT_GE(r.metrics.time_to_first_token_ns.ratio, 1.0);
  }
  // Only the last chunk samples: one LM head per sequence, whatever the chunk count.
  int64_t heads = 0, chunks_seen = 0;
  for (const ChipProgram& p : b.programs) {
    for (const Instruction& in : p.instructions) {
      heads +=
          in.kind == InstrKind::kCompute && in.op == partition::OpKind::kLmHead && in.token < 0;
      chunks_seen = std::max<int64_t>(chunks_seen, -in.token);
    }
  }
  EXPECT_EQ(heads, 2);  // one per rank of the TP-2 last stage
  EXPECT_EQ(chunks_seen, 4);
}

TEST(Compile, PrefillThatCannotFitNamesTheStageAndAChunkThatWould) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{8, 1}});
  ScheduleOptions o;
  o.prefill = true;
  o.prompt_len = 1 << 22;
  o.prefill_chunk = 1 << 22;
  try {
    Compile(plan, spec, topo, o);
    FAIL() << "a 4M-token chunk fit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCannotFit);
    EXPECT_NE(std::string(e.what()).find("stage 0 cannot prefill chunks of 4194304 tokens"),
              std::string::npos)
        << e.what();
  }
}

using Counts = std::pair<size_t, size_t>;  // sends, reduces
Counts SendsReduces(size_t sends, size_t reduces) { return {sends, reduces}; }

// Per tag: sends and reduces on one chip's program.
std::map<Tag, Counts> CollectiveCounts(const ChipProgram& p) {
  std::map<Tag, Counts> n;
  for (const Instruction& in : p.instructions) {
    if (in.tag != Tag::kReduceScatter && in.tag != Tag::kAllGather && in.tag != Tag::kAllReduce) {
      continue;
    }
    n[in.tag].first += in.kind == InstrKind::kSend;
    n[in.tag].second += in.kind == InstrKind::kReduce;
  }
  return n;
}

TEST(Compile, CollectivesUseTheGroupsWiring) {
  const partition::ModelSpec spec = SmallModel();
  // 2 all-reduces per layer + the vocab-parallel embedding's.
  const size_t allreduces = 2 * 6 + 1;
  const topology::Topology node = topology::GenerateNode(topology::LpuV1());
  // TP 8 in a node, batch 1 (1 KiB partials): latency-bound, so one-shot: each chip sends its
  // whole partial to its 7 peers and reduces once per all-reduce.
  {
    const GlobalSchedule s = Compile(LayoutPlan(spec, node, {{8, 8}}), spec, node);
    const auto n = CollectiveCounts(s.programs[3]);
    ASSERT_EQ(n.size(), 1u);
    EXPECT_EQ(n.at(Tag::kAllReduce), SendsReduces(7 * allreduces, allreduces));
    for (const Instruction& in : s.programs[3].instructions) {
      if (in.kind == InstrKind::kSend && in.tag == Tag::kAllReduce && in.layer >= 0) {
        EXPECT_EQ(in.bytes, spec.hidden_size) << "a whole int8 partial";
      }
    }
  }
  // Batch 16 (16 KiB partials): bandwidth-bound at 8 chips, so reduce-scatter + all-gather of
  // 2 KiB each, one step each.
  {
    const GlobalSchedule s = Compile(LayoutPlan(spec, node, {{8, 8}}, 16), spec, node);
    const auto n = CollectiveCounts(s.programs[3]);
    EXPECT_EQ(n.count(Tag::kAllReduce), 0u);
    EXPECT_EQ(n.at(Tag::kReduceScatter), SendsReduces(7 * allreduces, allreduces));
    EXPECT_EQ(n.at(Tag::kAllGather), SendsReduces(7 * allreduces, allreduces));
  }
  // An MLP slice of 125 (not whole 64-element chunks) is column-parallel: its all-reduce must
  // be a reduce-scatter (each rank holds only its outputs' down weights), and so is the
  // attention's in the same layer — a worker tells a layer's two collectives apart by their
  // order among those of one form (partition::OneShotAllowed); the embedding stays one-shot.
  {
    partition::ModelSpec odd = spec;
    odd.intermediate_size = 1000;
    const GlobalSchedule s = Compile(LayoutPlan(odd, node, {{8, 8}}), odd, node);
    const auto n = CollectiveCounts(s.programs[3]);
    EXPECT_EQ(n.at(Tag::kAllReduce), SendsReduces(7, 1));
    EXPECT_EQ(n.at(Tag::kReduceScatter), SendsReduces(7 * 2 * 6, 2 * 6));
  }
  // TP 16 over two whole nodes, both projections row-parallel: hierarchical — per all-reduce 7
  // reduce-scatter sends to the node's peers and one Reduce, one send of the node's sum to the
  // rank of the same place in the other node (kAllReduce) and one Reduce, 7 all-gather sends and
  // one Reduce: 3 steps instead of a ring's 30.
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  {
    const partition::Plan plan = LayoutPlan(spec, rack, {{8, 16}});
    ASSERT_EQ(partition::HierarchicalNodeSize(spec, rack, plan.stages[0].chips), 8);
    const GlobalSchedule s = Compile(plan, spec, rack);
    for (const ChipProgram& p : s.programs) {
      if (p.instructions.empty()) continue;
      const auto n = CollectiveCounts(p);
      EXPECT_EQ(n.at(Tag::kReduceScatter), SendsReduces(7 * allreduces, allreduces));
      EXPECT_EQ(n.at(Tag::kAllReduce), SendsReduces(allreduces, allreduces));
      EXPECT_EQ(n.at(Tag::kAllGather), SendsReduces(7 * allreduces, allreduces));
      const topology::Chip& me = rack.chip(p.chip);
      for (const Instruction& in : p.instructions) {
        if (in.kind != InstrKind::kSend) continue;
        if (in.tag == Tag::kReduceScatter || in.tag == Tag::kAllGather) {
          EXPECT_EQ(rack.chip(in.peer).node, me.node) << "inside the node, straight to the peer";
          EXPECT_EQ(in.bytes, spec.hidden_size / 8) << "a segment of 1/8";
        }
      }
    }
    EXPECT_TRUE(Validate(s, rack).empty());
  }
  // A column-parallel MLP at TP 16 (2048 + 64 = 2112 / 16 = 132, not whole chunks): the node
  // sums cannot be exchanged, so the stage stays a ring: 15 reduce-scatter steps, one send each.
  {
    partition::ModelSpec odd = spec;
    odd.intermediate_size = 2112;
    const partition::Plan plan = LayoutPlan(odd, rack, {{8, 16}});
    EXPECT_EQ(partition::HierarchicalNodeSize(odd, rack, plan.stages[0].chips), 0);
    const auto n = CollectiveCounts(Compile(plan, odd, rack).programs[5]);
    EXPECT_EQ(n.count(Tag::kAllReduce), 0u);
    EXPECT_EQ(n.at(Tag::kReduceScatter), SendsReduces(15 * 13, 15 * 13));
  }
}

TEST(Compile, AllReduceChoiceIsOneShotOnlyWhenAllowedAndFaster) {
  // A TP 8 all-reduce of a 1 KiB partial priced both ways: one-shot saves at least a link
  // latency, and is chosen only for a fully connected group and an op that allows it.
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology node = topology::GenerateNode(topology::LpuV1());
  const topology::ChipSpec& chip = node.spec_of(0);
  const partition::LinkCostParams lp;
  const int64_t bytes = spec.hidden_size;  // int8, batch 1
  const int64_t one_shot =
      partition::AllReduceTimeNs(bytes, 8, partition::AllReduceAlgorithm::kOneShot,
                                 chip.link_bandwidth_bytes_per_s, chip.link_latency_ns, lp);
  const int64_t direct =
      partition::AllReduceTimeNs(bytes, 8, partition::AllReduceAlgorithm::kDirect,
                                 chip.link_bandwidth_bytes_per_s, chip.link_latency_ns, lp);
  EXPECT_LT(one_shot, direct);
  EXPECT_GE(direct - one_shot, chip.link_latency_ns);
  EXPECT_EQ(partition::ChooseAllReduce(bytes, 8, true, true, chip.link_bandwidth_bytes_per_s,
                                       chip.link_latency_ns, lp),
            partition::AllReduceAlgorithm::kOneShot);
  EXPECT_EQ(partition::ChooseAllReduce(bytes, 8, true, false, chip.link_bandwidth_bytes_per_s,
                                       chip.link_latency_ns, lp),
            partition::AllReduceAlgorithm::kDirect);
  EXPECT_EQ(partition::ChooseAllReduce(bytes, 8, false, true, chip.link_bandwidth_bytes_per_s,
                                       chip.link_latency_ns, lp),
            partition::AllReduceAlgorithm::kRing);
  EXPECT_EQ(partition::ChooseAllReduce(bytes, 16, false, true, chip.link_bandwidth_bytes_per_s,
                                       chip.link_latency_ns, lp, 8),
            partition::AllReduceAlgorithm::kHierarchical);
}

// The cost model prices a hierarchical all-reduce as 3 steps of a 1/node_size segment along its
// chain of hops; over two nodes of 8 (chain 1 + 3 + 1 hops) that is far below the ring's 30 steps,
// and it stays within 5% of what the compiler schedules for a stage of such all-reduces.
TEST(Compile, HierarchicalAllReduceIsPricedAsCompiled) {
  const partition::LinkCostParams lp;
  const int64_t bytes = 16384;  // a 405B int8 partial, batch 1
  const int64_t hier = partition::AllReduceTimeNs(
      bytes, 16, partition::AllReduceAlgorithm::kHierarchical, 14'000'000'000, 600, lp, 5, 8);
  const int64_t seg_ns = partition::TransferTimeNs(bytes / 8, 1, 14'000'000'000, 600, lp);
  EXPECT_EQ(hier, 5 * seg_ns + 3 * lp.collective_step_overhead_ns);
  const int64_t ring = partition::AllReduceTimeNs(bytes, 16, partition::AllReduceAlgorithm::kRing,
                                                  14'000'000'000, 600, lp, 34);
  EXPECT_LT(4 * hier, ring);

  const partition::ModelSpec spec = SmallModel();
  const topology::Topology rack = topology::GenerateRack(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, rack, {{8, 16}});
  ASSERT_GE(plan.stages[0].ring_chain_hops, 4);  // 2 + the crossing's hops
  ScheduleOptions so;
  so.sequences = 1;
  const GlobalSchedule s = Compile(plan, spec, rack, so);
  const double ratio = static_cast<double>(s.token_latency_ns) /
                       static_cast<double>(plan.predicted.token_latency_ns);
  EXPECT_GT(ratio, 0.95) << s.token_latency_ns << " vs " << plan.predicted.token_latency_ns;
  EXPECT_LT(ratio, 1.05) << s.token_latency_ns << " vs " << plan.predicted.token_latency_ns;
}

TEST(Compile, MultiRackRouteIsForwardedByIntermediateChips) {
  const partition::ModelSpec spec = SmallModel(10);
  const topology::Topology topo = topology::GenerateSystem(topology::LpuV1(), 2);
  const partition::Plan plan = LayoutPlan(
      spec, topo, {{4, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}});
  ASSERT_NE(topo.chip(plan.stages.back().chips.front()).rack,
            topo.chip(plan.stages.front().chips.front()).rack);
  const GlobalSchedule s = Compile(plan, spec, topo);
  size_t forwards = 0;
  for (const ChipProgram& p : s.programs) {
    for (const Instruction& in : p.instructions) forwards += in.kind == InstrKind::kForward;
  }
  EXPECT_GT(forwards, 0u);
  // Every reservation table is sorted and disjoint (the validator checks the instructions).
  for (const LinkTable& t : s.links) {
    for (size_t k = 1; k < t.reservations.size(); ++k) {
      EXPECT_LE(t.reservations[k - 1].end_ns, t.reservations[k].start_ns);
    }
  }
}

TEST(Compile, SequencesFillThePipeline) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{2, 2}, {2, 2}, {2, 2}, {2, 2}});
  ScheduleOptions o;
  o.tokens = 4;
  const GlobalSchedule s = Compile(plan, spec, topo, o);
  EXPECT_GE(s.sequences, 3);  // four similar stages: about four sequences in flight
  ScheduleOptions one = o;
  one.sequences = 1;
  const GlobalSchedule s1 = Compile(plan, spec, topo, one);
  // More sequences, the same cycle per sequence (pipelined), so the period shrinks.
  EXPECT_LT(s.period_ns * 2, s1.period_ns);
  const SimResult r = Simulate(s, topo);
  const SimResult r1 = Simulate(s1, topo);
  EXPECT_GT(r.metrics.tokens_per_s.value, 2 * r1.metrics.tokens_per_s.value);
  EXPECT_TRUE(Validate(s, topo).empty());
}

TEST(Compile, Deterministic) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{3, 8}, {3, 8}, {2, 4}});
  const GlobalSchedule a = Compile(plan, spec, topo);
  const GlobalSchedule b = Compile(plan, spec, topo);
  ASSERT_EQ(a.programs.size(), b.programs.size());
  for (size_t p = 0; p < a.programs.size(); ++p) {
    ASSERT_EQ(a.programs[p].instructions.size(), b.programs[p].instructions.size());
    for (size_t i = 0; i < a.programs[p].instructions.size(); ++i) {
      EXPECT_EQ(a.programs[p].instructions[i].start_ns, b.programs[p].instructions[i].start_ns);
      EXPECT_EQ(a.programs[p].instructions[i].msg, b.programs[p].instructions[i].msg);
    }
  }
}

TEST(Compile, APlanAloneCompilesWithItsOwnFigures) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{4, 4}, {4, 4}};
  po.workload.context = 512;
  po.chip_params = partition::CostParamsFor(topology::LpuV1());
  po.chip_params->op_overhead_ns = 5000;
  po.link_params = partition::LinkCostParams{};
  po.link_params->collective_step_overhead_ns = 900;
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  const GlobalSchedule alone = Compile(plan);
  // The plan's figures, not the defaults: slower than a compile with default cost figures, and
  // the same as passing the plan's figures explicitly.
  EXPECT_GT(alone.token_latency_ns, Compile(plan, spec, topo).token_latency_ns);
  ScheduleOptions explicit_figures;
  explicit_figures.chip_params = po.chip_params;
  explicit_figures.link_params = *po.link_params;
  EXPECT_EQ(alone.token_latency_ns, Compile(plan, spec, topo, explicit_figures).token_latency_ns);
  EXPECT_EQ(alone.instruction_count(),
            Compile(plan, spec, topo, explicit_figures).instruction_count());
  ValidateOptions vo;
  vo.link_params = plan.link_params;
  EXPECT_TRUE(Validate(alone, partition::PlanTopology(plan), vo).empty());
}

TEST(Compile, ModuloFormIsOnePeriodThatRepeatsValidly) {
  const partition::ModelSpec spec = SmallModel(10);
  const topology::Topology topo = topology::GenerateSystem(topology::LpuV1(), 2);
  const partition::Plan plan = LayoutPlan(
      spec, topo, {{4, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}, {1, 8}});
  ScheduleOptions few;
  few.modulo = true;
  few.tokens = 3;
  ScheduleOptions many = few;
  many.tokens = 1000000;
  const GlobalSchedule a = Compile(plan, spec, topo, few);
  const GlobalSchedule b = Compile(plan, spec, topo, many);
  EXPECT_EQ(a.iterations, 3);
  EXPECT_GT(a.sequences, 1);
  // Memory does not grow with tokens: the same period, the same instructions.
  EXPECT_EQ(a.instruction_count(), b.instruction_count());
  EXPECT_EQ(SerializeScheduleFile(CompileCompact(plan, spec, topo, few)).size(),
            SerializeScheduleFile(CompileCompact(plan, spec, topo, many)).size());
  ScheduleOptions one = few;
  one.modulo = false;
  one.tokens = 1;
  one.sequences = a.sequences;
  EXPECT_EQ(a.instruction_count(), Compile(plan, spec, topo, one).instruction_count());
  // The repeat clears the token's round trip; the period and its wrap-around validate, and so
  // does the explicit form of 3 periods (every dependency, link and compute slot re-checked).
  EXPECT_GE(a.repeat_ns, a.token_latency_ns);
  EXPECT_TRUE(Validate(a, topo).empty()) << Validate(a, topo).front();
  const GlobalSchedule unrolled = Unroll(a, 3);
  EXPECT_EQ(unrolled.instruction_count(), 3 * a.instruction_count());
  EXPECT_TRUE(Validate(unrolled, topo).empty()) << Validate(unrolled, topo).front();
  const SimResult r = Simulate(a, topo);
  ASSERT_TRUE(r.ok) << r.failure;
  // The simulator runs as soon as inputs allow: never later than planned.
  EXPECT_LE(r.metrics.makespan_ns, a.makespan_ns);
  EXPECT_GT(r.metrics.tokens_per_s.value, 0);
  // A repeat interval that is too short is caught, naming the chip and the step.
  GlobalSchedule tight = a;
  tight.repeat_ns = a.token_latency_ns / 4;
  const std::vector<std::string> problems = Validate(tight, topo);
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems.front().find("chip "), std::string::npos) << problems.front();
  EXPECT_NE(problems.front().find("repeat every"), std::string::npos) << problems.front();
  ScheduleOptions bad = few;
  bad.prefill = true;
  EXPECT_THROW(Compile(plan, spec, topo, bad), Error);
}

TEST(Compile, RejectsBadOptions) {
  const partition::ModelSpec spec = SmallModel();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  const partition::Plan plan = LayoutPlan(spec, topo, {{8, 1}});
  ScheduleOptions o;
  o.tokens = 0;
  EXPECT_THROW(Compile(plan, spec, topo, o), Error);
  topology::Topology other = topology::GenerateNode(topology::LpuV1(), 4);
  partition::Plan far = LayoutPlan(spec, topo, {{4, 4}, {4, 4}});
  EXPECT_THROW(Compile(far, spec, other), Error);  // chips 4..7 are not in a 4-chip node
}

TEST(Compile, UnreachableChipIsCannotFitNamingBothChips) {
  const partition::ModelSpec spec = SmallModel(2);
  topology::Topology topo = topology::GenerateRing(topology::LpuV1(), 4);
  const partition::Plan plan = LayoutPlan(spec, topo, {{1, 1}, {1, 1}, {1, 1}, {1, 1}});
  // Cut chip 2 off: both of its ring links go down, the chip itself stays up.
  for (const topology::Link& l : topo.links()) {
    if (l.a.chip == 2 || l.b.chip == 2) topo.SetLinkDown(l.id);
  }
  try {
    Compile(plan, spec, topo);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCannotFit);
    EXPECT_NE(std::string(e.what()).find("chip 1 to chip 2"), std::string::npos) << e.what();
  }
}

TEST(HopTime, ExactIntegerMathWithoutOverflow) {
  topology::Link link;
  link.bandwidth_bytes_per_s = 1'000'000'000;
  link.latency_ns = 600;
  partition::LinkCostParams p;
  p.link_efficiency = 1.0;
  EXPECT_EQ(HopTimeNs(link, 1000, p), 1600);
  EXPECT_EQ(HopTimeNs(link, 1001, p), 1601);
  // 2^62 bytes would overflow bytes * 1e9 in 64 bits.
  EXPECT_EQ(HopTimeNs(link, int64_t{1} << 62, p), 600 + (int64_t{1} << 62));
}

}  // namespace
}  // namespace lockstep::schedule
