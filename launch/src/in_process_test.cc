// The in-process runtime (launch::Launch with worker threads over sim or inproc, the coordinator on
// an in-memory control channel): every layout the partitioner gives — TP 1 to 8, pipelines of 1
// to 8 stages, uneven and mixed stages, column-parallel projections, replicated KV heads, 64 chips
// of a rack — generates exactly what the single-process reference does, tokens and logits bit for
// bit, several requests at once in the pipeline's slots.
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>

#include <cstring>
#include <map>
#include <set>

#include "lockstep/common/error.h"
#include "lockstep/launch/launch.h"
#include "lockstep/model/reference.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"

namespace lockstep::launch {

namespace {

using coordinator::Finished;
using coordinator::Request;
using partition::ModelSpec;

// Wide enough for TP 8 with 64-element slices (query width 512, intermediate 512); 6 layers, so
// 8 units (embedding, 6 layers, head) make an 8-stage pipeline; vocab 200 splits unevenly.
ModelSpec Tiny() {
  return partition::ParseModelSpec(R"({"_name_or_path": "tiny-tp8", "model_type": "qwen2",
    "hidden_size": 64, "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 6,
    "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 200,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 32})",
                                   "tiny-tp8");
}

// The shape of examples/models/tiny-llama: hidden 64, 4 heads over 2 KV heads, intermediate 172.
// TP 2 and 4 slice the query width and the intermediate width into pieces that are not whole
// 64-element chunks (o / down column-parallel), and TP 4 exceeds the KV heads (replicated).
ModelSpec TinyLlama() {
  return partition::ParseModelSpec(R"({"_name_or_path": "tiny-llama", "model_type": "llama",
    "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64})",
                                   "tiny-llama");
}

// GQA with 2 KV heads under TP 8: every rank holds a copy of one KV head, while the o / down
// slices are whole chunks (row-parallel), so replication is tested apart from column splits.
ModelSpec GqaTwoKvHeads() {
  return partition::ParseModelSpec(R"({"_name_or_path": "gqa-kv2", "model_type": "llama",
    "hidden_size": 64, "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 2,
    "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 200,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 32})",
                                   "gqa-kv2");
}

// TP 16 with row-parallel o / down projections: query width 32 x 32 = 1024 and intermediate
// 1024 are 16 slices of one 64-element chunk each; 8 KV heads, replicated twice.
ModelSpec Tp16RowParallel() {
  return partition::ParseModelSpec(R"({"_name_or_path": "tp16-rows", "model_type": "llama",
    "hidden_size": 64, "head_dim": 32, "intermediate_size": 1024, "num_hidden_layers": 2,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 200,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 32})",
                                   "tp16-rows");
}

model::LlamaWeights Weights(const ModelSpec& spec) {
  model::LlamaWeights w = model::GenerateLlamaWeights(spec, 11);
  for (model::LayerWeights& l : w.layers) {
    for (model::Weight* m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) {
      for (float& x : m->values) x *= 5.0f;  // sharper than an init, so every term matters
    }
  }
  return w;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

std::vector<Request> Requests() {
  std::vector<Request> r;
  r.push_back({1, {3, 1, 4, 1, 5}, 3, {}});
  r.push_back({2, {199}, 2, {.temperature = 0.8, .top_p = 0.9, .seed = 7}});
  r.push_back({3, {9, 2, 6, 5}, 4, {.temperature = 1.0, .top_p = 1.0, .seed = 3}});
  r.push_back({4, {0, 7}, 1, {}});
  r.push_back({5, {42, 43, 44}, 0, {}});
  return r;
}

// Every request's tokens and logits equal model::Generate's, bit for bit.
void ExpectMatchesReference(const ModelSpec& spec, const model::LlamaWeights& weights,
                            const std::vector<Request>& requests, const std::vector<Finished>& got,
                            const std::string& what) {
  const model::ReferenceModel reference(spec, weights);
  ASSERT_EQ(got.size(), requests.size()) << what;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    const model::Generation want =
        model::Generate(reference, r.prompt, r.max_new, r.sampling, /*keep_logits=*/true);
    EXPECT_EQ(got[i].id, r.id) << what;
    EXPECT_EQ(got[i].tokens, want.tokens) << what << " request " << r.id;
    ASSERT_EQ(got[i].logits.size(), want.logits.size()) << what << " request " << r.id;
    for (size_t t = 0; t < want.logits.size(); ++t) {
      EXPECT_TRUE(SameBits(got[i].logits[t], want.logits[t]))
          << what << " request " << r.id << " token " << t;
    }
  }
}

int loggers = 0;

struct Case {
  std::string name;
  std::vector<std::pair<int64_t, int>> layout;  // (units, tp) per stage
  std::string transport;
  bool rack = false;
  ModelSpec (*model)() = Tiny;
  partition::LinkCostParams link_params = {};
  topology::Topology (*topology)() = nullptr;  // instead of the node / rack
};

topology::Topology TwoRacks() { return topology::GenerateSystem(topology::LpuV1(), 2); }

void RunPlan(const Case& c, const ModelSpec& spec, const model::LlamaWeights& weights,
             const topology::Topology& topo, const partition::Plan& plan, int32_t slots);

// Every chip a thread of this process over `transport` (sim or inproc), quiet.
RunConfig InProcess(const partition::Plan& plan, const ModelSpec& spec,
                    const topology::Topology& topo, const model::LlamaWeights& weights,
                    const std::string& transport, int32_t slots = 0) {
  RunConfig config;
  config.inputs = {spec, {}, topo, plan, weights};
  config.deploy.slots = slots;
  config.deploy.transport.backend = transport;
  config.workers = Workers::kThreads;
  config.log = spdlog::null_logger_mt("in-process-test-" + std::to_string(++loggers));
  return config;
}

void RunCase(const Case& c, int32_t slots = 0) {
  const ModelSpec spec = c.model();
  const model::LlamaWeights weights = Weights(spec);
  const topology::Topology topo = c.topology ? c.topology()
                                  : c.rack   ? topology::GenerateRack(topology::LpuV1())
                                             : topology::GenerateNode(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = c.layout;
  po.link_params = c.link_params;  // the deployment compiles with the plan's figures
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  RunPlan(c, spec, weights, topo, plan, slots);
}

void RunPlan(const Case& c, const ModelSpec& spec, const model::LlamaWeights& weights,
             const topology::Topology& topo, const partition::Plan& plan, int32_t slots) {
  Launch launch(InProcess(plan, spec, topo, weights, c.transport, slots));
  launch.Start();
  launch.Deploy();
  const std::vector<Request> requests = Requests();
  const std::vector<Finished> got = launch.coordinator().Generate(requests);
  ExpectMatchesReference(spec, weights, requests, got, c.name + " over " + c.transport);
  EXPECT_EQ(launch.coordinator().stats().tokens, 10);
  size_t used = 0;
  for (const partition::StagePlan& s : plan.stages) used += static_cast<size_t>(s.tp);
  EXPECT_GE(launch.deployment().chips.size(), used);
  // A second batch on the same run reuses the slots (reset KV caches).
  const std::vector<Request> again = {{9, {5, 5, 5}, 2, {}}};
  ExpectMatchesReference(spec, weights, again, launch.coordinator().Generate(again),
                         c.name + " again");
}

TEST(InProcess, Tp1Pp1Sim) { RunCase({"tp1 pp1", {{8, 1}}, "sim"}); }
TEST(InProcess, Tp2Pp2Inproc) { RunCase({"tp2 pp2", {{4, 2}, {4, 2}}, "inproc"}); }
TEST(InProcess, Tp4Pp1Sim) { RunCase({"tp4 pp1", {{8, 4}}, "sim"}); }
TEST(InProcess, Tp8Pp1Inproc) { RunCase({"tp8 pp1", {{8, 8}}, "inproc"}); }
TEST(InProcess, Tp4RowParallelReduceScatterAllGatherInproc) {
  // Links so slow that bytes outweigh latency: the compiler lays out reduce-scatter +
  // all-gather instead of one-shot, for row-parallel partials too (the cases above run one-shot).
  const ModelSpec spec = Tiny();
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{8, 4}};
  schedule::ScheduleOptions so;
  so.link_params.link_efficiency = 1e-6;
  const schedule::GlobalSchedule s =
      schedule::Compile(partition::MakePlan(spec, topo, po), spec, topo, so);
  size_t two_shot = 0, one_shot = 0;
  for (const schedule::Instruction& in : s.programs[0].instructions) {
    two_shot += in.kind == schedule::InstrKind::kReduce && in.tag == schedule::Tag::kAllGather;
    one_shot += in.tag == schedule::Tag::kAllReduce;
  }
  EXPECT_EQ(two_shot, 2 * 6 + 1u);
  EXPECT_EQ(one_shot, 0u);
  RunCase({"tp4 two-shot", {{8, 4}}, "inproc", false, Tiny, so.link_params});
}
TEST(InProcess, Tp1Pp4MixedSim) {
  // Uneven stages, an embedding-only first stage and mixed degrees.
  RunCase({"pp4 mixed", {{1, 2}, {3, 1}, {2, 4}, {2, 2}}, "sim", true});
}
TEST(InProcess, Tp2Pp4Inproc) {
  RunCase({"tp2 pp4", {{2, 2}, {2, 2}, {2, 2}, {2, 2}}, "inproc", true});
}

// Every degree the partitioner allows, not only 64-element slices and divisors of the KV heads.
TEST(InProcess, TinyLlamaTp2ColumnParallelInproc) {
  RunCase({"tiny-llama tp2", {{4, 2}}, "inproc", false, TinyLlama});
}
TEST(InProcess, TinyLlamaTp4ReplicatedKvInproc) {
  RunCase({"tiny-llama tp4", {{4, 4}}, "inproc", false, TinyLlama});
}
TEST(InProcess, TinyLlamaTp2Pp2MixedInproc) {
  RunCase({"tiny-llama tp2 x tp4", {{2, 2}, {2, 4}}, "inproc", false, TinyLlama});
}
TEST(InProcess, GqaTp8ExceedsKvHeadsInproc) {
  RunCase({"gqa kv2 tp8", {{4, 8}}, "inproc", false, GqaTwoKvHeads});
}

// 64 chips of a rack: 8 stages x TP 8 (an embedding-only and a head-only stage among them).
TEST(InProcess, SixtyFourChipsOfARack) {
  std::vector<std::pair<int64_t, int>> layout(8, {1, 8});
  RunCase({"8x8 rack", layout, "sim", true});
}
TEST(InProcess, SixtyFourChipsOfARackInproc) {
  std::vector<std::pair<int64_t, int>> layout(8, {1, 8});
  RunCase({"8x8 rack", layout, "inproc", true});
}

// What a schedule's programs hold: per tag, the Forward instructions, the chips forwarding, and
// the longest chain of hops of one message; ring steps (a reduce-scatter Reduce of sequence 0 per
// collective step on chip `chip`).
struct Routes {
  std::map<schedule::Tag, int64_t> forwards;
  std::map<schedule::Tag, std::set<topology::ChipId>> forwarders;
  std::map<schedule::Tag, int> longest;  // hops
};

Routes RoutesOf(const schedule::GlobalSchedule& s) {
  Routes r;
  std::map<int64_t, int64_t> in_of;  // msg -> the msg it forwards
  for (const schedule::ChipProgram& p : s.programs) {
    for (const schedule::Instruction& in : p.instructions) {
      if (in.kind != schedule::InstrKind::kForward) continue;
      ++r.forwards[in.tag];
      r.forwarders[in.tag].insert(p.chip);
      in_of[in.msg] = in.in_msg;
    }
  }
  for (const schedule::ChipProgram& p : s.programs) {
    for (const schedule::Instruction& in : p.instructions) {
      if (in.kind != schedule::InstrKind::kRecv) continue;
      int hops = 1;
      for (int64_t m = in.in_msg; in_of.count(m) != 0; m = in_of[m]) ++hops;
      r.longest[in.tag] = std::max(r.longest[in.tag], hops);
    }
  }
  return r;
}

int64_t RingReduces(const schedule::GlobalSchedule& s) {
  int64_t n = 0;
  for (const schedule::Instruction& in : s.programs.front().instructions) {
    n += in.sequence == 0 && in.kind == schedule::InstrKind::kReduce &&
         in.tag == schedule::Tag::kReduceScatter && in.layer == -1;
  }
  return n;  // the embedding's all-reduce: 1 direct, tp - 1 as a ring
}

// The schedule a run of `plan` deploys (one token, a slot per stage).
schedule::GlobalSchedule Deployed(const partition::Plan& plan, const ModelSpec& spec,
                                  const topology::Topology& topo) {
  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = static_cast<int32_t>(plan.stages.size());
  return schedule::Compile(plan, spec, topo, so);
}

// TP 16 is wider than a node: the group spans two nodes, so it is not fully connected. With
// both projections row-parallel the compiler lays out hierarchical all-reduces (one
// reduce-scatter step inside each node, node sums exchanged across, routed through the chips
// that join the nodes, one all-gather step inside each node); the runtime exchanges canonical
// tree-node sums across and matches the reference bit for bit. Column-parallel projections
// keep the ring (input slices passed on, below).
TEST(InProcess, Tp16HierarchicalAcrossTwoNodesRowParallelInproc) {
  const ModelSpec spec = Tp16RowParallel();
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{4, 16}};
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  ASSERT_TRUE(partition::RowParallelProjection(spec, 16, false));
  ASSERT_TRUE(partition::RowParallelProjection(spec, 16, true));
  const schedule::GlobalSchedule schedule = Deployed(plan, spec, topo);
  EXPECT_EQ(RingReduces(schedule), 1);
  const Routes routes = RoutesOf(schedule);
  EXPECT_GE(routes.longest.at(schedule::Tag::kAllReduce), 2) << "no node sum is forwarded";
  EXPECT_EQ(routes.forwards.count(schedule::Tag::kReduceScatter), 0u) << "inside a node: direct";
  RunPlan({"tp16 hierarchical rows", {}, "inproc"}, spec, Weights(spec), topo, plan, 0);
}
// TP 32 over four whole nodes: each rank's node sum goes to the ranks of its place in the three
// other nodes, and each merges four node sums: bit for bit.
TEST(InProcess, Tp32HierarchicalAcrossFourNodesSim) {
  const ModelSpec spec = partition::ParseModelSpec(R"({"_name_or_path": "tp32-rows",
    "model_type": "llama", "hidden_size": 64, "head_dim": 32, "intermediate_size": 2048,
    "num_hidden_layers": 2, "num_attention_heads": 64, "num_key_value_heads": 8,
    "vocab_size": 200, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "max_position_embeddings": 32})",
                                                   "tp32-rows");
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{4, 32}};
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  ASSERT_EQ(partition::HierarchicalNodeSize(spec, topo, plan.stages[0].chips), 8);
  const schedule::GlobalSchedule schedule = Deployed(plan, spec, topo);
  EXPECT_EQ(RingReduces(schedule), 1);
  size_t across = 0;
  for (const schedule::Instruction& in : schedule.programs.front().instructions) {
    across += in.kind == schedule::InstrKind::kSend && in.tag == schedule::Tag::kAllReduce &&
              in.layer == -1 && in.sequence == 0;
  }
  EXPECT_EQ(across, 3u) << "one node sum to each other node";
  RunPlan({"tp32 hierarchical rows", {}, "sim"}, spec, Weights(spec), topo, plan, 0);
}
TEST(InProcess, Tp16RingAcrossTwoNodesColumnParallelSim) {
  ASSERT_FALSE(partition::RowParallelProjection(Tiny(), 16, false));
  RunCase({"tp16 ring columns", {{8, 16}}, "sim", true});
}
TEST(InProcess, Tp16RingTwoStagesInproc) {
  RunCase({"tp16 x 2 stages", {{4, 16}, {4, 16}}, "inproc", true});
}

// Two racks of a Dragonfly, 8 stages x TP 16 (128 chips): stage 3 -> 4 and the token back from
// the last stage to the first cross racks, forwarded over several chips; every group a ring.
TEST(InProcess, DragonflyTwoRacksForwardedRoutesInproc) {
  const ModelSpec spec = Tiny();
  const topology::Topology topo = TwoRacks();
  partition::PlanOptions po;
  po.layout = std::vector<std::pair<int64_t, int>>(8, {1, 16});
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  std::set<int> racks;
  for (const partition::StagePlan& st : plan.stages) racks.insert(topo.chip(st.chips[0]).rack);
  ASSERT_EQ(racks.size(), 2u);
  schedule::ScheduleOptions so;
  so.sequences = 8;
  const Routes routes = RoutesOf(schedule::Compile(plan, spec, topo, so));
  // The activation crosses racks once per receiving node, between the nearest pair of chips
  // (schedule's RelayActivations), so its longest route is shorter than rank to rank.
  EXPECT_GE(routes.longest.at(schedule::Tag::kActivation), 2);
  EXPECT_GE(routes.longest.at(schedule::Tag::kToken), 3);
  EXPECT_GE(routes.forwarders.at(schedule::Tag::kActivation).size(), 2u);
  RunPlan({"dragonfly 2 racks", {}, "inproc"}, spec, Weights(spec), topo, plan, 8);
}

// More requests than slots: each result equals running it alone; none lost or duplicated.
TEST(InProcess, ManyConcurrentRequestsEachAsAlone) {
  const ModelSpec spec = Tiny();
  const model::LlamaWeights weights = Weights(spec);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{3, 2}, {5, 2}};
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  Launch launch(InProcess(plan, spec, topo, weights, "inproc", 3));
  launch.Start();
  launch.Deploy();
  std::vector<Request> requests;
  for (uint64_t i = 0; i < 11; ++i) {
    Request r;
    r.id = 100 + i;
    for (uint64_t t = 0; t <= i % 4; ++t)
      r.prompt.push_back(static_cast<int32_t>((i * 37 + t * 11) % 200));
    r.max_new = 1 + static_cast<int64_t>(i % 3);
    if (i % 2 == 1) r.sampling = {.temperature = 0.7, .top_p = 0.95, .seed = i};
    requests.push_back(std::move(r));
  }
  const std::vector<Finished> got = launch.coordinator().Generate(requests);
  ExpectMatchesReference(spec, weights, requests, got, "11 requests on 3 slots");
  std::set<uint64_t> ids;
  for (const Finished& f : got) ids.insert(f.id);
  EXPECT_EQ(ids.size(), requests.size());
  EXPECT_GT(launch.coordinator().stats().steps, 0);
}

TEST(InProcess, RejectsBadInput) {
  const ModelSpec spec = Tiny();
  const model::LlamaWeights weights = Weights(spec);
  const topology::Topology topo = topology::GenerateNode(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = {{8, 1}};
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  EXPECT_THROW(Launch(InProcess(plan, spec, topo, weights, "tcp")), ConfigError);
  model::LlamaWeights wrong = weights;
  wrong.layers.pop_back();
  EXPECT_THROW(Launch(InProcess(plan, spec, topo, wrong, "sim")), Error);
  Launch launch(InProcess(plan, spec, topo, weights, "sim"));
  launch.Start();
  launch.Deploy();
  // A token outside the vocabulary fails the run.
  EXPECT_THROW(launch.coordinator().Generate({{1, {300}, 1, {}}}), Error);
}

// A chip that fails mid-step fails the run with its Error, naming the chip.
TEST(InProcess, ChipFailureStopsTheRack) {
  const ModelSpec spec = Tiny();
  const model::LlamaWeights weights = Weights(spec);
  const topology::Topology topo = topology::GenerateRack(topology::LpuV1());
  partition::PlanOptions po;
  po.layout = std::vector<std::pair<int64_t, int>>(8, {1, 8});
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  Launch launch(InProcess(plan, spec, topo, weights, "inproc"));
  launch.Start();
  launch.Deploy();
  try {
    launch.coordinator().Generate({{1, {3, 250}, 2, {}}});  // 250 is outside the vocabulary
    FAIL() << "a token outside the vocabulary was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chip "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("250"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep::launch
