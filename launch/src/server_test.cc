// Serving: a deployed coordinator with threaded workers serves network clients (client.h) that
// arrive at once; each result equals the reference for its prompt; refusals and an unreachable
// address are clear errors; a client's shutdown request ends Run().
#include "lockstep/coordinator/server.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/control/channel.h"
#include "lockstep/coordinator/client.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/model/reference.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"
#include "lockstep/transport/transport.h"
#include "lockstep/worker/agent.h"
#include "thread_workers_test_util.h"

namespace lockstep::coordinator {
namespace {

TEST(Server, ConcurrentClientsEachGetTheReference) {
  const partition::ModelSpec spec = partition::ParseModelSpec(
      R"({"_name_or_path": "serve-test", "model_type": "llama", "hidden_size": 64,
          "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 96, "max_position_embeddings": 24})",
      "serve-test");
  const model::LlamaWeights weights = model::GenerateLlamaWeights(spec, 4);
  const topology::Topology topo = topology::GenerateNode(*topology::ChipPreset("lpu-v1"));
  partition::PlanOptions plan_options;
  plan_options.tp = 2;
  plan_options.pp = 1;
  const partition::Plan plan = partition::MakePlan(spec, topo, plan_options);
  DeployOptions options;
  options.slots = 2;
  options.transport.backend = "inproc";
  const Deployment deployment = MakeDeployment(plan, spec, topo, weights, options);

  const std::string base = "/tmp/lockstep-server-test-" + std::to_string(getpid());
  CoordinatorOptions co;
  co.address = "ipc://" + base + "-control";
  Coordinator coordinator(co);
  ThreadWorkers workers(coordinator, deployment);
  coordinator.AwaitWorkers(deployment.chips.size(), std::chrono::seconds(10));
  coordinator.Deploy(deployment);

  ServeOptions so;
  so.address = "ipc://" + base + "-clients";
  so.vocab_size = spec.vocab_size;
  Server server(coordinator, so);
  // Regression: requests queued past one poll's batch (256) were dropped — the one received
  // just past the batch was never answered. 600 wait before the first poll; each gets its
  // refusal (out of the vocabulary), in order.
  std::unique_ptr<control::ControlConnection> burst = control::Connect(server.address());
  constexpr uint64_t kBurst = 600;
  for (uint64_t i = 0; i < kBurst; ++i) burst->Send(control::SubmitMsg{i, {96}, 1, {}});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // all delivered before Run
  ServeStats stats;
  std::thread serving([&] { EXPECT_NO_THROW(stats = server.Run()); });
  for (uint64_t i = 0; i < kBurst; ++i) {
    std::optional<control::ControlMessage> m = burst->Receive(std::chrono::seconds(10));
    ASSERT_TRUE(m) << "request " << i << " of the burst was never answered";
    const auto* done = std::get_if<control::DoneMsg>(&*m);
    ASSERT_NE(done, nullptr) << control::MessageName(*m);
    EXPECT_EQ(done->id, i);
    EXPECT_EQ(done->code, ErrorCode::kInvalidInput);
  }

  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7}, {1}, {9, 8, 7, 6}};
  const std::vector<model::SamplingOptions> sampling = {
      {}, {.temperature = 0.8, .top_p = 0.9, .seed = 3}, {}};
  std::vector<std::vector<int32_t>> got(prompts.size()), streamed(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] {
      Client client(server.address());
      EXPECT_NO_THROW(got[i] = client.Generate(prompts[i], 5, sampling[i], [&](int32_t t, int64_t) {
        streamed[i].push_back(t);
      }));
    });
  }
  for (std::thread& t : clients) t.join();
  const model::ReferenceModel reference(spec, weights);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const model::Generation want = model::Generate(reference, prompts[i], 5, sampling[i], false);
    EXPECT_EQ(got[i], want.tokens) << "client " << i;
    EXPECT_EQ(streamed[i], want.tokens) << "client " << i << " streamed";
  }

  Client client(server.address());
  for (const auto& [prompt, max_new] :
       {std::pair{std::vector<int32_t>{1, 2}, int64_t{100}},  // beyond 24 positions
        std::pair{std::vector<int32_t>{96}, int64_t{1}}}) {   // outside the vocabulary
    try {
      client.Generate(prompt, max_new);
      ADD_FAILURE() << "an impossible request was served";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidInput) << e.what();
      EXPECT_NE(std::string(e.what()).find("refused"), std::string::npos) << e.what();
    }
  }
  const std::vector<int32_t> four = {4};
  EXPECT_EQ(client.Generate(four, 2), model::Generate(reference, four, 2, {}, false).tokens)
      << "the server keeps serving after refusals";
  client.RequestShutdown();
  serving.join();
  EXPECT_EQ(stats.requests, 4);
  EXPECT_EQ(stats.refused, 2 + static_cast<int64_t>(kBurst));
  coordinator.Shutdown();
  workers.Join();
  std::filesystem::remove(base + "-control");
  std::filesystem::remove(base + "-clients");
}

TEST(Client, NothingListeningIsAClearErrorWithinItsTimeout) {
  const std::string address = "ipc:///tmp/lockstep-no-server-" + std::to_string(getpid());
  Client client(address, {.connect_timeout = std::chrono::milliseconds(200)});
  const auto start = std::chrono::steady_clock::now();
  try {
    client.Generate({1, 2}, 3);
    FAIL() << "a request to nowhere succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("no coordinator answered at " + address + " within 200"),
              std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

}  // namespace
}  // namespace lockstep::coordinator
