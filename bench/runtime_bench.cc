// The runtime's decode speed (issue #7): the in-process runtime (launch::Launch with worker
// threads over the inproc transport: real ZeroMQ inproc links, the coordinator on an in-memory
// control channel) on the 205M-parameter Llama of model_bench (hidden 1024,
// intermediate 2816, 16 layers, 16 heads, vocab 32000, fp32), for 1, 2 and 4 chips, beside the
// single-process reference in the same run. One request: an 8-token prompt, then 32 tokens,
// all bit-identical to the reference; tokens/s counts the 32 generated tokens over the wall
// time of the whole request (the prefill included); tokens/cpu_s over the CPU time of the
// whole process (every chip thread), which a loaded machine disturbs far less.
//
//   build/bench/runtime_bench
#include <benchmark/benchmark.h>
#include <spdlog/sinks/null_sink.h>

#include <ctime>
#include <memory>
#include <vector>

#include "lockstep/launch/launch.h"
#include "lockstep/model/reference.h"
#include "lockstep/partition/plan.h"
#include "lockstep/topology/chip_spec.h"
#include "lockstep/topology/generators.h"

namespace lockstep::launch {

using coordinator::Request;
namespace {

constexpr int64_t kNew = 32;

partition::ModelSpec Llama205M() {
  return partition::ParseModelSpec(R"({"_name_or_path": "llama-205m", "model_type": "llama",
      "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 16,
      "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 32000,
      "rms_norm_eps": 1e-5, "max_position_embeddings": 2048})",
                                   "bench");
}

const model::LlamaWeights& Weights() {
  static const auto* w = new model::LlamaWeights(model::GenerateLlamaWeights(Llama205M(), 1));
  return *w;
}

Request OneRequest() {
  Request r;
  r.id = 1;
  r.prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  r.max_new = kNew;
  return r;
}

// tokens/s (wall) and tokens per CPU second of the whole process since `cpu`.
void Count(benchmark::State& state, std::clock_t cpu) {
  const double tokens = static_cast<double>(state.iterations() * kNew);
  const double cpu_s = static_cast<double>(std::clock() - cpu) / CLOCKS_PER_SEC;
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["tokens/cpu_s"] = cpu_s > 0 ? tokens / cpu_s : 0.0;
}

void BM_Reference205M(benchmark::State& state) {
  const partition::ModelSpec spec = Llama205M();
  const model::ReferenceModel model(spec, Weights());
  const Request r = OneRequest();
  const std::clock_t cpu = std::clock();
  for (auto _ : state) {
    benchmark::DoNotOptimize(model::Generate(model, r.prompt, r.max_new, r.sampling));
  }
  Count(state, cpu);
}
BENCHMARK(BM_Reference205M)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

// Args: TP degree, pipeline stages (chips = tp x stages).
void BM_InProcessInproc205M(benchmark::State& state) {
  const partition::ModelSpec spec = Llama205M();
  const int tp = static_cast<int>(state.range(0));
  const int stages = static_cast<int>(state.range(1));
  // The bench measures this host, not the chip: give the simulated chips room for the fp32 model.
  topology::ChipSpec chip = topology::LpuV1();
  chip.sram_bytes *= 16;
  const topology::Topology topo = topology::GenerateNode(chip);
  partition::PlanOptions po;
  po.workload.context = 64;
  const int64_t units = spec.num_layers + 2;
  for (int s = 0; s < stages; ++s) {
    po.layout.push_back({units * (s + 1) / stages - units * s / stages, tp});
  }
  const partition::Plan plan = partition::MakePlan(spec, topo, po);
  RunConfig config;
  config.inputs = {spec, {}, topo, plan, Weights()};
  config.deploy.slots = 1;
  config.deploy.transport.backend = "inproc";
  config.workers = Workers::kThreads;
  config.keep_logits = false;
  config.log =
      spdlog::null_logger_mt("runtime-bench-" + std::to_string(tp) + "x" + std::to_string(stages));
  Launch launch(std::move(config));
  launch.Start();
  launch.Deploy();
  const std::vector<Request> requests = {OneRequest()};
  const std::clock_t cpu = std::clock();
  for (auto _ : state) {
    benchmark::DoNotOptimize(launch.coordinator().Generate(requests));
  }
  Count(state, cpu);
  state.counters["chips"] = tp * stages;
}
BENCHMARK(BM_InProcessInproc205M)
    ->ArgNames({"tp", "pp"})
    ->Args({1, 1})
    ->Args({2, 1})
    ->Args({1, 2})
    ->Args({4, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace
}  // namespace lockstep::launch
