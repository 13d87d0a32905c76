#include "lockstep/model/sharded.h"

#include <gtest/gtest.h>

#include <cstring>

#include "lockstep/common/error.h"
#include "lockstep/model/quantize.h"
#include "lockstep/model/reference.h"
#include "test_models.h"

namespace lockstep::model {
namespace {

using partition::ModelSpec;
using testing::SameBits;
using testing::ShardableModel;

std::vector<ModelLayout> Layouts(int64_t layers) {
  std::vector<ModelLayout> out;
  for (int64_t tp : {1, 2, 4, 8}) {
    for (int64_t stages : {1, 3}) out.push_back(ModelLayout::Uniform(layers, stages, tp));
  }
  out.push_back({{{0, 1, 8}, {1, 3, 2}, {3, 4, 4}}});  // mixed degrees, uneven stages
  out.push_back({{{0, 3, 1}, {3, 4, 8}}});
  // TP 16: KV heads replicated (2 query heads per shard share one), 32-element slices of the
  // query width and intermediate: o and down column-parallel.
  out.push_back({{{0, 2, 16}, {2, 4, 2}}});
  // A plan's embedding-only and head-only stages with their own degrees.
  out.push_back({{{0, 2, 2}, {2, 4, 4}}, /*embed_tp=*/8, /*head_tp=*/1});
  out.push_back({{{0, 4, 1}}, /*embed_tp=*/3, /*head_tp=*/7});
  return out;
}

// Prefill 4 sequences of different lengths (batched, and sequence 0 also alone), then decode 3
// steps; every sharded logit row must equal the reference's bit for bit.
void ExpectBitIdentical(const ModelSpec& spec, const std::vector<ModelLayout>& layouts,
                        WeightFormat format = WeightFormat::kFp32) {
  const LlamaWeights weights = IsInt8(format) ? QuantizeWeights(testing::SharpWeights(spec), format)
                                              : testing::SharpWeights(spec);
  const ReferenceModel reference(spec, weights);
  const auto vocab = static_cast<int32_t>(spec.vocab_size);
  std::vector<std::vector<int32_t>> prompts = {
      {3, 1, 4, 1, 5}, {9, 2, 6}, {5, 3, 5, 8, 9, 7, 9}, {vocab - 1}};
  std::vector<std::vector<std::vector<float>>> want;  // [step][sequence]
  {
    std::vector<KvCache> caches;
    for (size_t i = 0; i < 4; ++i) caches.push_back(reference.NewCache(16));
    for (int step = 0; step < 4; ++step) {
      std::vector<SequenceStep> batch;
      for (size_t i = 0; i < 4; ++i) {
        batch.push_back({&caches[i], step == 0 ? prompts[i]
                                               : std::vector<int32_t>{static_cast<int32_t>(
                                                     (step * 31 + i * 17) % vocab)}});
      }
      want.push_back(reference.Forward(batch));
    }
  }
  for (const ModelLayout& layout : layouts) {
    const ShardedModel sharded(spec, weights, layout);
    std::vector<ShardedKvCache> caches;
    for (size_t i = 0; i < 4; ++i) caches.push_back(sharded.NewCache(16));
    ShardedKvCache alone = sharded.NewCache(16);
    for (int step = 0; step < 4; ++step) {
      std::vector<ShardedStep> batch;
      for (size_t i = 0; i < 4; ++i) {
        batch.push_back({&caches[i], step == 0 ? prompts[i]
                                               : std::vector<int32_t>{static_cast<int32_t>(
                                                     (step * 31 + i * 17) % vocab)}});
      }
      std::vector<ShardedStep> single = {{&alone, batch[0].tokens}};
      const std::vector<std::vector<float>> got = sharded.Forward(batch);
      const std::vector<float> got_alone = sharded.Forward(single)[0];
      for (size_t i = 0; i < 4; ++i) {
        EXPECT_TRUE(SameBits(got[i], want[step][i]))
            << spec.name << " layout " << layout.ToString() << " step " << step << " seq " << i;
      }
      EXPECT_TRUE(SameBits(got_alone, want[step][0]))
          << spec.name << " layout " << layout.ToString() << " step " << step << " batch 1";
    }
  }
}

TEST(ShardedModel, BitIdenticalToReferenceWithGqaAndLlama3Rope) {
  ExpectBitIdentical(
      ShardableModel(
          R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64},)"),
      Layouts(4));
}

TEST(ShardedModel, BitIdenticalToReferenceWithQwen2BiasesAndTiedEmbeddings) {
  ExpectBitIdentical(ShardableModel(R"("tie_word_embeddings": true,)", "qwen2"), Layouts(4));
}

TEST(ShardedModel, BitIdenticalWhenSlicesAreNotWholeChunks) {
  // Query width 32 and intermediate 72: at TP 2 and 4 no slice is a whole 64-element chunk, so
  // o and down are column-parallel over all-gathered inputs; TP 4 replicates the 2 KV heads.
  for (const char* type : {"llama", "qwen2"}) {
    ExpectBitIdentical(testing::TinyLlama("", type),
                       {ModelLayout::Uniform(2, 1, 2),
                        ModelLayout::Uniform(2, 2, 4),
                        {{{0, 1, 4}, {1, 2, 2}}, /*embed_tp=*/2, /*head_tp=*/4}});
  }
}

// int8 projections (weight.h): integer block products combined in the canonical tree give every
// layout the reference's bits too, with row-parallel, column-parallel (TinyLlama at TP 2/4) and
// vocab-parallel slices of the int8 weights and their scales.
TEST(ShardedModel, Int8BitIdenticalToReferenceForEveryLayout) {
  for (WeightFormat format : {WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    ExpectBitIdentical(ShardableModel(R"("tie_word_embeddings": true,)", "qwen2"), Layouts(4),
                       format);
    ExpectBitIdentical(testing::TinyLlama(),
                       {ModelLayout::Uniform(2, 1, 2), ModelLayout::Uniform(2, 2, 4)}, format);
  }
}

// Mixture of experts in process, every expert split over the shards: row-parallel experts
// (ShardableMixtral at TP 2 and 4), column-parallel ones (TinyMixtral: 32-element slices),
// mixed degrees, embedding- and head-only degrees; fp32 and int8 experts.
TEST(ShardedModel, MixtureOfExpertsBitIdenticalToReference) {
  const std::vector<ModelLayout> wide = {ModelLayout::Uniform(4, 1, 2),
                                         ModelLayout::Uniform(4, 2, 4),
                                         {{{0, 1, 4}, {1, 3, 1}, {3, 4, 2}}},
                                         {{{0, 2, 2}, {2, 4, 4}}, /*embed_tp=*/8, /*head_tp=*/3}};
  for (WeightFormat format : {WeightFormat::kFp32, WeightFormat::kInt8Block32}) {
    ExpectBitIdentical(testing::ShardableMixtral(), wide, format);
    ExpectBitIdentical(testing::TinyMixtral(),
                       {ModelLayout::Uniform(2, 1, 2), ModelLayout::Uniform(2, 2, 4)}, format);
  }
}

TEST(ShardedModel, ShardsHoldOnlyTheirSlice) {
  // A corrupted weight slice must change the result: the sharded path really computes from its
  // own copies, and a different layout gives the same bits only because the math is canonical.
  const ModelSpec spec = ShardableModel("");
  LlamaWeights w = testing::SharpWeights(spec);
  const ShardedModel a(spec, w, ModelLayout::Uniform(4, 2, 4));
  w.layers[3].down.values[5] += 1.0f;
  const ShardedModel b(spec, w, ModelLayout::Uniform(4, 2, 4));
  ShardedKvCache ca = a.NewCache(8), cb = b.NewCache(8);
  std::vector<ShardedStep> sa = {{&ca, {1, 2, 3}}}, sb = {{&cb, {1, 2, 3}}};
  EXPECT_FALSE(SameBits(a.Forward(sa)[0], b.Forward(sb)[0]));
}

TEST(ShardedModel, RejectsBadBatchesBeforeTouchingACache) {
  const ModelSpec spec = testing::TinyLlama();
  const ShardedModel model(spec, GenerateLlamaWeights(spec, 1), ModelLayout::Uniform(2, 2, 2));
  ShardedKvCache cache = model.NewCache(4);
  auto fails = [&](std::vector<ShardedStep> batch, const std::string& part) {
    try {
      model.Forward(batch);
      ADD_FAILURE() << "accepted a bad batch (" << part << ")";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
    EXPECT_EQ(cache.length(), 0);
  };
  fails({{&cache, {1, 96}}}, "token 96 is outside the vocabulary [0, 96)");
  fails({{&cache, {1}}, {&cache, {2}}}, "appears twice");
  fails({{&cache, {1, 2, 3, 4, 5}}}, "5 new tokens overflow a KV cache at 0 of 4");
  fails({{&cache, {}}}, "no new tokens");
  fails({{nullptr, {1}}}, "no KV cache");
}

TEST(ShardedModel, RejectsLayoutsThatCannotRun) {
  const ModelSpec spec = ShardableModel("");
  const LlamaWeights w = GenerateLlamaWeights(spec, 1);
  auto fails = [&](const ModelLayout& layout, const std::string& part) {
    try {
      ShardedModel(spec, w, layout);
      ADD_FAILURE() << "accepted " << layout.ToString();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  fails({{{0, 2, 1}}}, "covers 2 layers");
  fails({{{0, 2, 1}, {3, 4, 1}}}, "without gaps");
  fails({{{0, 4, 3}}}, "does not divide num_attention_heads 16");
  fails({{{0, 4, 32}}}, "does not divide num_attention_heads 16");
  fails({{{0, 4, 0}}}, "must be >= 1");
  fails({}, "no pipeline stages");
  fails({{{0, 4, 2}}, /*embed_tp=*/201, /*head_tp=*/0}, "embedding degree 201");
  fails({{{0, 4, 2}}, /*embed_tp=*/0, /*head_tp=*/-1}, "LM head degree -1");
  // 6 query heads on 3 KV heads: 2 neither divides nor is a multiple of 3.
  const ModelSpec odd = partition::ParseModelSpec(R"({"_name_or_path": "odd",
      "model_type": "llama", "hidden_size": 48, "intermediate_size": 72, "num_hidden_layers": 2,
      "num_attention_heads": 6, "num_key_value_heads": 3, "vocab_size": 96})",
                                                  "odd");
  EXPECT_THROW(ValidateLayout(odd, ModelLayout::Uniform(2, 1, 2)), Error);
  EXPECT_NO_THROW(ValidateLayout(odd, ModelLayout::Uniform(2, 1, 3)));
}

}  // namespace
}  // namespace lockstep::model
