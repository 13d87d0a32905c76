#include "lockstep/model/quantize.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "lockstep/common/error.h"
#include "lockstep/model/shard_loader.h"
#include "test_models.h"

namespace lockstep::model {
namespace {

namespace fs = std::filesystem;
using partition::ModelSpec;
using testing::SameBits;
using testing::ShardableModel;

class QuantizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lockstep_q_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Expects CheckLlamaWeights on `file` to fail with `code` naming each of `parts`.
  static void ExpectRefused(const fs::path& file, const ModelSpec& spec, ErrorCode code,
                            const std::vector<std::string>& parts) {
    try {
      CheckLlamaWeights(Checkpoint::Open(file), spec);
      FAIL() << "accepted " << file;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      for (const std::string& p : parts) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      }
    }
  }

  fs::path dir_;
};

// The file is the documented layout, and loading it gives exactly QuantizeWeights of the source
// (the bf16 source widened exactly first).
TEST_F(QuantizeTest, CheckpointHasTheDocumentedLayoutAndLoadsAsQuantizeWeights) {
  const ModelSpec spec = ShardableModel(R"("tie_word_embeddings": true,)", "qwen2");
  WriteGeneratedWeights(spec, 4, Dtype::kBf16, dir_ / "in.safetensors");
  const Checkpoint in = Checkpoint::Open(dir_ / "in.safetensors");
  for (WeightFormat format : {WeightFormat::kInt8Block32, WeightFormat::kInt8Channel}) {
    SCOPED_TRACE(std::string(WeightFormatName(format)));
    const fs::path out = dir_ / "q.safetensors";
    QuantizeCheckpoint(in, spec, format, out);
    const Checkpoint q = Checkpoint::Open(out);
    EXPECT_EQ(q.FileOf("model.embed_tokens.weight").metadata().at("lockstep.quantization"),
              WeightFormatName(format));
    const TensorInfo& qp = q.Get("model.layers.1.self_attn.q_proj.weight");
    EXPECT_EQ(qp.dtype, Dtype::kInt8);
    EXPECT_EQ(qp.shape, (std::vector<int64_t>{512, 96}));
    const TensorInfo& scale = q.Get("model.layers.1.self_attn.q_proj.weight_scale");
    EXPECT_EQ(scale.dtype, Dtype::kFp32);
    EXPECT_EQ(scale.shape,
              (std::vector<int64_t>{512, format == WeightFormat::kInt8Block32 ? 3 : 1}));
    EXPECT_EQ(q.Get("model.layers.1.self_attn.q_proj.bias").dtype, Dtype::kFp32);
    EXPECT_EQ(q.Get("model.norm.weight").dtype, Dtype::kFp32);
    EXPECT_EQ(q.Find("lm_head.weight"), nullptr);  // tied
    EXPECT_EQ(CheckLlamaWeights(q, spec), format);

    const LlamaWeights want = QuantizeWeights(LoadLlamaWeights(in, spec), format);
    const LlamaWeights got = LoadLlamaWeights(q, spec);
    EXPECT_EQ(got.format(), format);
    EXPECT_TRUE(SameBits(got.embed, want.embed));
    for (size_t l = 0; l < want.layers.size(); ++l) {
      EXPECT_TRUE(SameBits(got.layers[l].q, want.layers[l].q));
      EXPECT_TRUE(SameBits(got.layers[l].down, want.layers[l].down));
      EXPECT_TRUE(SameBits(got.layers[l].q_bias, want.layers[l].q_bias));
      EXPECT_TRUE(SameBits(got.layers[l].post_norm, want.layers[l].post_norm));
    }
    // A shard loaded straight from the int8 file is the slice of the whole int8 model.
    const std::vector<StageUnits> stages = StagesFromLayout(ModelLayout::Uniform(4, 2, 4));
    for (int s = 0; s < 2; ++s) {
      for (int r = 0; r < 4; ++r) {
        EXPECT_EQ(ShardToBytes(LoadShard(q, spec, stages, s, r), spec),
                  ShardToBytes(ExtractShard(got, spec, stages, s, r), spec));
      }
    }
    // Generation runs on it, and differs from the bf16 model's only by quantization.
    const ReferenceModel base(spec, LoadLlamaWeights(in, spec));
    const ReferenceModel int8(spec, got);
    const WeightsComparison c = CompareWeights(base, int8, std::vector<int32_t>{1, 2, 3}, 8);
    EXPECT_EQ(c.positions, 8);
    EXPECT_GT(c.max_abs_logit_diff, 0.0);
    EXPECT_LT(c.max_abs_logit_diff, 0.05);
  }
  // An int8 checkpoint is not quantized again.
  EXPECT_THROW(QuantizeCheckpoint(Checkpoint::Open(dir_ / "q.safetensors"), spec,
                                  WeightFormat::kInt8Block32, dir_ / "qq.safetensors"),
               Error);
}

TEST(CompareWeights, IdenticalModelsAgreeEverywhere) {
  const ModelSpec spec = testing::TinyLlama();
  const ReferenceModel a(spec, GenerateLlamaWeights(spec, 2));
  const WeightsComparison c = CompareWeights(a, a, std::vector<int32_t>{5, 6}, 12);
  EXPECT_EQ(c.positions, 12);
  EXPECT_EQ(c.max_abs_logit_diff, 0.0);
  EXPECT_EQ(c.top1_agreements, 12);
}

// An int8 checkpoint whose layout does not match the config or the scheme is refused before any
// weight is read, naming the tensor and what was expected.
TEST_F(QuantizeTest, MismatchedInt8LayoutsNameTheTensorAndTheExpectation) {
  const ModelSpec spec = testing::TinyLlama();
  const std::vector<TensorSpec> specs = QuantizedTensorSpecs(spec, WeightFormat::kInt8Block32);
  // Writes the int8 layout with `change` applied to the spec list (and zeros for values).
  auto write = [&](const std::string& name,
                   const std::function<void(std::vector<TensorSpec>&)>& change) {
    std::vector<TensorSpec> s = specs;
    change(s);
    WriteSafetensors(dir_ / name, s, [](size_t, int64_t, std::span<float> out) {
      std::fill(out.begin(), out.end(), 0.0f);
    });
    return dir_ / name;
  };
  const std::string q = "model.layers.1.mlp.down_proj.weight";  // [32, 72]: 3 blocks a row
  EXPECT_EQ(CheckLlamaWeights(Checkpoint::Open(write("ok.safetensors", [](auto&) {})), spec),
            WeightFormat::kInt8Block32);
  // A projection left F32 among I8 ones.
  ExpectRefused(write("f32.safetensors",
                      [&](auto& s) {
                        for (TensorSpec& t : s) {
                          if (t.name == q) t.dtype = Dtype::kFp32;
                        }
                      }),
                spec, ErrorCode::kInvalidInput,
                {"'" + q + "' is F32", "expected I8", "int8-block32"});
  // Its scales missing, or shaped for the other scheme.
  ExpectRefused(write("noscale.safetensors",
                      [&](auto& s) {
                        std::erase_if(s,
                                      [&](const TensorSpec& t) { return t.name == q + "_scale"; });
                      }),
                spec, ErrorCode::kNotFound, {"missing tensor '" + q + "_scale' [32, 3]"});
  ExpectRefused(write("channel.safetensors",
                      [&](auto& s) {
                        for (TensorSpec& t : s) {
                          if (t.name == q + "_scale") t.shape = {32, 1};
                        }
                      }),
                spec, ErrorCode::kInvalidInput,
                {"'" + q + "_scale' is F32 [32, 1]", "int8-block32 layout needs F32 [32, 3]"});
  // A norm stored as int8.
  ExpectRefused(write("norm.safetensors",
                      [&](auto& s) {
                        for (TensorSpec& t : s) {
                          if (t.name == "model.norm.weight") t.dtype = Dtype::kInt8;
                        }
                      }),
                spec, ErrorCode::kInvalidInput, {"'model.norm.weight' is I8", "norms, biases"});
  // A value of -128 (outside symmetric int8) is refused when the tensor is read, naming it.
  const fs::path bad = dir_ / "minus128.safetensors";
  WriteSafetensors(bad, specs, [&](size_t i, int64_t first, std::span<float> out) {
    std::fill(out.begin(), out.end(), 0.0f);
    if (specs[i].name == q && first == 0) out[3] = -128.0f;
  });
  try {
    LoadLlamaWeights(Checkpoint::Open(bad), spec);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'" + q + "'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-128"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep::model
