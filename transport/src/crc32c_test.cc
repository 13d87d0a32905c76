#include "lockstep/transport/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string_view>
#include <vector>

namespace lockstep::transport {
namespace {

std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

TEST(Crc32c, KnownAnswers) {
  EXPECT_EQ(Crc32c(Bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable(Bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(Crc32c(Bytes("")), 0u);
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xFF, and an ascending sequence.
  std::vector<std::byte> zeros(32, std::byte{0});
  std::vector<std::byte> ones(32, std::byte{0xFF});
  std::vector<std::byte> ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = std::byte(i);
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32cPortable(ascending), 0x46DD794Eu);
}

TEST(Crc32c, HardwareAndPortableAgreeAtEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::vector<std::byte> buf(1100);
  for (auto& b : buf) b = std::byte(rng() & 0xFF);
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n + offset <= buf.size(); n += 37) {
      std::span<const std::byte> s(buf.data() + offset, n);
      ASSERT_EQ(Crc32c(s), Crc32cPortable(s)) << "offset " << offset << " length " << n;
    }
  }
}

TEST(Crc32c, ThreeStripePathAgreesWithPortableAroundBlockBoundaries) {
  std::mt19937 rng(11);
  std::vector<std::byte> buf(5 * 3 * 4096 + 64);
  for (auto& b : buf) b = std::byte(rng() & 0xFF);
  // 4 KiB stripes for large buffers, 256-byte stripes for the rest and for small buffers.
  for (size_t n :
       {size_t{3 * 256 - 1}, size_t{3 * 256}, size_t{3 * 256 + 5}, size_t{4096},
        size_t{2 * 3 * 256 + 9}, size_t{3 * 4096 - 1}, size_t{3 * 4096}, size_t{3 * 4096 + 1},
        size_t{3 * 4096 + 3 * 256 + 1}, size_t{2 * 3 * 4096 + 7}, size_t{5 * 3 * 4096 + 3}}) {
    for (size_t offset : {0, 3}) {
      std::span<const std::byte> s(buf.data() + offset, n);
      ASSERT_EQ(Crc32cSse42(s), Crc32cPortable(s)) << "length " << n << " offset " << offset;
      ASSERT_EQ(Crc32cSse42(s, 0x12345678u), Crc32cPortable(s, 0x12345678u))
          << "seeded, length " << n;
      ASSERT_EQ(Crc32c(s, 0x12345678u), Crc32cPortable(s, 0x12345678u)) << "seeded, length " << n;
    }
  }
}

// The folding path (VPCLMULQDQ, 256 bytes and up, on CPUs that have it): every length around
// its 256-byte main loop and 64-byte tail loop, every alignment, with and without a seed.
TEST(Crc32c, FoldingPathAgreesWithPortableAroundItsBlockSizes) {
  std::mt19937 rng(13);
  std::vector<std::byte> buf(3000);
  for (auto& b : buf) b = std::byte(rng() & 0xFF);
  for (size_t offset = 0; offset < 4; ++offset) {
    for (size_t n = 200; n <= 1100; ++n) {
      std::span<const std::byte> s(buf.data() + offset, n);
      ASSERT_EQ(Crc32c(s), Crc32cPortable(s)) << Crc32cImplementation() << " length " << n;
      ASSERT_EQ(Crc32c(s, 0x9ABCDEF0u), Crc32cPortable(s, 0x9ABCDEF0u))
          << Crc32cImplementation() << " seeded, length " << n;
    }
  }
  std::vector<std::byte> zeros(4096, std::byte{0});
  EXPECT_EQ(Crc32c(zeros), Crc32cPortable(zeros));  // an all-zero block still folds the seed
}

// Each folding path this CPU has, alone (Crc32c takes only the widest): every length around the
// main and tail loops of both widths (128/32 and 256/64 bytes), every alignment, seeded or not.
// A CPU with neither path (no VPCLMULQDQ) checks nothing here; the dispatch test above still
// runs Crc32c's path.
TEST(Crc32c, EachFoldingWidthAgreesWithPortable) {
  std::mt19937 rng(17);
  std::vector<std::byte> buf(3000);
  for (auto& b : buf) b = std::byte(rng() & 0xFF);
  for (int bits : {256, 512}) {
    if (!Crc32cFolding(buf, 0, bits)) continue;
    for (size_t offset = 0; offset < 4; ++offset) {
      for (size_t n = 256; n <= 1100; ++n) {
        std::span<const std::byte> s(buf.data() + offset, n);
        ASSERT_EQ(*Crc32cFolding(s, 0, bits), Crc32cPortable(s)) << bits << " bits, length " << n;
        ASSERT_EQ(*Crc32cFolding(s, 0x9ABCDEF0u, bits), Crc32cPortable(s, 0x9ABCDEF0u))
            << bits << " bits, seeded, length " << n;
      }
    }
    std::vector<std::byte> zeros(4096, std::byte{0});
    EXPECT_EQ(*Crc32cFolding(zeros, 0, bits), Crc32cPortable(zeros)) << bits << " bits";
  }
  EXPECT_FALSE(Crc32cFolding(std::span<const std::byte>(buf.data(), 255), 0, 256))
      << "shorter than the folding minimum";
}

TEST(Crc32c, IncrementalEqualsWhole) {
  auto whole = Crc32c(Bytes("The quick brown fox jumps over the lazy dog"));
  auto part = Crc32c(Bytes(" jumps over the lazy dog"), Crc32c(Bytes("The quick brown fox")));
  EXPECT_EQ(whole, part);
  EXPECT_EQ(whole, 0x22620404u);
}

TEST(Crc32c, DetectsSingleBitFlip) {
  std::vector<std::byte> data(4096, std::byte{0x5A});
  uint32_t before = Crc32c(data);
  data[1234] ^= std::byte{0x04};
  EXPECT_NE(Crc32c(data), before);
}

}  // namespace
}  // namespace lockstep::transport
