#include "lockstep/partition/cost_model.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "lockstep/common/error.h"

namespace lockstep::partition {
namespace {

ModelSpec Example(const std::string& name) {
  return LoadModelSpec(std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" / "models" / name);
}

OpCost Find(const std::vector<OpCost>& ops, OpKind kind) {
  for (const OpCost& op : ops) {
    if (op.kind == kind) return op;
  }
  ADD_FAILURE() << "no op " << OpKindName(kind);
  return {};
}

int64_t SumOf(const std::vector<OpCost>& ops, OpKind kind, int64_t OpCost::*field) {
  int64_t sum = 0;
  for (const OpCost& op : ops) {
    if (op.kind == kind) sum += op.*field;
  }
  return sum;
}

TEST(CostModelTest, OpsComeInExecutionOrder) {
  const ModelSpec m = Example("tiny-llama");
  const std::vector<OpCost> ops = ModelOps(m, Workload{});
  ASSERT_EQ(ops.size(), 1u + 2 * 9 + 3);
  EXPECT_EQ(ops.front().kind, OpKind::kEmbedding);
  EXPECT_EQ(ops[1].kind, OpKind::kAttentionNorm);
  EXPECT_EQ(ops[1].layer, 0);
  EXPECT_EQ(ops[10].layer, 1);
  EXPECT_EQ(ops[18].kind, OpKind::kMlpResidual);
  EXPECT_EQ(ops.back().kind, OpKind::kSampling);
}

TEST(CostModelTest, ResidentWeightsAreTheParameterCount) {
  for (const char* name : {"llama-2-70b", "mixtral-8x7b", "qwen2-7b"}) {
    const ModelSpec m = Example(name);
    for (Dtype d : {Dtype::kInt8, Dtype::kFp16}) {
      const OpCost sum = SumOps(ModelOps(m, Workload{.dtype = d}));
      EXPECT_EQ(sum.weight_bytes, WeightBytes(m, d)) << name;
    }
  }
}

TEST(CostModelTest, DecodeMatrixFlopsFollowTheWeights) {
  const ModelSpec m = Example("llama-2-7b");
  const ParameterCounts c = CountParameters(m);
  const Workload w{.phase = Phase::kDecode, .batch = 3, .context = 100};
  const std::vector<OpCost> ops = ModelOps(m, w);
  const int64_t proj = SumOf(ops, OpKind::kQkvProjection, &OpCost::flops) +
                       SumOf(ops, OpKind::kOutputProjection, &OpCost::flops);
  EXPECT_EQ(proj, 3 * 32 * 2 * c.attention_per_layer);
  EXPECT_EQ(SumOf(ops, OpKind::kMlp, &OpCost::flops), 3 * 32 * (2 * c.mlp_per_layer + 5 * 11008));
  EXPECT_EQ(SumOf(ops, OpKind::kLmHead, &OpCost::flops), 3 * 2 * c.lm_head);
  // Attention: 4 x heads x head_dim per attended token plus softmax, per sequence and layer.
  EXPECT_EQ(SumOf(ops, OpKind::kAttention, &OpCost::flops), 32 * 3 * 100 * (4 * 32 * 128 + 5 * 32));
}

TEST(CostModelTest, KvCacheMatchesBytesPerToken) {
  const ModelSpec m = Example("llama-2-70b");
  const Workload w{.batch = 4, .context = 1000, .dtype = Dtype::kInt8};
  const OpCost sum = SumOps(ModelOps(m, w));
  EXPECT_EQ(sum.kv_resident_bytes, 4 * 1000 * KvCacheBytesPerToken(m, Dtype::kInt8));
  // Decode reads every cached K/V once and writes the new token's.
  EXPECT_EQ(sum.kv_bytes, 4 * (1000 + 1) * KvCacheBytesPerToken(m, Dtype::kInt8));
}

TEST(CostModelTest, SlidingWindowCapsTheCache) {
  const ModelSpec m = Example("mistral-7b-v0.1");
  ASSERT_EQ(m.sliding_window, 4096);
  const OpCost at8k = SumOps(ModelOps(m, Workload{.context = 8192}));
  const OpCost at4k = SumOps(ModelOps(m, Workload{.context = 4096}));
  EXPECT_EQ(at8k.kv_resident_bytes, at4k.kv_resident_bytes);
  EXPECT_EQ(at8k.kv_resident_bytes, 4096 * KvCacheBytesPerToken(m, Dtype::kFp16));
}

TEST(CostModelTest, PrefillAttendsCausallyAndSamplesOnlyTheLastToken) {
  const ModelSpec m = Example("tiny-llama");
  const Workload w{.phase = Phase::kPrefill, .batch = 2, .context = 10, .dtype = Dtype::kFp32};
  const std::vector<OpCost> layer = LayerOps(m, w);
  const int64_t pairs = 2 * 10 * 11 / 2;
  EXPECT_EQ(Find(layer, OpKind::kAttention).flops, pairs * (4 * 4 * 16 + 5 * 4));
  EXPECT_EQ(Find(layer, OpKind::kQkvProjection).flops, 2 * 20 * 64 * (4 + 2 * 2) * 16);
  const std::vector<OpCost> head = HeadOps(m, w);
  EXPECT_EQ(Find(head, OpKind::kLmHead).flops, 2 * 2 * 64 * 256);
}

TEST(CostModelTest, TensorParallelShardsAndReplicatesKvHeads) {
  const ModelSpec m = Example("llama-2-70b");  // 64 heads, 8 KV heads
  const Workload w{.dtype = Dtype::kInt8};
  const int64_t h = 8192, hd = 128;
  const OpCost one = Find(LayerOps(m, w, 1), OpKind::kQkvProjection);
  const OpCost tp8 = Find(LayerOps(m, w, 8), OpKind::kQkvProjection);
  const OpCost tp16 = Find(LayerOps(m, w, 16), OpKind::kQkvProjection);
  EXPECT_EQ(8 * tp8.weight_bytes, one.weight_bytes);
  // TP 16 > 8 KV heads: each chip holds 4 query heads and one (replicated) KV head.
  EXPECT_EQ(tp16.weight_bytes, h * (4 + 2) * hd);
  EXPECT_EQ(Find(LayerOps(m, w, 16), OpKind::kMlp).weight_bytes, 3 * h * (28672 / 16));
  EXPECT_EQ(Find(LayerOps(m, w, 8), OpKind::kMlp).allreduce_bytes, h);
  EXPECT_EQ(Find(LayerOps(m, w, 1), OpKind::kMlp).allreduce_bytes, 0);
  // Norms are replicated, not sharded.
  EXPECT_EQ(Find(LayerOps(m, w, 8), OpKind::kAttentionNorm).weight_bytes, h);
}

TEST(CostModelTest, TensorParallelDivisibility) {
  const ModelSpec llama70 = Example("llama-2-70b");
  EXPECT_EQ(TensorParallelProblem(llama70, 8), "");
  EXPECT_EQ(TensorParallelProblem(llama70, 64), "");
  EXPECT_NE(TensorParallelProblem(llama70, 3).find("num_attention_heads 64"), std::string::npos);
  const ModelSpec qwen = Example("qwen2-7b");  // 28 heads, 4 KV heads
  EXPECT_EQ(TensorParallelProblem(qwen, 4), "");
  EXPECT_NE(TensorParallelProblem(qwen, 8).find("num_attention_heads 28"), std::string::npos);
  EXPECT_THROW(LayerOps(qwen, Workload{}, 8), Error);
  EXPECT_THROW(LayerOps(qwen, Workload{.batch = 0}, 1), Error);
}

TEST(CostModelTest, MoeStepsReadOnlyTouchedExperts) {
  const ModelSpec m = Example("mixtral-8x7b");
  const int64_t expert = 3LL * 4096 * 14336 * 2;  // fp16
  const int64_t router = 4096LL * 8 * 2;
  const OpCost b1 = Find(LayerOps(m, Workload{.batch = 1}), OpKind::kMlp);
  EXPECT_EQ(b1.weight_bytes, 8 * expert + router);
  EXPECT_EQ(b1.weight_read_bytes, 2 * expert + router);
  const OpCost b8 = Find(LayerOps(m, Workload{.batch = 8}), OpKind::kMlp);
  EXPECT_EQ(b8.weight_read_bytes, 8 * expert + router);
}

TEST(CostModelTest, DecodeAtBatchOneIsWeightStreamBoundOnLpu) {
  const ModelSpec m = Example("llama-2-70b");
  const topology::ChipSpec chip = topology::LpuV1();
  const ChipCostParams p = LpuV1CostParams();
  const OpCost mlp = Find(LayerOps(m, Workload{.dtype = Dtype::kInt8}, 8), OpKind::kMlp);
  const OpTime t = TimeOp(mlp, Dtype::kInt8, chip, p);
  EXPECT_EQ(t.bound, Bound::kWeightStream);
  // 3 x 8192 x 3584 bytes at the fitted streaming rate, after two matrix fills and a vector
  // fill (gate+up, SiLU, down).
  const int64_t rate_per_ns = p.weight_stream_bytes_per_s / 1'000'000'000;
  EXPECT_EQ(t.weight_ns,
            (3LL * 8192 * 3584 * 1000 + rate_per_ns * 1000 - 1) / (rate_per_ns * 1000));
  EXPECT_EQ(t.fixed_ns, 2 * p.matrix_fill_ns + p.vector_fill_ns);
  EXPECT_EQ(t.ns, t.fixed_ns + t.weight_ns);
  // A long prefill reuses each weight thousands of times: compute bound.
  const OpCost prefill = Find(
      LayerOps(m, Workload{.phase = Phase::kPrefill, .context = 4096, .dtype = Dtype::kInt8}, 8),
      OpKind::kMlp);
  EXPECT_EQ(TimeOp(prefill, Dtype::kInt8, chip, p).bound, Bound::kCompute);
  // A faster stream makes decode faster; nothing else changes.
  ChipCostParams faster = p;
  faster.weight_stream_bytes_per_s *= 2;
  EXPECT_LT(TimeOp(mlp, Dtype::kInt8, chip, faster).ns, t.ns);
}

TEST(CostModelTest, TinyOpsPayTheOverhead) {
  const topology::ChipSpec chip = topology::LpuV1();
  const ChipCostParams p = LpuV1CostParams();
  const OpCost norm = Find(LayerOps(Example("tiny-llama"), Workload{}), OpKind::kAttentionNorm);
  const OpTime t = TimeOp(norm, Dtype::kFp16, chip, p);
  EXPECT_EQ(t.bound, Bound::kOverhead);
  // An RMSNorm is two dependent vector passes (sum of squares, then scaling), each a fill.
  EXPECT_EQ(t.fixed_ns, 2 * p.vector_fill_ns);
  EXPECT_GE(t.ns, t.fixed_ns);
  EXPECT_LT(t.ns, t.fixed_ns + 10);
}

// Every fixed term is charged per op, so a layer pays it whatever its width: the per-layer
// fixed latency of a 7B layer equals a 70B layer's, and the layer sync lands once per layer.
TEST(CostModelTest, FixedTermsArePerOpAndIndependentOfWidth) {
  const topology::ChipSpec chip = topology::LpuV1();
  ChipCostParams p = LpuV1CostParams();
  p.layer_sync_ns = 1000;
  auto fixed = [&](const std::string& model) {
    int64_t sum = 0;
    for (const OpCost& op : LayerOps(Example(model), Workload{.dtype = Dtype::kInt8}, 8)) {
      sum += TimeOp(op, Dtype::kInt8, chip, p).fixed_ns;
    }
    return sum;
  };
  const int64_t f7 = fixed("llama-2-7b");
  EXPECT_EQ(f7, fixed("llama-2-70b"));
  const OpCost layer = SumOps(LayerOps(Example("llama-2-7b"), Workload{}, 8));
  EXPECT_EQ(f7, layer.matrix_passes * p.matrix_fill_ns + layer.vector_passes * p.vector_fill_ns +
                    p.layer_sync_ns);
  // qkv 1 + attention 2 + o 1 + mlp 2 matrix passes per dense layer.
  EXPECT_EQ(layer.matrix_passes, 6);
  // MoE: the router and its top-k, the experts' chain and the combine.
  const OpCost moe = Find(LayerOps(Example("mixtral-8x7b"), Workload{}, 8), OpKind::kMlp);
  EXPECT_EQ(moe.matrix_passes, 3);
  EXPECT_EQ(moe.vector_passes, 4);
}

TEST(CostModelTest, MissingDtypeComputeNamesTheChip) {
  const OpCost qkv = Find(LayerOps(Example("tiny-llama"), Workload{}), OpKind::kQkvProjection);
  try {
    TimeOp(qkv, Dtype::kBf16, topology::LpuV1(), LpuV1CostParams());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "chip lpu-v1 has no bf16 matrix compute (it supports: fp16, int8)");
  }
}

TEST(CostModelTest, LinkTimes) {
  const LinkCostParams p;
  // 12,600 bytes at 14 GB/s x 0.9 = 1 us on each of two 600 ns hops (store-and-forward, as
  // the schedule compiles a multi-hop send).
  EXPECT_EQ(TransferTimeNs(12'600, 2, 14'000'000'000, 600, p), 2 * (1000 + 600));
  EXPECT_EQ(TransferTimeNs(0, 2, 14'000'000'000, 600, p), 0);
  LinkCostParams fixed_hop = p;
  fixed_hop.hop_latency_ns = 250;
  EXPECT_EQ(TransferTimeNs(12'600, 1, 14'000'000'000, 600, fixed_hop), 1250);
  // Direct all-reduce of 8 x 12,600 bytes over 8 chips: two steps of one 12,600-byte chunk.
  const int64_t direct =
      AllReduceTimeNs(8 * 12'600, 8, AllReduceAlgorithm::kDirect, 14'000'000'000, 600, p);
  EXPECT_EQ(direct, 2 * (1000 + 600 + p.collective_step_overhead_ns));
  const int64_t ring =
      AllReduceTimeNs(8 * 12'600, 8, AllReduceAlgorithm::kRing, 14'000'000'000, 600, p);
  EXPECT_EQ(ring, 14 * (1000 + 600 + p.collective_step_overhead_ns));
  EXPECT_EQ(AllReduceTimeNs(8 * 12'600, 1, AllReduceAlgorithm::kDirect, 1, 1, p), 0);
}

}  // namespace
}  // namespace lockstep::partition

namespace lockstep::partition {
namespace {

// o column-parallel at TP 2 (query width 64: 32-element slices), down row-parallel
// (intermediate 128: one 64-element chunk per rank). A worker orders a layer's collectives by
// their form, so the two must share it: neither may be one-shot. (Over worker processes the
// mixed plan failed "a one-shot all-reduce of a column-parallel projection".)
TEST(CostModelTest, OneShotOnlyWhenBothProjectionsOfALayerAreRowParallel) {
  const ModelSpec mixed = ParseModelSpec(R"({"model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 4, "vocab_size": 256, "max_position_embeddings": 64})",
                                         "mixed");
  ASSERT_FALSE(RowParallelProjection(mixed, 2, false));
  ASSERT_TRUE(RowParallelProjection(mixed, 2, true));
  EXPECT_FALSE(OneShotAllowed(mixed, 2, OpKind::kOutputProjection));
  EXPECT_FALSE(OneShotAllowed(mixed, 2, OpKind::kMlp));
  EXPECT_TRUE(OneShotAllowed(mixed, 2, OpKind::kEmbedding));
  // Both row-parallel at TP 1 and when every slice is whole chunks.
  EXPECT_TRUE(OneShotAllowed(mixed, 1, OpKind::kMlp));
}

}  // namespace
}  // namespace lockstep::partition
