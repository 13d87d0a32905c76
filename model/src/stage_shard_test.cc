#include "lockstep/model/stage_shard.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <map>
#include <random>

#include "lockstep/common/error.h"
#include "lockstep/model/kernels.h"
#include "lockstep/model/quantize.h"
#include "lockstep/model/reference.h"
#include "lockstep/model/shard_loader.h"
#include "test_models.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;
using testing::SameBits;
using testing::ShardableModel;

// Every shard of every stage, run phase by phase; the collectives combine in memory, either whole
// on every rank or segment by segment (reduce-scatter then all-gather) as a link transport would.
class Pipeline {
 public:
  Pipeline(const ModelSpec& spec, const LlamaWeights& w, std::vector<StageUnits> stages,
           bool segmented)
      : spec_(spec), stages_(std::move(stages)), segmented_(segmented) {
    for (size_t s = 0; s < stages_.size(); ++s) {
      std::vector<StageShard> ranks;
      for (int r = 0; r < stages_[s].tp; ++r) {
        ranks.emplace_back(spec, ExtractShard(w, spec, stages_, static_cast<int>(s), r));
      }
      shards_.push_back(std::move(ranks));
    }
  }

  // One step: each group's tokens at the slot's next positions; the logits of each group's last
  // row.
  std::vector<std::vector<float>> Step(
      const std::vector<std::pair<int32_t, std::vector<int32_t>>>& work) {
    const int64_t h = spec_.hidden_size;
    std::vector<RowGroup> groups;
    std::vector<int32_t> tokens;
    for (const auto& [slot, t] : work) {
      groups.push_back({slot, length_[slot], static_cast<int64_t>(t.size())});
      length_[slot] += static_cast<int64_t>(t.size());
      tokens.insert(tokens.end(), t.begin(), t.end());
    }
    const auto rows = static_cast<int64_t>(tokens.size());
    std::vector<float> x(static_cast<size_t>(rows * h));
    for (size_t s = 0; s < stages_.size(); ++s) {
      std::vector<StageShard>& ranks = shards_[s];
      const StageUnits& u = stages_[s];
      if (u.embedding) {
        std::vector<Partial> parts;
        for (StageShard& sh : ranks) parts.push_back(sh.Embed(tokens));
        Collect(
            parts,
            [&](int64_t b, int64_t e, float* out) {
              CombineEmbedding(parts, tokens, spec_.vocab_size, b, e, out);
            },
            rows, x, false);
      }
      for (int64_t layer = u.first_layer; layer < u.end_layer; ++layer) {
        for (bool mlp : {false, true}) {
          std::vector<Partial> parts;
          for (StageShard& sh : ranks) {
            parts.push_back(mlp ? sh.MlpPartials(layer, x.data(), rows)
                                : sh.AttentionPartials(layer, x.data(), groups));
          }
          const int64_t total = ReductionChunks(mlp ? spec_.intermediate_size : spec_.q_width());
          const std::vector<float>& bias = ranks[0].RowParallelBias(layer, mlp);
          Collect(
              parts,
              [&](int64_t b, int64_t e, float* out) {
                CombineRowParallel(parts, total, b, e, bias, out);
              },
              rows, x, true);
        }
      }
      if (u.head) {
        std::vector<std::vector<float>> logits;
        std::vector<float> last;
        int64_t end = 0;
        for (const RowGroup& g : groups) {
          end += g.count;
          last.insert(last.end(), x.begin() + (end - 1) * h, x.begin() + end * h);
        }
        std::vector<std::vector<float>> slices;
        for (StageShard& sh : ranks) {
          slices.push_back(sh.HeadLogits(last.data(), static_cast<int64_t>(groups.size())));
        }
        for (size_t g = 0; g < groups.size(); ++g) {
          std::vector<float> row;
          for (size_t r = 0; r < ranks.size(); ++r) {
            const int64_t n = ranks[r].weights().vocab_count;
            row.insert(row.end(), slices[r].begin() + static_cast<int64_t>(g) * n,
                       slices[r].begin() + static_cast<int64_t>(g + 1) * n);
          }
          logits.push_back(std::move(row));
        }
        return logits;
      }
    }
    return {};
  }

 private:
  template <typename Combine>
  void Collect(const std::vector<Partial>& parts, Combine combine, int64_t rows,
               std::vector<float>& x, bool residual) {
    const int64_t h = spec_.hidden_size;
    std::vector<float> y(x.size());
    const auto tp = static_cast<int64_t>(parts.size());
    if (!segmented_) {
      combine(0, h, y.data());
    } else {
      // Segment j of the hidden dimension is combined from slices of every rank's partials.
      for (int64_t j = 0; j < tp; ++j) {
        const int64_t b = h * j / tp, e = h * (j + 1) / tp;
        std::vector<float> seg(static_cast<size_t>(rows * (e - b)));
        combine(b, e, seg.data());
        for (int64_t r = 0; r < rows; ++r) {
          std::copy_n(seg.begin() + r * (e - b), e - b, y.begin() + r * h + b);
        }
      }
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] = residual ? x[i] + y[i] : y[i];
  }

  ModelSpec spec_;
  std::vector<StageUnits> stages_;
  bool segmented_;
  std::vector<std::vector<StageShard>> shards_;
  std::map<int32_t, int64_t> length_;
};

std::vector<std::vector<StageUnits>> Splits() {
  std::vector<std::vector<StageUnits>> out;
  for (int tp : {1, 2, 4, 8}) {
    for (int64_t stages : {2, 3}) {
      out.push_back(StagesFromLayout(ModelLayout::Uniform(4, stages, tp)));
    }
  }
  // Embedding-only and head-only stages (as a plan may make), mixed degrees.
  out.push_back({{true, 0, 0, false, 2},
                 {false, 0, 3, false, 8},
                 {false, 3, 4, false, 1},
                 {false, 4, 4, true, 4}});
  return out;
}

// Batch 4 (prompts of different lengths, then decode) and batch 1 (sequence 0 alone) through
// every split: every logit row equals the reference's bit for bit.
// The same with int8 weights of both schemes (weight.h).
void ExpectPhasesMatchReference(WeightFormat format) {
  const ModelSpec spec = ShardableModel("", "qwen2");
  const LlamaWeights weights = IsInt8(format) ? QuantizeWeights(testing::SharpWeights(spec), format)
                                              : testing::SharpWeights(spec);
  const ReferenceModel reference(spec, weights);
  const std::vector<std::vector<int32_t>> prompts = {{3, 1, 4, 1, 5}, {9, 2, 6}, {199}, {0, 7}};
  auto decode = [](int step, size_t i) {
    return std::vector<int32_t>{static_cast<int32_t>((step * 31 + i * 17) % 200)};
  };
  std::vector<std::vector<std::vector<float>>> want;  // [step][sequence]
  {
    std::vector<KvCache> caches;
    for (size_t i = 0; i < 4; ++i) caches.push_back(reference.NewCache(16));
    for (int step = 0; step < 3; ++step) {
      std::vector<SequenceStep> batch;
      for (size_t i = 0; i < 4; ++i) {
        batch.push_back({&caches[i], step == 0 ? prompts[i] : decode(step, i)});
      }
      want.push_back(reference.Forward(batch));
    }
  }
  for (const std::vector<StageUnits>& stages : Splits()) {
    for (bool segmented : {false, true}) {
      Pipeline batched(spec, weights, stages, segmented);
      Pipeline alone(spec, weights, stages, segmented);
      for (int step = 0; step < 3; ++step) {
        std::vector<std::pair<int32_t, std::vector<int32_t>>> work;
        for (size_t i = 0; i < 4; ++i) {
          // Slots out of order: a row group's place in the batch must not matter.
          work.emplace_back(static_cast<int32_t>(3 - i), step == 0 ? prompts[i] : decode(step, i));
        }
        const auto got = batched.Step(work);
        ASSERT_EQ(got.size(), 4u);
        for (size_t i = 0; i < 4; ++i) {
          EXPECT_TRUE(SameBits(got[i], want[static_cast<size_t>(step)][i]))
              << "stages " << stages.size() << " tp " << stages[1].tp << " step " << step
              << " sequence " << i << (segmented ? " segmented" : "");
        }
        const auto one = alone.Step({{5, step == 0 ? prompts[0] : decode(step, 0)}});
        EXPECT_TRUE(SameBits(one.at(0), want[static_cast<size_t>(step)][0]));
      }
    }
  }
}

TEST(StageShard, PhasesMatchReferenceForEverySplit) {
  for (WeightFormat f :
       {WeightFormat::kFp32, WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    SCOPED_TRACE(std::string(WeightFormatName(f)));
    ExpectPhasesMatchReference(f);
  }
}

TEST(StageShard, ShardHoldsOnlyItsSlices) {
  const ModelSpec spec = ShardableModel("", "qwen2");
  const LlamaWeights weights = testing::SharpWeights(spec);
  const auto stages = StagesFromLayout(ModelLayout::Uniform(4, 2, 4));
  const ShardWeights s = ExtractShard(weights, spec, stages, 1, 2);
  EXPECT_TRUE(s.embed.empty());
  EXPECT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.vocab_begin, 100);
  EXPECT_EQ(s.vocab_count, 50);
  EXPECT_EQ(s.head.values.size(), 50u * 96u);
  EXPECT_EQ(s.layers[0].q.values.size(), 4u * 32u * 96u);  // 4 query heads of 16
  EXPECT_EQ(s.layers[0].down.values.size(), 96u * 128u);
  // Far less than the whole model: a quarter of the layers' matrices of half the layers.
  const ShardWeights whole =
      ExtractShard(weights, spec, StagesFromLayout(ModelLayout::Uniform(4, 1, 1)), 0, 0);
  EXPECT_LT(s.bytes() * 6, whole.bytes());
}

// The distributed runtime's shards are dense: a mixture of experts is refused naming where it
// runs (in process).
TEST(StageShard, MixtureOfExpertsIsRefusedSayingWhereItRuns) {
  const ModelSpec spec = testing::TinyMixtral();
  const LlamaWeights weights = GenerateLlamaWeights(spec, 1);
  const auto stages = StagesFromLayout(ModelLayout::Uniform(2, 1, 1));
  try {
    ExtractShard(weights, spec, stages, 0, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("mixture of experts"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in process"), std::string::npos) << e.what();
  }
  EXPECT_THROW(GenerateShard(spec, 1, stages, 0, 0), Error);
}

TEST(StageShard, RejectsBadStagesAndPositions) {
  const ModelSpec spec = ShardableModel("", "qwen2");
  const LlamaWeights weights = testing::SharpWeights(spec);
  EXPECT_THROW(ValidateStages(spec, {{true, 0, 3, false, 1}, {false, 3, 4, false, 1}}), Error);
  EXPECT_THROW(ValidateStages(spec, {{true, 0, 4, true, 3}}), Error);
  EXPECT_THROW(ExtractShard(weights, spec, {{true, 0, 4, true, 2}}, 0, 2), Error);
  StageShard shard(spec, ExtractShard(weights, spec, {{true, 0, 4, true, 1}}, 0, 0));
  std::vector<float> x(static_cast<size_t>(spec.hidden_size), 0.5f);
  const RowGroup skip{0, 3, 1};  // the cache holds nothing yet
  EXPECT_THROW(shard.AttentionPartials(0, x.data(), {&skip, 1}), Error);
  const std::vector<int32_t> bad = {200};
  EXPECT_THROW(shard.Embed(bad), Error);
}

// A shard survives the trip through a safetensors buffer exactly, and a buffer that does not
// belong to the model is refused naming the tensor.
TEST(StageShard, BytesRoundTrip) {
  const ModelSpec spec = ShardableModel("", "qwen2");
  for (WeightFormat format :
       {WeightFormat::kFp32, WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    const LlamaWeights weights = IsInt8(format)
                                     ? QuantizeWeights(testing::SharpWeights(spec), format)
                                     : testing::SharpWeights(spec);
    const std::vector<StageUnits> stages = {{true, 0, 1, false, 2}, {false, 1, 4, true, 4}};
    for (int stage = 0; stage < 2; ++stage) {
      for (int rank = 0; rank < stages[static_cast<size_t>(stage)].tp; ++rank) {
        const ShardWeights s = ExtractShard(weights, spec, stages, stage, rank);
        const std::vector<std::byte> bytes = ShardToBytes(s, spec);
        const ShardWeights back = ShardFromBytes(bytes, spec);
        EXPECT_EQ(back.stage, stage);
        EXPECT_EQ(back.rank, rank);
        EXPECT_EQ(back.vocab_begin, s.vocab_begin);
        EXPECT_TRUE(SameBits(back.embed, s.embed));
        EXPECT_TRUE(SameBits(back.head, s.head));
        EXPECT_TRUE(SameBits(back.final_norm, s.final_norm));
        ASSERT_EQ(back.layers.size(), s.layers.size());
        for (size_t l = 0; l < s.layers.size(); ++l) {
          EXPECT_TRUE(SameBits(back.layers[l].q, s.layers[l].q));
          EXPECT_TRUE(SameBits(back.layers[l].k_bias, s.layers[l].k_bias));
          EXPECT_TRUE(SameBits(back.layers[l].o, s.layers[l].o));
          EXPECT_TRUE(SameBits(back.layers[l].down, s.layers[l].down));
          EXPECT_TRUE(SameBits(back.layers[l].post_norm, s.layers[l].post_norm));
          EXPECT_EQ(back.layers[l].f_begin, s.layers[l].f_begin);
        }
        EXPECT_EQ(back.bytes(), s.bytes());
        EXPECT_EQ(back.layers.at(0).q.format, format);
      }
    }
  }
  const LlamaWeights weights = testing::SharpWeights(spec);
  const std::vector<StageUnits> stages = {{true, 0, 1, false, 2}, {false, 1, 4, true, 4}};
  // Another model (no biases, other widths) does not take this buffer.
  const ModelSpec other =
      partition::ParseModelSpec(R"({"_name_or_path": "other", "model_type": "llama",
    "hidden_size": 96, "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 4,
    "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 300,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64})",
                                "other");
  const std::vector<std::byte> bytes =
      ShardToBytes(ExtractShard(weights, spec, stages, 1, 1), spec);
  try {
    ShardFromBytes(bytes, other);
    FAIL() << "a shard of another model was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos) << e.what();
  }
  std::vector<std::byte> cut(bytes.begin(), bytes.begin() + 100);
  EXPECT_THROW(ShardFromBytes(cut, spec), Error);
}

}  // namespace
}  // namespace lockstep::model

namespace lockstep::model {
namespace {

// Degrees whose o / down slices are not whole 64-element chunks (column-parallel: each rank
// holds the weight rows of its hidden outputs) and TP above the KV heads (a KV head copied):
// the shards survive the buffer, and their column products give the unsplit product's bits.
TEST(StageShard, ColumnParallelAndReplicatedKvShards) {
  const ModelSpec spec = partition::ParseModelSpec(
      R"({"_name_or_path": "tiny-llama", "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 64})",
      "tiny-llama");
  const LlamaWeights weights = testing::SharpWeights(spec);
  for (int tp : {2, 4}) {
    EXPECT_FALSE(RowParallelProjection(spec, tp, false));
    EXPECT_FALSE(RowParallelProjection(spec, tp, true));
    const std::vector<StageUnits> stages = {{true, 0, 2, true, tp}};
    ValidateStages(spec, stages);
    std::vector<Partial> inputs;
    std::vector<ShardWeights> shards;
    for (int rank = 0; rank < tp; ++rank) {
      ShardWeights s = ExtractShard(weights, spec, stages, 0, rank);
      const ShardLayer& l = s.layers[0];
      EXPECT_EQ(l.kv_heads, 1);  // 2 KV heads: one per rank at TP 2, one copied per 2 ranks at 4
      EXPECT_EQ(l.kv_head_begin, rank * 2 / tp);
      EXPECT_EQ(l.o.values.size(), static_cast<size_t>(l.out_count * spec.q_width()));
      EXPECT_EQ(l.down.values.size(), static_cast<size_t>(l.out_count * spec.intermediate_size));
      const ShardWeights back = ShardFromBytes(ShardToBytes(s, spec), spec);
      EXPECT_TRUE(SameBits(back.layers[0].o, l.o));
      EXPECT_TRUE(SameBits(back.layers[0].down, l.down));
      EXPECT_TRUE(SameBits(back.layers[0].k, l.k));
      // This rank's slice of a down-projection input: ones scaled by the element index.
      Partial p;
      p.kind = PartialKind::kColumnInput;
      p.rows = 1;
      p.out_begin = l.f_begin;
      p.out_count = l.f_count;
      for (int64_t i = 0; i < l.f_count; ++i) {
        p.values.push_back(0.01f * static_cast<float>(l.f_begin + i));
      }
      inputs.push_back(std::move(p));
      shards.push_back(std::move(s));
    }
    // Every rank's segment of the column product equals the whole product's outputs.
    std::vector<float> x;
    for (const Partial& p : inputs) x.insert(x.end(), p.values.begin(), p.values.end());
    std::vector<float> want(static_cast<size_t>(spec.hidden_size));
    MatMulTransposed(x.data(), 1, weights.layers[0].down.values.data(), spec.hidden_size,
                     spec.intermediate_size, nullptr, want.data());
    for (int rank = 0; rank < tp; ++rank) {
      const StageShard shard(spec, shards[static_cast<size_t>(rank)]);
      const std::vector<float> got = shard.ColumnOutputs(0, true, inputs);
      const ShardLayer& l = shards[static_cast<size_t>(rank)].layers[0];
      EXPECT_TRUE(
          SameBits(got, {want.begin() + l.out_begin, want.begin() + l.out_begin + l.out_count}))
          << "tp " << tp << " rank " << rank;
    }
  }
}

// The combine of row-parallel partials at the 205M model's down-projection geometry (2816 wide:
// 44 chunks, not a power of two; 22 per rank at TP 2, 11 at TP 4), each rank's partials from its
// contraction slice, whole and by segment, in rank order and shuffled: every output equals the
// unsplit product + bias bit for bit.
TEST(StageShard, RowParallelCombineReproducesTheProductAtAnyDegree) {
  const int64_t in = 2816, out = 20, rows = 3, total = ReductionChunks(in);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto random = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) f = dist(rng);
    return v;
  };
  const std::vector<float> x = random(rows * in), w = random(out * in), bias = random(out);
  std::vector<float> want(static_cast<size_t>(rows * out));
  MatMulTransposed(x.data(), rows, w.data(), out, in, bias.data(), want.data());
  for (int64_t tp : {2, 4}) {
    const int64_t width = in / tp;
    std::vector<Partial> parts;
    for (int64_t rank = 0; rank < tp; ++rank) {
      std::vector<float> xs, ws;  // the rank's contraction slice
      for (int64_t r = 0; r < rows; ++r) {
        xs.insert(xs.end(), x.begin() + r * in + rank * width,
                  x.begin() + r * in + (rank + 1) * width);
      }
      for (int64_t o = 0; o < out; ++o) {
        ws.insert(ws.end(), w.begin() + o * in + rank * width,
                  w.begin() + o * in + (rank + 1) * width);
      }
      Partial p;
      p.rows = rows;
      p.out_count = out;
      p.chunks = ReductionChunks(width);
      p.first_chunk = rank * p.chunks;
      p.values.resize(static_cast<size_t>(rows * out * p.chunks));
      MatMulChunkPartials(xs.data(), rows, ws.data(), out, width, p.values.data());
      parts.push_back(std::move(p));
    }
    for (bool shuffled : {false, true}) {
      if (shuffled) std::swap(parts.front(), parts.back());
      std::vector<float> got(want.size());
      CombineRowParallel(parts, total, 0, out, bias, got.data());
      EXPECT_TRUE(SameBits(got, want)) << "tp " << tp;
      const int64_t b = 5, e = 17;  // one segment, from slices
      std::vector<Partial> sliced;
      for (const Partial& p : parts) sliced.push_back(p.Slice(b, e - b));
      std::vector<float> seg(static_cast<size_t>(rows * (e - b)));
      CombineRowParallel(sliced, total, b, e, bias, seg.data());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t o = b; o < e; ++o) {
          EXPECT_EQ(std::bit_cast<uint32_t>(seg[static_cast<size_t>(r * (e - b) + o - b)]),
                    std::bit_cast<uint32_t>(want[static_cast<size_t>(r * out + o)]))
              << "tp " << tp << " row " << r << " output " << o;
        }
      }
      // What a one-shot all-reduce exchanges: each rank's tree-node sums, far fewer values.
      std::vector<Partial> nodes;
      for (const Partial& p : parts) nodes.push_back(p.TreeNodeSums(total));
      EXPECT_LT(nodes.front().values.size(), parts.front().values.size());
      std::vector<float> from_nodes(want.size());
      CombineRowParallel(nodes, total, 0, out, bias, from_nodes.data());
      EXPECT_TRUE(SameBits(from_nodes, want)) << "tp " << tp << " from tree-node sums";
      std::vector<Partial> mixed = nodes;  // chunk partials and node sums do not mix
      mixed.front() = parts.front();
      EXPECT_THROW(CombineRowParallel(mixed, total, 0, out, bias, from_nodes.data()), Error);
    }
    // A missing rank is an error, not a silent zero.
    parts.pop_back();
    std::vector<float> got(want.size());
    EXPECT_THROW(CombineRowParallel(parts, total, 0, out, bias, got.data()), Error);
  }
}

}  // namespace
}  // namespace lockstep::model
