#include "lockstep/model/llama_weights.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>

#include "lockstep/common/error.h"
#include "test_models.h"

namespace lockstep::model {
namespace {

namespace fs = std::filesystem;
using partition::ModelSpec;
using testing::TinyLlama;

class LlamaWeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lockstep_lw_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Expects CheckLlamaWeights to fail with `code` and a message containing `parts`.
  static void ExpectCheckFails(const fs::path& file, const ModelSpec& spec, ErrorCode code,
                               const std::vector<std::string>& parts,
                               std::optional<Dtype> dtype = std::nullopt) {
    Checkpoint c = Checkpoint::Open(file);
    try {
      CheckLlamaWeights(c, spec, dtype);
      FAIL() << "check passed";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      for (const std::string& p : parts) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      }
    }
  }

  fs::path dir_;
};

int64_t TotalElements(const std::vector<TensorSpec>& specs) {
  int64_t n = 0;
  for (const TensorSpec& s : specs) n += s.num_elements();
  return n;
}

TEST(LlamaTensorSpecs, NamesShapesAndCountsMatchTheParameterArithmetic) {
  const ModelSpec llama = TinyLlama();
  std::vector<TensorSpec> specs = LlamaTensorSpecs(llama, Dtype::kBf16);
  ASSERT_EQ(specs.size(), 1u + 2 * 9 + 2);
  EXPECT_EQ(specs[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{96, 32}));
  EXPECT_EQ(specs[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(specs[2].shape, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(specs[3].name, "model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(specs[3].shape, (std::vector<int64_t>{16, 32}));  // 2 KV heads x 8
  EXPECT_EQ(specs[9].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(specs[9].shape, (std::vector<int64_t>{32, 72}));
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  EXPECT_EQ(specs.back().dtype, Dtype::kBf16);
  EXPECT_EQ(TotalElements(specs), partition::CountParameters(llama).total);

  const ModelSpec tied = TinyLlama(R"("tie_word_embeddings": true,)");
  specs = LlamaTensorSpecs(tied, Dtype::kFp32);
  EXPECT_EQ(specs.back().name, "model.norm.weight");
  EXPECT_EQ(TotalElements(specs), partition::CountParameters(tied).total);

  const ModelSpec qwen = TinyLlama("", "qwen2");
  specs = LlamaTensorSpecs(qwen, Dtype::kFp32);
  EXPECT_EQ(specs[6].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(specs[7].shape, (std::vector<int64_t>{16}));
  EXPECT_EQ(TotalElements(specs), partition::CountParameters(qwen).total);

  // The real configs in examples/ agree with the published totals through the partitioner.
  for (const char* name : {"llama-2-7b", "llama-3-8b", "qwen2-7b", "tiny-llama"}) {
    const ModelSpec real =
        partition::LoadModelSpec(fs::path(LOCKSTEP_SOURCE_DIR) / "examples/models" / name);
    EXPECT_EQ(TotalElements(LlamaTensorSpecs(real, Dtype::kFp16)),
              partition::CountParameters(real).total)
        << name;
  }
  // TinyLlama-1.1B's config holds the published 1,100,048,384 parameters.
  EXPECT_EQ(
      TotalElements(LlamaTensorSpecs(partition::LoadModelSpec(fs::path(LOCKSTEP_SOURCE_DIR) /
                                                              "examples/models/tinyllama-1.1b"),
                                     Dtype::kBf16)),
      1'100'048'384);
  // Mixtral: the Hugging Face names of the router and the experts, and its published total
  // (46.7B) through the partitioner's arithmetic.
  const ModelSpec mixtral =
      partition::LoadModelSpec(fs::path(LOCKSTEP_SOURCE_DIR) / "examples/models/mixtral-8x7b");
  const std::vector<TensorSpec> moe = LlamaTensorSpecs(mixtral, Dtype::kBf16);
  EXPECT_EQ(TotalElements(moe), partition::CountParameters(mixtral).total);
  auto find = [&](const std::string& name) {
    for (const TensorSpec& t : moe) {
      if (t.name == name) return t.shape;
    }
    return std::vector<int64_t>{};
  };
  EXPECT_EQ(find("model.layers.31.block_sparse_moe.gate.weight"), (std::vector<int64_t>{8, 4096}));
  EXPECT_EQ(find("model.layers.0.block_sparse_moe.experts.7.w1.weight"),
            (std::vector<int64_t>{14336, 4096}));
  EXPECT_EQ(find("model.layers.0.block_sparse_moe.experts.7.w2.weight"),
            (std::vector<int64_t>{4096, 14336}));
  EXPECT_EQ(find("model.layers.0.block_sparse_moe.experts.0.w3.weight"),
            (std::vector<int64_t>{14336, 4096}));
  EXPECT_TRUE(find("model.layers.0.mlp.gate_proj.weight").empty());
}

TEST(GeneratedWeight, DeterministicAndScaledLikeARealInit) {
  EXPECT_EQ(GeneratedWeight(7, "model.layers.0.mlp.up_proj.weight", 12345),
            GeneratedWeight(7, "model.layers.0.mlp.up_proj.weight", 12345));
  EXPECT_NE(GeneratedWeight(7, "model.layers.0.mlp.up_proj.weight", 12345),
            GeneratedWeight(8, "model.layers.0.mlp.up_proj.weight", 12345));
  EXPECT_NE(GeneratedWeight(7, "model.layers.0.mlp.up_proj.weight", 12345),
            GeneratedWeight(7, "model.layers.1.mlp.up_proj.weight", 12345));
  auto stats = [](const std::string& name) {
    double sum = 0, sq = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
      const double v = GeneratedWeight(1, name, i);
      sum += v;
      sq += v * v;
    }
    const double mean = sum / n;
    return std::pair<double, double>(mean, std::sqrt(sq / n - mean * mean));
  };
  auto [mean, sd] = stats("model.layers.3.self_attn.q_proj.weight");
  EXPECT_NEAR(mean, 0.0, 0.0005);
  EXPECT_NEAR(sd, 0.02, 0.0005);
  std::tie(mean, sd) = stats("model.layers.3.input_layernorm.weight");
  EXPECT_NEAR(mean, 1.0, 0.0005);
  EXPECT_NEAR(sd, 0.02, 0.0005);
}

TEST_F(LlamaWeightsTest, GeneratedFileChecksAndLoadsAsTheInMemoryWeights) {
  for (const ModelSpec& spec :
       {TinyLlama(), TinyLlama(R"("tie_word_embeddings": true,)"), TinyLlama("", "qwen2")}) {
    const fs::path file = dir_ / (spec.name + ".safetensors");
    WriteGeneratedWeights(spec, 42, Dtype::kFp32, file);
    Checkpoint c = Checkpoint::Open(file);
    EXPECT_NO_THROW(CheckLlamaWeights(c, spec, Dtype::kFp32));
    const LlamaWeights loaded = LoadLlamaWeights(c, spec);
    const LlamaWeights generated = GenerateLlamaWeights(spec, 42);
    EXPECT_EQ(loaded.embed, generated.embed);
    EXPECT_EQ(loaded.layers[1].down, generated.layers[1].down);
    EXPECT_EQ(loaded.layers[1].q_bias, generated.layers[1].q_bias);
    EXPECT_EQ(loaded.final_norm, generated.final_norm);
    EXPECT_EQ(loaded.lm_head, generated.lm_head);
    EXPECT_EQ(generated.lm_head.empty(), spec.tie_word_embeddings);
    EXPECT_EQ(&generated.head(), spec.tie_word_embeddings ? &generated.embed : &generated.lm_head);
    EXPECT_EQ(generated.layers[0].q_bias.empty(), !spec.qkv_bias);
    EXPECT_EQ(generated.layers[0].k.values.size(), 16u * 32u);
    EXPECT_EQ(generated.embed.values[5], GeneratedWeight(42, "model.embed_tokens.weight", 5));
  }
  // bf16 storage: every value is the generated one rounded to bf16.
  const ModelSpec spec = TinyLlama();
  WriteGeneratedWeights(spec, 42, Dtype::kBf16, dir_ / "bf16.safetensors");
  const LlamaWeights bf16 = LoadLlamaWeights(Checkpoint::Open(dir_ / "bf16.safetensors"), spec);
  const LlamaWeights fp32 = GenerateLlamaWeights(spec, 42);
  for (size_t i = 0; i < fp32.layers[0].gate.values.size(); ++i) {
    ASSERT_EQ(bf16.layers[0].gate.values[i], Bf16ToFp32(Fp32ToBf16(fp32.layers[0].gate.values[i])));
  }
  ExpectCheckFails(dir_ / "bf16.safetensors", spec, ErrorCode::kInvalidInput,
                   {"'model.embed_tokens.weight'", "BF16", "F32"}, Dtype::kFp32);
}

TEST_F(LlamaWeightsTest, MismatchedCheckpointsNameTheTensor) {
  const ModelSpec spec = TinyLlama();
  std::vector<TensorSpec> specs = LlamaTensorSpecs(spec, Dtype::kFp32);
  auto write = [&](const std::string& name, const std::vector<TensorSpec>& s) {
    const fs::path p = dir_ / name;
    WriteSafetensors(p, s, [](size_t, int64_t, std::span<float> out) {
      std::fill(out.begin(), out.end(), 0.5f);
    });
    return p;
  };
  // Missing tensor.
  std::vector<TensorSpec> missing = specs;
  missing.erase(missing.begin() + 11);  // model.layers.1.self_attn.q_proj.weight
  ExpectCheckFails(write("missing.safetensors", missing), spec, ErrorCode::kNotFound,
                   {"missing tensor 'model.layers.1.self_attn.q_proj.weight'", "[32, 32]"});
  // Tied checkpoint for an untied config: lm_head is missing.
  ExpectCheckFails(
      write("tied.safetensors",
            LlamaTensorSpecs(TinyLlama(R"("tie_word_embeddings": true,)"), Dtype::kFp32)),
      spec, ErrorCode::kNotFound, {"'lm_head.weight'", "tie_word_embeddings"});
  // Wrong shape.
  std::vector<TensorSpec> shape = specs;
  shape[3].shape = {32, 32};  // k_proj with 4 KV heads instead of 2
  ExpectCheckFails(write("shape.safetensors", shape), spec, ErrorCode::kInvalidInput,
                   {"'model.layers.0.self_attn.k_proj.weight'", "[32, 32]", "needs [16, 32]"});
  // Mixed dtypes.
  std::vector<TensorSpec> mixed = specs;
  mixed[6].dtype = Dtype::kFp16;
  ExpectCheckFails(write("mixed.safetensors", mixed), spec, ErrorCode::kInvalidInput,
                   {"'model.layers.0.post_attention_layernorm.weight'", "F16"});
  // LoadLlamaWeights checks first.
  EXPECT_THROW(LoadLlamaWeights(Checkpoint::Open(dir_ / "shape.safetensors"), spec), Error);
  // Extra tensors are fine.
  std::vector<TensorSpec> extra = specs;
  extra.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {4}, Dtype::kFp32});
  EXPECT_NO_THROW(CheckLlamaWeights(Checkpoint::Open(write("extra.safetensors", extra)), spec));
}

}  // namespace
}  // namespace lockstep::model
