// Reference decode speed against the memory-bandwidth bound (issue #6): a 205M-parameter Llama
// (hidden 1024, intermediate 2816, 16 layers, 16 heads, vocab 32000) in fp32, and the same
// weights quantized to int8 (issue #22). Decode reads every weight once per token, so tokens/s
// <= read bandwidth / weight bytes per token.
//
//   build/bench/model_bench --benchmark_filter='ReadBandwidth|Decode'
// The bound uses the faster of the two read-bandwidth figures.
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "lockstep/model/kernels.h"
#include "lockstep/model/quantize.h"
#include "lockstep/model/reference.h"
#include "lockstep/partition/model_spec.h"

namespace lockstep::model {
namespace {

typedef float Lanes __attribute__((vector_size(32)));

// One core's sustained read bandwidth: a 512 MiB buffer (far beyond the caches) summed with
// independent accumulators, so the loop is bound by memory, not by add latency.
void BM_ReadBandwidth(benchmark::State& state) {
  const size_t n = size_t{512} << 20 >> 2;
  std::vector<float> buffer(n, 1.0f);
  for (auto _ : state) {
    Lanes a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (size_t i = 0; i < n; i += 32) {
      Lanes v[4];
      std::memcpy(v, buffer.data() + i, sizeof(v));
      a0 += v[0];
      a1 += v[1];
      a2 += v[2];
      a3 += v[3];
    }
    Lanes s = a0 + a1 + a2 + a3;
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(n * sizeof(float)));
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// The same buffer read as eight interleaved streams (eighths of the buffer, one 32-byte load of
// each per step, eight accumulators in registers). On the EPYC VM of BENCHMARKS.md this reads
// ~1.6x faster than the single stream above, and the 8-row matrix-vector kernel reads exactly
// this way, so the bound uses the faster of the two.
void BM_ReadBandwidth8Streams(benchmark::State& state) {
  const size_t n = size_t{512} << 20 >> 2, part = n / 8;
  std::vector<float> buffer(n, 1.0f);
  for (auto _ : state) {
    Lanes a[8] = {};
    for (size_t i = 0; i < part; i += 8) {
#pragma GCC unroll 8
      for (size_t k = 0; k < 8; ++k) {
        Lanes v;
        std::memcpy(&v, buffer.data() + k * part + i, sizeof(v));
        a[k] += v;
      }
    }
    Lanes s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(n * sizeof(float)));
}
BENCHMARK(BM_ReadBandwidth8Streams)->Unit(benchmark::kMillisecond)->MinTime(2.0);
// Both cores at once, each on its own buffer, as the two ranks of a TP-2 decode read their
// shards: bytes_per_second is the two threads' sum over the wall time, so against the 1-thread
// figure it is the most a second core can add to a bandwidth-bound decode (issue #7).
BENCHMARK(BM_ReadBandwidth8Streams)
    ->Name("BM_ReadBandwidth8Streams/2cores")
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->Threads(2)
    ->UseRealTime();

partition::ModelSpec Llama205M() {
  return partition::ParseModelSpec(R"({"_name_or_path": "llama-205m", "model_type": "llama",
      "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 16,
      "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 32000,
      "rms_norm_eps": 1e-5, "max_position_embeddings": 2048})",
                                   "bench");
}

// The 205M model's generated weights in the format of state.range(0): 0 fp32, 1 int8-block32,
// 2 int8-channel (weight.h), built once per format.
const ReferenceModel& Model205M(int64_t format_index) {
  static std::map<int64_t, std::unique_ptr<ReferenceModel>> models;
  std::unique_ptr<ReferenceModel>& m = models[format_index];
  if (!m) {
    const partition::ModelSpec spec = Llama205M();
    LlamaWeights w = GenerateLlamaWeights(spec, 1);
    if (format_index > 0) {
      w = QuantizeWeights(
          w, format_index == 1 ? WeightFormat::kInt8Block32 : WeightFormat::kInt8Channel);
    }
    m = std::make_unique<ReferenceModel>(spec, std::move(w));
  }
  return *m;
}

// Bytes of the decode-time weights of a model: every projection but the embedding table.
int64_t DecodeWeightBytes(const LlamaWeights& w) {
  int64_t bytes = w.head().bytes();
  for (const LayerWeights& l : w.layers) {
    for (const Weight* m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) bytes += m->bytes();
  }
  return bytes;
}

// One decoded token of the 205M model, fp32 (format 0) or int8 (1 per block, 2 per channel):
// issue #22 compares int8 decode tokens/s to fp32's (target >= 2.5x).
void BM_DecodeReference205M(benchmark::State& state) {
  const ReferenceModel& model = Model205M(state.range(0));
  KvCache cache = model.NewCache(2048);
  std::vector<SequenceStep> step = {{&cache, {1, 2, 3, 4, 5, 6, 7, 8}}};
  model.Forward(step);
  int32_t token = 9;
  for (auto _ : state) {
    if (cache.length() >= cache.capacity()) state.SkipWithError("cache full");
    step[0].tokens = {token};
    const std::vector<std::vector<float>> logits = model.Forward(step);
    token = static_cast<int32_t>(std::max_element(logits[0].begin(), logits[0].end()) -
                                 logits[0].begin());
  }
  const int64_t bytes = DecodeWeightBytes(model.weights());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weight_MB_per_token"] = static_cast<double>(bytes) / 1e6;
}
BENCHMARK(BM_DecodeReference205M)
    ->ArgName("int8")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(5.0);

// Only the matrix-vector products of one decoded token, on the same weights in the same order:
// the gap to BM_DecodeReference205M is everything else (norms, RoPE, attention, SiLU, copies).
void BM_DecodeMatVecsOnly205M(benchmark::State& state) {
  const partition::ModelSpec spec = Llama205M();
  const LlamaWeights& w = Model205M(state.range(0)).weights();
  std::vector<float> x(static_cast<size_t>(spec.intermediate_size), 0.01f),
      y(static_cast<size_t>(spec.vocab_size));
  for (auto _ : state) {
    for (const LayerWeights& l : w.layers) {
      for (const Weight* m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) {
        MatMul(x.data(), 1, *m, nullptr, y.data());
      }
    }
    MatMul(x.data(), 1, w.head(), nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const int64_t bytes = DecodeWeightBytes(w);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeMatVecsOnly205M)
    ->ArgName("int8")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(5.0);

// The matrix-vector products of one decoded token on one rank of a TP group of degree
// state.range(0) (issue #7), in StageShard's order and shapes: q/k/v and gate/up column slices
// with MatMulTransposed, the o and down contraction slices as chunk partials
// (MatMulChunkPartials; degree 1: MatMulTransposed, as a degree-1 stage does), the head's vocab
// slice. bytes_per_second against BM_DecodeMatVecsOnly205M says whether a rank's shapes stream
// as fast as the whole model's; run two at once to see what two ranks get from two cores.
void BM_DecodeMatVecsTpRank205M(benchmark::State& state) {
  const partition::ModelSpec spec = Llama205M();
  const int64_t tp = state.range(0), h = spec.hidden_size, f = spec.intermediate_size / tp;
  const int64_t q = h / tp, vocab = spec.vocab_size / tp;
  struct Layer {
    std::vector<float> q, k, v, o, gate, up, down;
  };
  std::vector<Layer> layers(static_cast<size_t>(spec.num_layers));
  for (Layer& l : layers) {
    for (std::vector<float>* m : {&l.q, &l.k, &l.v, &l.o}) m->assign(q * h, 0.5f);
    for (std::vector<float>* m : {&l.gate, &l.up, &l.down}) m->assign(f * h, 0.5f);
  }
  const std::vector<float> head(static_cast<size_t>(vocab * h), 0.5f);
  std::vector<float> x(static_cast<size_t>(f > h ? f : h), 0.01f);
  std::vector<float> y(static_cast<size_t>(vocab > h * 22 ? vocab : h * 22));
  auto row_parallel = [&](const std::vector<float>& w, int64_t in) {
    if (tp == 1) {
      MatMulTransposed(x.data(), 1, w.data(), h, in, nullptr, y.data());
    } else {
      MatMulChunkPartials(x.data(), 1, w.data(), h, in, y.data());
    }
  };
  for (auto _ : state) {
    for (const Layer& l : layers) {
      for (const std::vector<float>* m : {&l.q, &l.k, &l.v}) {
        MatMulTransposed(x.data(), 1, m->data(), q, h, nullptr, y.data());
      }
      row_parallel(l.o, q);
      MatMulTransposed(x.data(), 1, l.gate.data(), f, h, nullptr, y.data());
      MatMulTransposed(x.data(), 1, l.up.data(), f, h, nullptr, y.data());
      row_parallel(l.down, f);
    }
    MatMulTransposed(x.data(), 1, head.data(), vocab, h, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const int64_t bytes = (spec.num_layers * (4 * q * h + 3 * f * h) + vocab * h) * 4;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeMatVecsTpRank205M)
    ->ArgName("tp")
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3.0);

}  // namespace
}  // namespace lockstep::model

namespace lockstep::model {
namespace {

// One decode-shaped product (1 row) against a 2816 x 1024 weight, out of cache.
void BM_MatVec(benchmark::State& state) {
  const int64_t out = 2816, in = 1024, copies = 24;  // 277 MB: no cache reuse
  std::vector<float> w(static_cast<size_t>(out * in * copies), 0.5f), x(in, 1.0f), y(out);
  int64_t c = 0;
  for (auto _ : state) {
    MatMulTransposed(x.data(), 1, w.data() + (c++ % copies) * out * in, out, in, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * out * in * 4);
}
BENCHMARK(BM_MatVec)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lockstep::model
