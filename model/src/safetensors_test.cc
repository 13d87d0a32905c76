#include "lockstep/model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <limits>

#include "lockstep/common/error.h"

namespace lockstep::model {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lockstep_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A file with an explicit header length, header text and data bytes.
  fs::path Raw(const std::string& name, uint64_t header_len, const std::string& header,
               size_t data_bytes) {
    fs::path p = dir_ / name;
    std::ofstream out(p, std::ios::binary);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((header_len >> (8 * i)) & 0xff));
    out << header << std::string(data_bytes, '\0');
    return p;
  }
  fs::path File(const std::string& name, const std::string& header, size_t data_bytes) {
    return Raw(name, header.size(), header, data_bytes);
  }
  // Expects opening `p` to fail with kInvalidInput and a message containing each of `parts`.
  static void ExpectMalformed(const fs::path& p, const std::vector<std::string>& parts) {
    try {
      SafetensorsFile::Open(p);
      FAIL() << "opened malformed " << p;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidInput);
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
      for (const std::string& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
  }

  fs::path dir_;
};

TEST(Conversions, Fp16RoundTripsEveryValueExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Fp16ToFp32(static_cast<uint16_t>(h));
    const bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff) != 0;
    if (nan) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_TRUE(std::isnan(Fp16ToFp32(Fp32ToFp16(f))));
      continue;
    }
    ASSERT_EQ(Fp32ToFp16(f), h) << "fp16 bits " << h;
  }
  EXPECT_EQ(Fp16ToFp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(Fp16ToFp32(0x3c00), 1.0f);
  EXPECT_EQ(Fp16ToFp32(0x7bff), 65504.0f);
  EXPECT_EQ(Fp16ToFp32(0xc000), -2.0f);
}

TEST(Conversions, Fp16RoundsToNearestEven) {
  // Between 1 and 1 + 2^-10: the tie goes to the even mantissa (1.0), above the tie rounds up.
  EXPECT_EQ(Fp32ToFp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(Fp32ToFp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(Fp32ToFp16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(Fp32ToFp16(65519.0f), 0x7bff);
  EXPECT_EQ(Fp32ToFp16(65520.0f), 0x7c00);  // tie above the largest finite -> inf
  EXPECT_EQ(Fp32ToFp16(std::numeric_limits<float>::infinity()), 0x7c00);
  // Subnormal ties: 2^-25 is halfway between 0 and the smallest subnormal -> 0 (even);
  // 3 * 2^-25 is halfway between 1 and 2 units -> 2 units.
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);
  EXPECT_EQ(Fp32ToFp16(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(Fp32ToFp16(-std::ldexp(1.0f, -30)), 0x8000);
  // Rounding up out of the subnormal range gives the smallest normal.
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)), 0x0400);
}

TEST(Conversions, Bf16IsExactAndRoundsToNearestEven) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = Bf16ToFp32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(Fp32ToBf16(f), b);
  }
  EXPECT_EQ(Fp32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie -> even
  EXPECT_EQ(Fp32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(Fp32ToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToFp32(Fp32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_F(SafetensorsTest, RoundTripsEveryDtype) {
  std::vector<float> values = {0.0f,  -0.0f, 1.0f,        -2.5f,   3.14159265f,
                               1e-6f, 6e4f,  -65504.0f,   0.1f,    std::ldexp(1.0f, -20),
                               7.0f,  -3e4f, 1.0f / 3.0f, 123.456f};
  std::vector<TensorSpec> specs = {{"a.f32", {2, 7}, Dtype::kFp32},
                                   {"b.f16", {14}, Dtype::kFp16},
                                   {"c.bf16", {7, 2}, Dtype::kBf16},
                                   {"d.empty", {0, 3}, Dtype::kFp32}};
  WriteSafetensors(dir_ / "m.safetensors", specs, {values, values, values, {}}, {{"format", "pt"}});
  std::unique_ptr<SafetensorsFile> f = SafetensorsFile::Open(dir_ / "m.safetensors");
  ASSERT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const TensorInfo* a = f->Find("a.f32");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(f->Find("c.bf16")->dtype, Dtype::kBf16);
  EXPECT_EQ(f->Find("nope"), nullptr);
  std::vector<float> out(values.size());
  f->ReadFp32(*a, out);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(values[i])) << i;
  }
  f->ReadFp32(*f->Find("b.f16"), out);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(out[i], Fp16ToFp32(Fp32ToFp16(values[i]))) << i;
    EXPECT_LE(std::fabs(out[i] - values[i]), std::fabs(values[i]) * 0x1p-11f + 0x1p-24f) << i;
  }
  f->ReadFp32(*f->Find("c.bf16"), out);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(out[i], Bf16ToFp32(Fp32ToBf16(values[i]))) << i;
    EXPECT_LE(std::fabs(out[i] - values[i]), std::fabs(values[i]) * 0x1p-8f) << i;
  }
  // I8: written from integral values, read back as int8 and as their fp32 values.
  WriteSafetensors(dir_ / "i8.safetensors", {{"q", {4}, Dtype::kInt8}},
                   {{-128.0f, -1.0f, 0.0f, 127.0f}});
  Checkpoint i8 = Checkpoint::Open(dir_ / "i8.safetensors");
  EXPECT_EQ(i8.Get("q").dtype, Dtype::kInt8);
  EXPECT_EQ(i8.ReadFp32("q"), (std::vector<float>{-128.0f, -1.0f, 0.0f, 127.0f}));
  std::vector<int8_t> q(2);
  i8.ReadInt8("q", 2, q);
  EXPECT_EQ(q, (std::vector<int8_t>{0, 127}));
  // The writer pads the header so the data starts 8-byte aligned.
  EXPECT_EQ(f->Bytes(*a).size(), 14u * 4);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f->Bytes(*a).data()) % 8, 0u);
}

TEST_F(SafetensorsTest, StreamsLargeTensorsInBlocks) {
  const int64_t n = 200000;  // several writer blocks
  WriteSafetensors(dir_ / "big.safetensors", {{"x", {n}, Dtype::kBf16}},
                   [](size_t, int64_t first, std::span<float> out) {
                     for (size_t i = 0; i < out.size(); ++i) {
                       out[i] = static_cast<float>((first + static_cast<int64_t>(i)) % 256);
                     }
                   });
  Checkpoint c = Checkpoint::Open(dir_ / "big.safetensors");
  std::vector<float> v = c.ReadFp32("x");
  ASSERT_EQ(v.size(), static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i += 997) EXPECT_EQ(v[static_cast<size_t>(i)], float(i % 256));
}

TEST_F(SafetensorsTest, ShardedCheckpointWithIndex) {
  WriteSafetensors(dir_ / "model-00001-of-00002.safetensors", {{"a", {2}, Dtype::kFp32}},
                   {{1.0f, 2.0f}});
  WriteSafetensors(dir_ / "model-00002-of-00002.safetensors",
                   {{"b", {1}, Dtype::kFp16}, {"c", {1}, Dtype::kBf16}}, {{3.0f}, {4.0f}});
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"metadata": {"total_size": 12}, "weight_map": {"a": "model-00001-of-00002.safetensors",
         "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}})";
  for (const fs::path& p : {dir_, dir_ / "model.safetensors.index.json"}) {
    Checkpoint c = Checkpoint::Open(p);
    EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(c.ReadFp32("a"), (std::vector<float>{1.0f, 2.0f}));
    EXPECT_EQ(c.ReadFp32("b"), (std::vector<float>{3.0f}));
    EXPECT_EQ(c.Get("c").dtype, Dtype::kBf16);
    try {
      c.Get("missing");
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kNotFound);
      EXPECT_NE(std::string(e.what()).find("'missing'"), std::string::npos);
    }
  }
  // An index that places a tensor in the wrong shard.
  std::ofstream(dir_ / "bad.index.json")
      << R"({"weight_map": {"a": "model-00002-of-00002.safetensors"}})";
  try {
    Checkpoint::Open(dir_ / "bad.index.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'a'"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, MalformedFilesAreErrorsNamingFileAndTensor) {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NO_THROW(SafetensorsFile::Open(File("ok.safetensors", ok, 8)));
  // Shorter than the length prefix.
  {
    fs::path p = dir_ / "tiny.safetensors";
    std::ofstream(p) << "abc";
    ExpectMalformed(p, {"shorter than the 8-byte header length"});
  }
  // Header length beyond the file, and absurdly large.
  ExpectMalformed(Raw("beyond.safetensors", ok.size() + 100, ok, 8), {"beyond the end"});
  ExpectMalformed(Raw("huge.safetensors", uint64_t{1} << 60, ok, 8), {"100 MB"});
  // Not JSON / not an object.
  ExpectMalformed(File("json.safetensors", "{\"w\": [", 0), {"not valid JSON"});
  ExpectMalformed(File("array.safetensors", "[1,2]", 0), {"not a JSON object"});
  // Unknown dtype.
  ExpectMalformed(
      File("dtype.safetensors", R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8),
      {"'w'", "I64", "F32, F16, BF16, I8"});
  // Shape/bytes mismatch.
  ExpectMalformed(
      File("shape.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
      {"'w'", "needs 12 bytes"});
  ExpectMalformed(
      File("neg.safetensors", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
      {"'w'", "non-negative"});
  ExpectMalformed(
      File("overflow.safetensors",
           R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
      {"'w'", "too large"});
  // Truncated data: offsets beyond the data section.
  ExpectMalformed(File("trunc.safetensors", ok, 5), {"'w'", "truncated"});
  // Offsets reversed, missing, or not integers.
  ExpectMalformed(
      File("rev.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
      {"'w'", "after end"});
  ExpectMalformed(File("nooff.safetensors", R"({"w":{"dtype":"F32","shape":[2]}})", 8),
                  {"'w'", "data_offsets"});
  // Overlapping offsets.
  ExpectMalformed(File("overlap.safetensors",
                       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}})",
                       12),
                  {"'a'", "'b'", "overlapping"});
  // Non-string metadata.
  ExpectMalformed(File("meta.safetensors", R"({"__metadata__":{"k":1}})", 0), {"__metadata__"});
  // Missing file.
  try {
    SafetensorsFile::Open(dir_ / "nope.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
}

TEST_F(SafetensorsTest, WriterRejectsDuplicatesAndUnstorableDtypes) {
  EXPECT_THROW(WriteSafetensors(dir_ / "d.safetensors",
                                {{"x", {1}, Dtype::kFp32}, {"x", {1}, Dtype::kFp32}}, {{1}, {2}}),
               Error);
  EXPECT_THROW(WriteSafetensors(dir_ / "i.safetensors", {{"x", {1}, Dtype::kFp8}}, {{1}}), Error);
  // I8 takes integral values in [-128, 127] only.
  EXPECT_THROW(WriteSafetensors(dir_ / "i.safetensors", {{"x", {1}, Dtype::kInt8}}, {{1.5f}}),
               Error);
  EXPECT_THROW(WriteSafetensors(dir_ / "i.safetensors", {{"x", {1}, Dtype::kInt8}}, {{128.0f}}),
               Error);
  EXPECT_THROW(WriteSafetensors(dir_ / "n.safetensors", {{"x", {2}, Dtype::kFp32}}, {{1}}), Error);
}

}  // namespace
}  // namespace lockstep::model
