#include "lockstep/transport/frame.h"

#include <gtest/gtest.h>

#include <random>

#include "frame_internal.h"
#include "lockstep/common/error.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::transport {
namespace {

constexpr uint64_t kMax = 1 << 20;

FrameHeader Sample() {
  FrameHeader h;
  h.kind = FrameKind::kData;
  h.message.schedule_id = 42;
  h.message.step = 17;
  h.message.src = {3, 7};
  h.message.dst = {12, 7};
  h.message.tensor_id = 9;
  h.message.sequence = 5;
  h.message.token_index = 128;
  h.message.dtype = Dtype::kFp16;
  h.message.shape = {2, 3, 4};
  h.message.send_time_ns = 1000;
  h.message.src_rank = 11;
  h.message.ahead = 0x0102030405060708;
  h.payload_length = 2 * 3 * 4 * 2;
  h.payload_crc32c = 0xDEADBEEF;
  return h;
}

// Expects `fn` to throw a kProtocol Error whose message contains `needle`.
template <typename Fn>
void ExpectProtocolError(Fn fn, const std::string& needle) {
  try {
    fn();
    FAIL() << "no error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProtocol) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Frame, RoundTripsEveryField) {
  FrameHeader h = Sample();
  auto bytes = EncodeFrameHeader(h);
  EXPECT_LE(bytes.size(), kMaxHeaderBytes);
  FrameHeader d = DecodeFrameHeader(bytes, "link x", kMax);
  EXPECT_EQ(d.kind, FrameKind::kData);
  EXPECT_EQ(d.message.schedule_id, 42u);
  EXPECT_EQ(d.message.step, 17);
  EXPECT_EQ(d.message.src, (PortRef{3, 7}));
  EXPECT_EQ(d.message.dst, (PortRef{12, 7}));
  EXPECT_EQ(d.message.tensor_id, 9u);
  EXPECT_EQ(d.message.sequence, 5u);
  EXPECT_EQ(d.message.token_index, 128);
  EXPECT_EQ(d.message.dtype, Dtype::kFp16);
  EXPECT_EQ(d.message.shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(d.message.send_time_ns, 1000);
  EXPECT_EQ(d.message.src_rank, 11);
  EXPECT_EQ(d.message.ahead, 0x0102030405060708u);
  EXPECT_EQ(d.payload_length, 48u);
  EXPECT_EQ(d.payload_crc32c, 0xDEADBEEFu);
  EXPECT_TRUE(d.payload_checked);
  h.payload_checked = false;
  EXPECT_FALSE(DecodeFrameHeader(EncodeFrameHeader(h), "link x", kMax).payload_checked);
  h.message.src_rank = -1;  // the default: not a collective's tensor
  EXPECT_EQ(DecodeFrameHeader(EncodeFrameHeader(h), "link x", kMax).message.src_rank, -1);
}

TEST(Frame, EncoderWritesExactlyWhatCapnpWrites) {
  std::mt19937_64 rng(20261129);
  for (int i = 0; i < 2000; ++i) {
    FrameHeader h;
    h.kind = static_cast<FrameKind>(i % 3);
    h.message.schedule_id = rng();
    h.message.step = static_cast<int64_t>(rng());
    h.message.src = {static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())};
    h.message.dst = {static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())};
    h.message.tensor_id = rng();
    h.message.sequence = rng();
    h.message.token_index = i % 5 == 0 ? -1 : static_cast<int64_t>(rng());
    h.message.dtype = static_cast<Dtype>(i % kDtypeCount);
    h.message.shape.resize(i % (kMaxShapeRank + 1));  // ranks 0..8
    for (auto& d : h.message.shape) d = static_cast<int64_t>(rng() >> (i % 64));
    h.message.send_time_ns = static_cast<int64_t>(rng());
    h.message.src_rank = i % 3 == 0 ? -1 : static_cast<int32_t>(rng());
    h.message.ahead = i % 4 == 0 ? 0 : rng();
    h.payload_length = rng();
    h.payload_crc32c = static_cast<uint32_t>(rng());
    h.payload_checked = i % 2 == 0;
    ASSERT_EQ(EncodeFrameHeader(h), EncodeFrameHeaderWithBuilder(h)) << "header " << i;
  }
  // All zero (and payload checked, the schema's default), and every field at its maximum.
  EXPECT_EQ(EncodeFrameHeader(FrameHeader{}), EncodeFrameHeaderWithBuilder(FrameHeader{}));
  FrameHeader max = Sample();
  max.message.schedule_id = UINT64_MAX;
  max.message.step = INT64_MIN;
  max.message.shape.assign(kMaxShapeRank, INT64_MAX);
  max.payload_crc32c = UINT32_MAX;
  max.message.src_rank = INT32_MAX;
  max.message.ahead = UINT64_MAX;
  EXPECT_EQ(EncodeFrameHeader(max), EncodeFrameHeaderWithBuilder(max));
  // A shape the decoders refuse (too many dimensions) is still encoded as capnp would.
  max.message.shape.assign(kMaxShapeRank + 3, 1);
  EXPECT_EQ(EncodeFrameHeader(max), EncodeFrameHeaderWithBuilder(max));
}

// What decoding `bytes` gives, as text: the error, or every field.
std::string Outcome(std::span<const std::byte> bytes, bool fast_path) {
  try {
    FrameHeader h = DecodeFrameHeader(bytes, "link x", kMax, fast_path);
    const MessageHeader& m = h.message;
    std::string out =
        std::to_string(static_cast<int>(h.kind)) + " " + std::to_string(m.schedule_id) + " " +
        std::to_string(m.step) + " " + ToString(m.src) + " " + ToString(m.dst) + " " +
        std::to_string(m.tensor_id) + " " + std::to_string(m.sequence) + " " +
        std::to_string(m.token_index) + " " + std::to_string(static_cast<int>(m.dtype)) + " " +
        std::to_string(m.send_time_ns) + " " + std::to_string(m.src_rank) + " " +
        std::to_string(m.ahead) + " " + std::to_string(h.payload_length) + " " +
        std::to_string(h.payload_crc32c) + " " + std::to_string(h.payload_checked) + " [";
    for (int64_t d : m.shape) out += std::to_string(d) + ",";
    return out + "]";
  } catch (const Error& e) {
    return std::string("error: ") + e.what();
  }
}

// The decoder reads headers in the encoder's exact layout at fixed offsets and gives everything
// else to Cap'n Proto's reader: both must agree on every input, valid or not.
TEST(Frame, FastPathDecodesEveryInputAsCapnpsReaderDoes) {
  std::mt19937_64 rng(7);
  int canonical = 0;
  for (int i = 0; i < 60; ++i) {
    FrameHeader h = Sample();
    h.kind = static_cast<FrameKind>(i % 3);
    h.message.shape.assign(i % (kMaxShapeRank + 1), 1 + static_cast<int64_t>(i % 4));
    h.message.dtype = static_cast<Dtype>(i % kDtypeCount);
    h.payload_length =
        h.kind == FrameKind::kData ? ShapeBytes(h.message.shape, h.message.dtype, "test") : 0;
    h.payload_checked = i % 2 == 0;
    h.message.step = static_cast<int64_t>(rng());
    const std::vector<std::byte> bytes = EncodeFrameHeader(h);
    ASSERT_TRUE(HasCanonicalLayout(bytes)) << "header " << i;
    ASSERT_EQ(Outcome(bytes, true), Outcome(bytes, false)) << "header " << i;
    // Every byte changed three ways: structural words leave the fast path, fields change value
    // (a bad version, kind, dtype, length) on both paths alike.
    for (size_t at = 0; at < bytes.size(); ++at) {
      for (uint8_t mask : {0x01, 0x80, 0xFF}) {
        std::vector<std::byte> bad = bytes;
        bad[at] ^= std::byte{mask};
        canonical += HasCanonicalLayout(bad) ? 1 : 0;
        ASSERT_EQ(Outcome(bad, true), Outcome(bad, false)) << "header " << i << " byte " << at;
      }
    }
  }
  EXPECT_GT(canonical, 10000);  // most mutations hit fields, which the fast path reads
  // Not the encoder's layout: too many dimensions (the builder's output), or a shorter segment.
  FrameHeader wide = Sample();
  wide.message.shape.assign(kMaxShapeRank + 1, 1);
  EXPECT_FALSE(HasCanonicalLayout(EncodeFrameHeader(wide)));
  std::vector<std::byte> cut = EncodeFrameHeader(Sample());
  cut.resize(cut.size() - 8);
  EXPECT_FALSE(HasCanonicalLayout(cut));
  EXPECT_EQ(Outcome(cut, true), Outcome(cut, false));
}

TEST(Frame, EncodingIsDeterministic) {
  EXPECT_EQ(EncodeFrameHeader(Sample()), EncodeFrameHeader(Sample()));
}

TEST(Frame, RejectsTruncatedHeadersAtEveryLength) {
  auto bytes = EncodeFrameHeader(Sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::span<const std::byte> cut(bytes.data(), n);
    ExpectProtocolError([&] { DecodeFrameHeader(cut, "link chip 3:7 <-> chip 12:7", kMax); },
                        "link chip 3:7 <-> chip 12:7: garbled frame header");
  }
}

TEST(Frame, RejectsOversizedHeader) {
  std::vector<std::byte> big(kMaxHeaderBytes + 8);
  ExpectProtocolError([&] { DecodeFrameHeader(big, "link y", kMax); }, "4104 bytes");
}

TEST(Frame, RejectsGarbledSegmentTable) {
  auto bytes = EncodeFrameHeader(Sample());
  bytes[4] = std::byte{0xFF};  // segment size far beyond the frame
  ExpectProtocolError([&] { DecodeFrameHeader(bytes, "link y", kMax); }, "garbled");
}

TEST(Frame, RejectsWrongVersionAndBadDtypeAndShapeMismatch) {
  FrameHeader h = Sample();
  h.payload_length = 47;
  ExpectProtocolError([&] { DecodeFrameHeader(EncodeFrameHeader(h), "l", kMax); },
                      "step 17: payload length 47 does not match shape and dtype (48 bytes)");
  h = Sample();
  h.message.shape = {-1, 2};
  ExpectProtocolError([&] { DecodeFrameHeader(EncodeFrameHeader(h), "l", kMax); },
                      "negative dimension");
  h = Sample();
  h.message.shape = {1 << 20, 1 << 20};
  h.payload_length = uint64_t{2} << 40;
  ExpectProtocolError([&] { DecodeFrameHeader(EncodeFrameHeader(h), "l", kMax); },
                      "exceeds the limit");
  auto bytes = EncodeFrameHeader(Sample());
  // The data section starts after the 8-byte segment table and the 8-byte root pointer;
  // `version` is its first UInt16, `dtype` sits at byte 2 (after version).
  bytes[16] = std::byte{9};
  ExpectProtocolError([&] { DecodeFrameHeader(bytes, "l", kMax); }, "wire version 9");
}

TEST(Frame, EveryFlippedByteIsRejectedOrDecodesToSomethingValid) {
  // A flipped bit must never crash the decoder; what it decodes to must pass its own checks.
  auto clean = EncodeFrameHeader(Sample());
  for (size_t i = 0; i < clean.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bytes = clean;
      bytes[i] ^= std::byte(1 << bit);
      try {
        FrameHeader d = DecodeFrameHeader(bytes, "l", kMax);
        EXPECT_LE(d.payload_length, kMax);
        EXPECT_LE(d.message.shape.size(), kMaxShapeRank);
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kProtocol);
      }
    }
  }
}

TEST(Frame, CheckPayloadNamesStepOnLengthAndCrcMismatch) {
  std::vector<std::byte> payload(48, std::byte{1});
  FrameHeader h = Sample();
  h.payload_crc32c = Crc32c(payload);
  CheckPayload(h, payload, "link z");  // no throw
  ExpectProtocolError([&] { CheckPayload(h, std::span(payload).first(40), "link z"); },
                      "link z: step 17: payload frame has 40 bytes, header says 48");
  payload[3] = std::byte{2};
  ExpectProtocolError([&] { CheckPayload(h, payload, "link z"); },
                      "link z: step 17: payload CRC32C mismatch");
  // A checked header is verified even where unchecked frames are allowed.
  ExpectProtocolError([&] { CheckPayload(h, payload, "link z", /*require_checked=*/false); },
                      "link z: step 17: payload CRC32C mismatch");
}

TEST(Frame, UncheckedPayloadSkipsTheCrcOnlyWhereAllowed) {
  std::vector<std::byte> payload(48, std::byte{1});
  FrameHeader h = Sample();
  h.payload_checked = false;
  h.payload_crc32c = 0;
  CheckPayload(h, payload, "link z", /*require_checked=*/false);  // no throw
  ExpectProtocolError([&] { CheckPayload(h, payload, "link z"); },
                      "link z: step 17: payload is not checksummed");
  ExpectProtocolError(
      [&] { CheckPayload(h, std::span(payload).first(40), "link z", /*require_checked=*/false); },
      "link z: step 17: payload frame has 40 bytes, header says 48");
}

TEST(Frame, SegmentTagRoundTripsAndRejectsEveryMalformedField) {
  const SegmentTag tag{3, 8, 5'000'000};
  std::vector<std::byte> bytes = EncodeSegmentTag(tag);
  ASSERT_EQ(bytes.size(), kSegmentTagBytes);
  SegmentTag back = DecodeSegmentTag(bytes, "link x", 16 << 20);
  EXPECT_EQ(back.index, 3u);
  EXPECT_EQ(back.count, 8u);
  EXPECT_EQ(back.total_bytes, 5'000'000u);
  for (size_t n = 0; n < bytes.size(); ++n) {
    ExpectProtocolError([&] { DecodeSegmentTag(std::span(bytes).first(n), "link x", 16 << 20); },
                        "link x: garbled segment tag");
  }
  std::vector<std::byte> bad = bytes;
  bad[0] ^= std::byte{1};
  ExpectProtocolError([&] { DecodeSegmentTag(bad, "link x", 16 << 20); }, "bad magic");
  ExpectProtocolError(
      [&] {
        DecodeSegmentTag(EncodeSegmentTag({0, 1, 10}), "l", 100);
      },
      "segment count 1");
  ExpectProtocolError(
      [&] {
        DecodeSegmentTag(EncodeSegmentTag({0, kMaxSegments + 1, 10}), "l", 100);
      },
      "segment count");
  ExpectProtocolError(
      [&] {
        DecodeSegmentTag(EncodeSegmentTag({2, 2, 10}), "l", 100);
      },
      "segment index 2 of 2");
  ExpectProtocolError(
      [&] {
        DecodeSegmentTag(EncodeSegmentTag({0, 2, 101}), "l", 100);
      },
      "payload length 101");
  ExpectProtocolError(
      [&] {
        DecodeSegmentTag(EncodeSegmentTag({0, 2, 0}), "l", 100);
      },
      "payload length 0");
}

// A tag is never taken for a header, nor a header for a tag (their sizes cannot match).
TEST(Frame, SegmentTagAndHeaderCannotBeConfused) {
  ExpectProtocolError(
      [&] {
        DecodeFrameHeader(EncodeSegmentTag({1, 2, 10}), "l", kMax);
      },
      "garbled frame header: 20 bytes");
  ExpectProtocolError([&] { DecodeSegmentTag(EncodeFrameHeader(Sample()), "l", kMax); },
                      "garbled segment tag");
}

TEST(Frame, CheckPayloadComparesABackendComputedCrc) {
  FrameHeader h = Sample();
  std::vector<std::byte> payload(h.payload_length, std::byte{7});
  h.payload_crc32c = Crc32c(payload);
  CheckPayload(h, payload, "l", true, h.payload_crc32c);
  // The computed CRC is what is compared: a wrong one is refused even though the bytes match.
  ExpectProtocolError([&] { CheckPayload(h, payload, "l", true, h.payload_crc32c ^ 1); },
                      "step 17: payload CRC32C mismatch");
}

}  // namespace
}  // namespace lockstep::transport
