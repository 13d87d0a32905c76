#include "lockstep/model/shard_loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include "lockstep/common/error.h"
#include "lockstep/model/reference.h"
#include "test_models.h"

namespace lockstep::model {
namespace {

namespace fs = std::filesystem;
using partition::ModelSpec;
using testing::ShardableModel;
using testing::TinyLlama;

class ShardLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lockstep_sl_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// Layouts that exercise every slicing rule: TP 1 (whole matrices), row-parallel o/down at TP 2
// and 8 (column slices), column-parallel o/down (ShardableModel's hidden 96 at TP 8 is not, but
// TinyLlama's query width 32 / 2 is not a whole chunk), replicated KV heads at TP 8, and
// embedding-only / head-only stages.
std::vector<std::vector<StageUnits>> Layouts(int64_t layers) {
  std::vector<std::vector<StageUnits>> out;
  for (int tp : {1, 2, 4, 8}) out.push_back(StagesFromLayout(ModelLayout::Uniform(layers, 2, tp)));
  out.push_back(
      {{true, 0, 0, false, 2}, {false, 0, layers, false, 4}, {false, layers, layers, true, 8}});
  return out;
}

// Every shard of every layout: ShardToBytes compares geometry and every tensor's bits.
void ExpectSameShards(
    const ModelSpec& spec, const LlamaWeights& whole,
    const std::function<ShardWeights(const std::vector<StageUnits>&, int, int)>& load) {
  for (const std::vector<StageUnits>& stages : Layouts(spec.num_layers)) {
    if (spec.num_heads % stages[1].tp != 0) continue;
    for (size_t s = 0; s < stages.size(); ++s) {
      for (int r = 0; r < stages[s].tp; ++r) {
        const ShardWeights want = ExtractShard(whole, spec, stages, static_cast<int>(s), r);
        const ShardWeights got = load(stages, static_cast<int>(s), r);
        ASSERT_EQ(ShardToBytes(got, spec), ShardToBytes(want, spec))
            << "stage " << s << " rank " << r << " of degree " << stages[s].tp;
      }
    }
  }
}

TEST(Conversions, VectorizedWideningEqualsTheScalarDefinitionForEveryPattern) {
  // Every 16-bit pattern, stored at an odd byte offset (unaligned) with a length that leaves a
  // tail for the scalar loop.
  std::vector<std::byte> bytes(1 + 2 * 65536 + 2 * 3);
  for (uint32_t i = 0; i < 65536 + 3; ++i) {
    const auto v = static_cast<uint16_t>(i % 65536);
    bytes[1 + 2 * i] = static_cast<std::byte>(v & 0xff);
    bytes[2 + 2 * i] = static_cast<std::byte>(v >> 8);
  }
  std::vector<float> out(65536 + 3);
  for (Dtype d : {Dtype::kBf16, Dtype::kFp16}) {
    ConvertToFp32(d, bytes.data() + 1, static_cast<int64_t>(out.size()), out.data());
    for (uint32_t i = 0; i < out.size(); ++i) {
      const auto v = static_cast<uint16_t>(i % 65536);
      const float want = d == Dtype::kBf16 ? Bf16ToFp32(v) : Fp16ToFp32(v);
      ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(want))
          << DtypeName(d) << " pattern " << v;
    }
  }
  // A NaN widens quiet, with its payload.
  EXPECT_EQ(std::bit_cast<uint32_t>(Fp16ToFp32(0x7c01)), 0x7fc02000u);
}

TEST_F(ShardLoaderTest, CheckpointShardsEqualSlicesOfTheWholeModelAtEveryDtype) {
  for (const ModelSpec& spec :
       {ShardableModel(), ShardableModel(R"("tie_word_embeddings": true,)"),
        ShardableModel("", "qwen2"), TinyLlama(R"("attention_bias": true, "mlp_bias": true,)")}) {
    for (Dtype dtype : {Dtype::kFp32, Dtype::kFp16, Dtype::kBf16}) {
      SCOPED_TRACE(spec.name + " " + std::string(DtypeName(dtype)));
      const fs::path file = dir_ / "model.safetensors";
      WriteGeneratedWeights(spec, 3, dtype, file);
      const Checkpoint checkpoint = Checkpoint::Open(file);
      const LlamaWeights whole = LoadLlamaWeights(checkpoint, spec);
      ExpectSameShards(spec, whole, [&](const std::vector<StageUnits>& stages, int s, int r) {
        return LoadShard(checkpoint, spec, stages, s, r);
      });
    }
  }
}

TEST_F(ShardLoaderTest, ShardedCheckpointWithIndexLoadsTheSameShards) {
  const ModelSpec spec = ShardableModel();
  const std::vector<TensorSpec> specs = LlamaTensorSpecs(spec, Dtype::kBf16);
  const std::vector<fs::path> files = WriteShardedSafetensors(
      dir_ / "sharded", specs,
      [&](size_t i, int64_t first, std::span<float> out) {
        FillGeneratedWeights(7, specs[i].name, first, out);
      },
      1'000'000);  // 2.4 MB of tensors: 3 files
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files.front().filename(), "model-00001-of-00003.safetensors");
  EXPECT_EQ(files.back().filename(), "model-00003-of-00003.safetensors");
  WriteGeneratedWeights(spec, 7, Dtype::kBf16, dir_ / "single.safetensors");
  const Checkpoint single = Checkpoint::Open(dir_ / "single.safetensors");
  const Checkpoint sharded = Checkpoint::Open(dir_ / "sharded");
  EXPECT_EQ(sharded.names(), single.names());
  ExpectSameShards(spec, LoadLlamaWeights(single, spec),
                   [&](const std::vector<StageUnits>& stages, int s, int r) {
                     return LoadShard(sharded, spec, stages, s, r);
                   });
}

TEST(GenerateShard, EqualsSlicesOfTheGeneratedModel) {
  for (const ModelSpec& spec :
       {ShardableModel(), ShardableModel(R"("tie_word_embeddings": true,)")}) {
    ExpectSameShards(spec, GenerateLlamaWeights(spec, 11),
                     [&](const std::vector<StageUnits>& stages, int s, int r) {
                       return GenerateShard(spec, 11, stages, s, r);
                     });
  }
}

// A bf16 checkpoint and the fp32 checkpoint holding its exact widening: the same logits, bit for
// bit, from the reference and from shards loaded straight from each file.
TEST_F(ShardLoaderTest, Bf16CheckpointAndItsFp32WideningGiveIdenticalLogits) {
  const ModelSpec spec = ShardableModel();
  WriteGeneratedWeights(spec, 5, Dtype::kBf16, dir_ / "bf16.safetensors");
  const Checkpoint bf16 = Checkpoint::Open(dir_ / "bf16.safetensors");
  // The widening by the scalar definition, independent of the loader's vectorized conversion.
  const std::vector<TensorSpec> specs = LlamaTensorSpecs(spec, Dtype::kFp32);
  WriteSafetensors(dir_ / "fp32.safetensors", specs,
                   [&](size_t i, int64_t first, std::span<float> out) {
                     FillGeneratedWeights(5, specs[i].name, first, out);
                     for (float& v : out) v = Bf16ToFp32(Fp32ToBf16(v));
                   });
  const Checkpoint fp32 = Checkpoint::Open(dir_ / "fp32.safetensors");
  EXPECT_EQ(fp32.Get("lm_head.weight").dtype, Dtype::kFp32);
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  const Generation a = Generate(ReferenceModel(spec, LoadLlamaWeights(bf16, spec)), prompt, 6, {},
                                /*keep_logits=*/true);
  const Generation b = Generate(ReferenceModel(spec, LoadLlamaWeights(fp32, spec)), prompt, 6, {},
                                /*keep_logits=*/true);
  EXPECT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t i = 0; i < a.logits.size(); ++i)
    EXPECT_TRUE(testing::SameBits(a.logits[i], b.logits[i]));
  // The fp32 file holds only bf16 values (its narrowing is exact).
  std::vector<float> w(static_cast<size_t>(fp32.Get("lm_head.weight").num_elements()));
  fp32.ReadFp32("lm_head.weight", w);
  for (float v : w) ASSERT_EQ(Bf16ToFp32(Fp32ToBf16(v)), v);
  // Shards loaded from either file are the same bytes, hence the same phases and logits.
  const std::vector<StageUnits> stages = StagesFromLayout(ModelLayout::Uniform(4, 2, 2));
  for (int s = 0; s < 2; ++s) {
    for (int r = 0; r < 2; ++r) {
      EXPECT_EQ(ShardToBytes(LoadShard(bf16, spec, stages, s, r), spec),
                ShardToBytes(LoadShard(fp32, spec, stages, s, r), spec));
    }
  }
}

TEST_F(ShardLoaderTest, MismatchedOrTruncatedCheckpointsNameTheTensorOrFileAndOffset) {
  const ModelSpec spec = TinyLlama();
  const std::vector<StageUnits> stages = StagesFromLayout(ModelLayout::Uniform(2, 1, 1));
  // A checkpoint of another model: the first tensor whose shape differs, and what was expected.
  WriteGeneratedWeights(ShardableModel(), 1, Dtype::kBf16, dir_ / "other.safetensors");
  try {
    LoadShard(Checkpoint::Open(dir_ / "other.safetensors"), spec, stages, 0, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("'model.embed_tokens.weight' has shape [200, 96]"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("needs [96, 32]"), std::string::npos) << e.what();
  }
  // A sharded checkpoint whose second file was cut short: opening names that file, the tensor
  // and the byte offsets, before any weight is read.
  const std::vector<TensorSpec> specs = LlamaTensorSpecs(spec, Dtype::kBf16);
  const std::vector<fs::path> files = WriteShardedSafetensors(
      dir_ / "cut", specs,
      [&](size_t i, int64_t first, std::span<float> out) {
        FillGeneratedWeights(1, specs[i].name, first, out);
      },
      8000);
  ASSERT_GE(files.size(), 2u);
  const auto size = fs::file_size(files[1]);
  fs::resize_file(files[1], size - 100);
  try {
    Checkpoint::Open(dir_ / "cut");
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    EXPECT_NE(msg.find(files[1].string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated at byte offset " + std::to_string(size - 100)), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("needs bytes ["), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// A worker's own load: a source travels as text, and the shard it names is the one the
// coordinator would have cut from the whole model, for a checkpoint and for a seed.
TEST_F(ShardLoaderTest, ShardSourceRoundTripsAndLoadsTheShardItNames) {
  const ModelSpec spec = ShardableModel();
  WriteGeneratedWeights(spec, 9, Dtype::kBf16, dir_ / "m.safetensors");
  const std::vector<StageUnits> stages = {
      {true, 0, 1, false, 2}, {false, 1, 4, false, 4}, {false, 4, 4, true, 2}};
  const LlamaWeights from_file = LoadLlamaWeights(Checkpoint::Open(dir_ / "m.safetensors"), spec);
  const LlamaWeights generated = GenerateLlamaWeights(spec, 9);
  for (const std::string& checkpoint : {(dir_ / "m.safetensors").string(), std::string()}) {
    for (int s = 0; s < 3; ++s) {
      for (int r = 0; r < stages[static_cast<size_t>(s)].tp; ++r) {
        const ShardSource source{checkpoint, 9, stages, s, r};
        const std::string text = EncodeShardSource(source);
        EXPECT_EQ(EncodeShardSource(DecodeShardSource(text)), text);
        const ShardWeights got = LoadShard(DecodeShardSource(text), spec);
        const ShardWeights want =
            ExtractShard(checkpoint.empty() ? generated : from_file, spec, stages, s, r);
        ASSERT_EQ(ShardToBytes(got, spec), ShardToBytes(want, spec))
            << (checkpoint.empty() ? "seed" : "file") << " stage " << s << " rank " << r;
      }
    }
  }
  // Garbage, a missing field, a missing file: one line naming what is wrong.
  for (const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"{not json", "not a JSON object"},
           {R"({"checkpoint": "", "seed": 1, "stage": 0, "rank": 0})", "'stages'"},
           {R"({"checkpoint": 3, "seed": 1, "stages": [], "stage": 0, "rank": 0})",
            "'checkpoint'"}}) {
    try {
      DecodeShardSource(text);
      FAIL() << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
  const ShardSource missing{(dir_ / "gone.safetensors").string(), 0, stages, 0, 0};
  try {
    LoadShard(missing, spec);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gone.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep::model
