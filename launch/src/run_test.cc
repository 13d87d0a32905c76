// The whole control plane with real workers as threads over the inproc transport: a plan with
// TP 2 x 2 stages, shards shipped in small chunks under a tight heartbeat, several concurrent
// requests — every token and logit equal to the single-process reference, bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/coordinator.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/safetensors.h"
#include "lockstep/model/shard_loader.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"
#include "lockstep/transport/transport.h"
#include "lockstep/worker/agent.h"
#include "thread_workers_test_util.h"

namespace lockstep::coordinator {
namespace {

const partition::ModelSpec& RunSpec() {
  static const partition::ModelSpec spec = partition::ParseModelSpec(
      R"({"_name_or_path": "run-test", "model_type": "llama", "hidden_size": 128,
          "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 2,
          "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 96,
          "max_position_embeddings": 32})",
      "run-test");
  return spec;
}

const std::vector<std::vector<int32_t>> kPrompts = {{5, 6, 7}, {1}, {9, 8, 7, 6}, {2, 2}, {40}};

// Every result equals the single-process reference of `weights`, tokens and logits bit for bit.
void ExpectReference(const std::vector<Finished>& results, const model::LlamaWeights& weights);

// TP 2 x 2 stages of RunSpec on a node, 2 slots, inproc, the shards from `weights` (whole
// weights in memory, or a model::ShardSource).
template <typename Weights>
Deployment DeployTp2x2(const Weights& weights) {
  const topology::Topology topo = topology::GenerateNode(*topology::ChipPreset("lpu-v1"));
  partition::PlanOptions plan_options;
  plan_options.tp = 2;
  plan_options.pp = 2;
  const partition::Plan plan = partition::MakePlan(RunSpec(), topo, plan_options);
  DeployOptions options;
  options.slots = 2;
  options.transport.backend = "inproc";
  return MakeDeployment(plan, RunSpec(), topo, weights, options);
}

// Every chip (all four have a stage) reported every decode step: its own times add up to the
// run's, and it put bytes on links to other chips of the deployment, each link once.
void ExpectChipStats(const RunStats& stats, const Deployment& deployment) {
  ASSERT_EQ(stats.chips.size(), deployment.chips.size());
  ASSERT_GT(stats.decode_steps, 0);
  control::StepTimes sum;
  for (const auto& [chip, c] : stats.chips) {
    EXPECT_EQ(c.decode_steps, stats.decode_steps) << "chip " << chip;
    EXPECT_GT(c.decode_times.step_ns, 0) << "chip " << chip;
    sum += c.decode_times;
    EXPECT_FALSE(c.sent.empty()) << "chip " << chip;
    for (const auto& [link, l] : c.sent) {
      EXPECT_EQ(l.link, link);
      EXPECT_NE(static_cast<uint32_t>(l.peer), chip);
      EXPECT_EQ(stats.chips.count(static_cast<uint32_t>(l.peer)), 1u) << "chip " << chip;
      EXPECT_GT(l.bytes, 0) << "chip " << chip << " link " << link;
    }
  }
  EXPECT_EQ(sum, stats.decode_times);
}

// Runs `deployment` on threaded workers and generates 4 tokens for each of kPrompts (request ids
// 100, 101, ...); `streamed` counts the tokens as they arrive.
std::vector<Finished> RunThreaded(const Deployment& deployment, bool keep_logits,
                                  size_t& streamed) {
  EXPECT_EQ(deployment.chips.size(), 4u);

  CoordinatorOptions co;
  const std::string socket_file = "/tmp/lockstep-coordinator-test-" + std::to_string(getpid());
  co.address = "ipc://" + socket_file;
  co.chunk_bytes = 4096;  // hundreds of chunks: heartbeats must not starve behind them
  co.heartbeat_interval = std::chrono::milliseconds(20);
  co.heartbeat_timeout = std::chrono::milliseconds(1500);
  co.keep_logits = keep_logits;
  Coordinator coordinator(co);
  ThreadWorkers workers(coordinator, deployment);
  coordinator.AwaitWorkers(deployment.chips.size(), std::chrono::seconds(10));
  coordinator.Deploy(deployment);
  std::vector<Request> requests;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    requests.push_back({100 + i, kPrompts[i], 4, {}});
  }
  streamed = 0;
  const std::vector<Finished> results =
      coordinator.Generate(requests, [&](uint64_t, int32_t, int64_t) { ++streamed; });
  ExpectChipStats(coordinator.stats(), deployment);
  coordinator.Shutdown();
  workers.Join();
  std::filesystem::remove(socket_file);
  return results;
}

TEST(Run, ThreadedWorkersMatchTheReferenceBitForBit) {
  const model::LlamaWeights weights = model::GenerateLlamaWeights(RunSpec(), 4);
  size_t streamed = 0;
  const std::vector<Finished> results = RunThreaded(DeployTp2x2(weights), true, streamed);
  EXPECT_EQ(streamed, kPrompts.size() * 4);  // every token streamed once
  ExpectReference(results, weights);
}

// Workers that read their own shards — from a bf16 checkpoint, or the seed — give the reference's
// tokens and logits bit for bit, and nothing is shipped: the deployment carries sources only.
// A shard materialized for a worker elsewhere is the bytes the in-memory path would ship.
TEST(Run, WorkersReadingTheirOwnShardsMatchTheReferenceBitForBit) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("lockstep-run-test-" + std::to_string(getpid()) + ".st");
  model::WriteGeneratedWeights(RunSpec(), 4, Dtype::kBf16, file);
  const model::LlamaWeights from_file =
      model::LoadLlamaWeights(model::Checkpoint::Open(file), RunSpec());
  model::ShardSource checkpoint;
  checkpoint.checkpoint = file.string();
  model::ShardSource seed;
  seed.seed = 4;
  for (const auto& [source, weights] :
       {std::pair{checkpoint, from_file},
        std::pair{seed, model::GenerateLlamaWeights(RunSpec(), 4)}}) {
    SCOPED_TRACE(source.checkpoint.empty() ? "seed" : "bf16 checkpoint");
    Deployment deployment = DeployTp2x2(source);
    EXPECT_EQ(deployment.shard_bytes(), 0u);
    for (const ChipDeployment& c : deployment.chips) {
      EXPECT_EQ(c.shard_source.empty(), c.stage < 0) << "chip " << c.chip;
    }
    size_t streamed = 0;
    ExpectReference(RunThreaded(deployment, true, streamed), weights);
    const Deployment shipped = DeployTp2x2(weights);
    ChipDeployment& first = deployment.chips.front();
    MaterializeShard(RunSpec(), first);
    EXPECT_TRUE(first.shard_source.empty());
    EXPECT_EQ(first.shard, shipped.chips.front().shard);
  }
  std::filesystem::remove(file);
}

TEST(Run, ASourceIsCheckedBeforeAnythingStarts) {
  model::ShardSource missing;
  missing.checkpoint = "/nonexistent/lockstep-run-test.safetensors";
  try {
    DeployTp2x2(missing);
    FAIL() << "deployed from a missing checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.checkpoint), std::string::npos) << e.what();
  }
}

void ExpectReference(const std::vector<Finished>& results, const model::LlamaWeights& weights) {
  const model::ReferenceModel reference(RunSpec(), weights);
  ASSERT_EQ(results.size(), kPrompts.size());
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const model::Generation want = model::Generate(reference, kPrompts[i], 4, {}, true);
    EXPECT_EQ(results[i].id, 100 + i);
    EXPECT_EQ(results[i].tokens, want.tokens) << "request " << i;
    ASSERT_EQ(results[i].logits.size(), want.logits.size());
    for (size_t k = 0; k < want.logits.size(); ++k) {
      ASSERT_EQ(results[i].logits[k].size(), want.logits[k].size());
      EXPECT_EQ(std::memcmp(results[i].logits[k].data(), want.logits[k].data(),
                            want.logits[k].size() * sizeof(float)),
                0)
          << "request " << i << " token " << k;
    }
  }
}

// keep_logits false: the same tokens, and no logits (the sampling chip was not asked for them).
TEST(Run, WithoutLogitsTheTokensComeAlone) {
  const model::LlamaWeights weights = model::GenerateLlamaWeights(RunSpec(), 4);
  size_t streamed = 0;
  const std::vector<Finished> results = RunThreaded(DeployTp2x2(weights), false, streamed);
  EXPECT_EQ(streamed, kPrompts.size() * 4);
  const model::ReferenceModel reference(RunSpec(), weights);
  ASSERT_EQ(results.size(), kPrompts.size());
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    EXPECT_EQ(results[i].tokens, model::Generate(reference, kPrompts[i], 4, {}).tokens)
        << "request " << i;
    EXPECT_TRUE(results[i].logits.empty()) << "request " << i;
  }
}

TEST(Run, APlanForAnotherTopologyIsRefusedBeforeAnythingStarts) {
  const partition::ModelSpec spec = partition::ParseModelSpec(
      R"({"_name_or_path": "x", "model_type": "llama", "hidden_size": 64, "head_dim": 16,
          "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
          "num_key_value_heads": 4, "vocab_size": 32})",
      "x");
  const topology::ChipSpec chip = *topology::ChipPreset("lpu-v1");
  const topology::Topology rack = topology::GenerateRack(chip);
  const topology::Topology node = topology::GenerateNode(chip);
  const partition::Plan plan = partition::MakePlan(spec, rack, {});
  try {
    MakeDeployment(plan, spec, node, model::GenerateLlamaWeights(spec, 1), {});
    FAIL() << "deployed a rack plan on a node";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("topology '" + rack.name() + "'"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lockstep::coordinator
