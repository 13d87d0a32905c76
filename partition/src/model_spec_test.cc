#include "lockstep/partition/model_spec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "lockstep/common/error.h"

namespace lockstep::partition {
namespace {

std::filesystem::path ExampleModel(const std::string& name) {
  return std::filesystem::path(LOCKSTEP_SOURCE_DIR) / "examples" / "models" / name;
}

// Expects ParseModelSpec to throw kInvalidInput with every fragment in the message.
void ExpectInvalid(const std::string& json, std::initializer_list<std::string> fragments) {
  try {
    ParseModelSpec(json, "cfg.json");
    FAIL() << "accepted: " << json;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_EQ(what.rfind("cfg.json: ", 0), 0u) << what;
    for (const std::string& f : fragments) EXPECT_NE(what.find(f), std::string::npos) << what;
  }
}

const char* kTiny = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 172,
  "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 256)";

std::string Tiny(const std::string& extra = "") {
  return std::string(kTiny) + (extra.empty() ? "" : ", " + extra) + "}";
}

struct PublishedCount {
  const char* folder;
  int64_t parameters;
};

class PublishedCountTest : public testing::TestWithParam<PublishedCount> {};

TEST_P(PublishedCountTest, TotalEqualsModelCard) {
  const ModelSpec m = LoadModelSpec(ExampleModel(GetParam().folder));
  const ParameterCounts c = CountParameters(m);
  EXPECT_EQ(c.total, GetParam().parameters) << GetParam().folder;
  EXPECT_EQ(c.total, c.embedding + m.num_layers * c.per_layer + c.final_norm + c.lm_head);
  EXPECT_EQ(WeightBytes(m, Dtype::kFp16), 2 * c.total);
}

INSTANTIATE_TEST_SUITE_P(RealModels, PublishedCountTest,
                         testing::Values(PublishedCount{"llama-2-7b", 6'738'415'616},
                                         PublishedCount{"llama-2-70b", 68'976'648'192},
                                         PublishedCount{"llama-3-8b", 8'030'261'248},
                                         PublishedCount{"llama-3.1-405b", 405'853'388'800},
                                         PublishedCount{"mistral-7b-v0.1", 7'241'732'096},
                                         PublishedCount{"mixtral-8x7b", 46'702'792'704},
                                         PublishedCount{"qwen2-7b", 7'615'616'512},
                                         PublishedCount{"tiny-llama", 123'712}),
                         [](const testing::TestParamInfo<PublishedCount>& p) {
                           std::string n = p.param.folder;
                           for (char& ch : n) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

TEST(ModelSpecTest, ReadsLlama2_70bFields) {
  const ModelSpec m = LoadModelSpec(ExampleModel("llama-2-70b") / "config.json");
  EXPECT_EQ(m.name, "meta-llama/Llama-2-70b-hf");
  EXPECT_EQ(m.model_type, "llama");
  EXPECT_EQ(m.hidden_size, 8192);
  EXPECT_EQ(m.num_heads, 64);
  EXPECT_EQ(m.num_kv_heads, 8);
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.num_layers, 80);
  EXPECT_DOUBLE_EQ(m.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(m.rope_theta, 10000.0);  // absent: the llama default
  EXPECT_FALSE(m.rope_scaling.has_value());
  EXPECT_EQ(m.torch_dtype, Dtype::kFp16);
  // KV cache: 2 (k, v) x 80 layers x 8 heads x 128 x 1 byte.
  EXPECT_EQ(KvCacheBytesPerToken(m, Dtype::kInt8), 2 * 80 * 8 * 128);
}

TEST(ModelSpecTest, ReadsLlama3RopeScaling) {
  const ModelSpec m = LoadModelSpec(ExampleModel("llama-3.1-405b"));
  ASSERT_TRUE(m.rope_scaling.has_value());
  EXPECT_EQ(m.rope_scaling->type, "llama3");
  EXPECT_DOUBLE_EQ(m.rope_scaling->factor, 8.0);
  EXPECT_DOUBLE_EQ(m.rope_scaling->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(m.rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(m.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(m.rope_theta, 500000.0);
  EXPECT_EQ(m.torch_dtype, Dtype::kBf16);
}

TEST(ModelSpecTest, MixtralExpertsAndActiveParameters) {
  const ModelSpec m = LoadModelSpec(ExampleModel("mixtral-8x7b"));
  EXPECT_EQ(m.num_experts, 8);
  EXPECT_EQ(m.experts_per_token, 2);
  EXPECT_EQ(m.sliding_window, 0);  // null in the config
  const ParameterCounts c = CountParameters(m);
  // Mixtral's published active parameter count is 12.9B per token: 6 of 8 experts idle.
  EXPECT_EQ(c.total - c.active_total, 32LL * 6 * 3 * 4096 * 14336);
  EXPECT_GT(c.active_total, 12'850'000'000);
  EXPECT_LT(c.active_total, 12'950'000'000);
  EXPECT_LT(c.active_per_layer, c.per_layer);
}

TEST(ModelSpecTest, Qwen2HasQkvBiasOnly) {
  const ModelSpec m = LoadModelSpec(ExampleModel("qwen2-7b"));
  EXPECT_TRUE(m.qkv_bias);
  EXPECT_FALSE(m.o_bias);
  EXPECT_EQ(m.sliding_window, 0);  // use_sliding_window is false
  ModelSpec no_bias = m;
  no_bias.qkv_bias = false;
  EXPECT_EQ(CountParameters(m).total - CountParameters(no_bias).total,
            m.num_layers * (m.q_width() + 2 * m.kv_width()));
}

TEST(ModelSpecTest, DefaultsFollowTransformers) {
  const ModelSpec m = ParseModelSpec(Tiny(), "cfg.json");
  EXPECT_EQ(m.num_kv_heads, 4);  // no GQA field: multi-head attention
  EXPECT_EQ(m.head_dim, 16);
  EXPECT_FALSE(m.tie_word_embeddings);
  EXPECT_EQ(m.max_position_embeddings, 2048);
  EXPECT_FALSE(m.torch_dtype.has_value());
  const ModelSpec mistral = ParseModelSpec(
      std::string(Tiny()).replace(std::string(Tiny()).find("llama"), 5, "mistral"), "cfg.json");
  EXPECT_EQ(mistral.max_position_embeddings, 131072);
}

TEST(ModelSpecTest, ExplicitHeadDimAndTiedEmbeddings) {
  const ModelSpec m =
      ParseModelSpec(Tiny(R"("head_dim": 32, "tie_word_embeddings": true)"), "cfg.json");
  EXPECT_EQ(m.head_dim, 32);
  const ParameterCounts c = CountParameters(m);
  EXPECT_EQ(c.lm_head, 0);
  EXPECT_EQ(c.attention_per_layer, 4 * 64 * 128);  // q,k,v,o each 64 x (4 x 32)
  EXPECT_EQ(c.total, c.embedding + 2 * c.per_layer + 64);
}

TEST(ModelSpecTest, LlamaAttentionAndMlpBias) {
  const ModelSpec plain = ParseModelSpec(Tiny(), "cfg.json");
  const ModelSpec biased =
      ParseModelSpec(Tiny(R"("attention_bias": true, "mlp_bias": true)"), "cfg.json");
  // q,k,v,o biases: 4 x 64; gate, up: 172 each; down: 64.
  EXPECT_EQ(CountParameters(biased).per_layer - CountParameters(plain).per_layer,
            4 * 64 + 2 * 172 + 64);
}

TEST(ModelSpecTest, DecodeFlopsCountEveryWeightTwice) {
  const ModelSpec m = LoadModelSpec(ExampleModel("llama-2-7b"));
  const ParameterCounts c = CountParameters(m);
  // No context: 2 x (all weights except embedding lookup and norms).
  EXPECT_EQ(DecodeFlopsPerToken(m, 0),
            2 * (c.total - c.embedding - m.num_layers * c.norms_per_layer - c.final_norm));
  EXPECT_EQ(DecodeFlopsPerToken(m, 100) - DecodeFlopsPerToken(m, 0), 32 * 4 * 4096 * 100);
}

TEST(ModelSpecTest, RejectsBadConfigs) {
  ExpectInvalid(R"({"model_type": "gpt2"})",
                {"model_type 'gpt2'", "llama, mistral, mixtral, qwen2"});
  ExpectInvalid(R"({"hidden_size": 4})", {"missing required field 'model_type'"});
  ExpectInvalid(R"({"model_type": "llama", "hidden_size": 64})",
                {"missing required field 'intermediate_size'"});
  ExpectInvalid(Tiny(R"("num_key_value_heads": 3)"), {"multiple of num_key_value_heads (3)"});
  ExpectInvalid(Tiny(R"("num_key_value_heads": 0)"), {"'num_key_value_heads'", "positive"});
  ExpectInvalid(Tiny(R"("tie_word_embeddings": "yes")"), {"'tie_word_embeddings'"});
  ExpectInvalid(Tiny(R"("rope_theta": -1)"), {"'rope_theta'"});
  ExpectInvalid(Tiny(R"("torch_dtype": "int4")"), {"'torch_dtype'", "bfloat16"});
  ExpectInvalid(Tiny(R"("rope_scaling": {"rope_type": "weird", "factor": 2})"),
                {"rope_scaling type 'weird'", "llama3"});
  ExpectInvalid(Tiny(R"("rope_scaling": {"rope_type": "llama3", "factor": 8})"),
                {"low_freq_factor"});
  ExpectInvalid(std::string(R"({"model_type": "llama", "hidden_size": 60, "intermediate_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 7, "vocab_size": 9})"),
                {"no head_dim"});
  ExpectInvalid("{not json", {"not valid JSON"});
  ExpectInvalid("[1, 2]", {"expected a JSON object"});
}

TEST(ModelSpecTest, MissingFileIsNotFound) {
  try {
    LoadModelSpec(ExampleModel("no-such-model"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("no-such-model"), std::string::npos);
  }
}

}  // namespace
}  // namespace lockstep::partition
