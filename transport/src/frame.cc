#include "lockstep/transport/frame.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <bit>
#include <cstdio>
#include <cstring>

#include "frame_internal.h"
#include "lockstep/common/error.h"
#include "lockstep/proto/frame.capnp.h"
#include "lockstep/transport/crc32c.h"

namespace lockstep::transport {
namespace {

Error Garbled(const std::string& context, const std::string& why) {
  return Error(ErrorCode::kProtocol, context + ": garbled frame header: " + why);
}

}  // namespace

uint64_t ShapeBytes(const std::vector<int64_t>& shape, Dtype dtype, const std::string& context) {
  if (shape.size() > kMaxShapeRank) {
    throw InvalidInput(context + ": shape has " + std::to_string(shape.size()) +
                       " dimensions (at most " + std::to_string(kMaxShapeRank) + ")");
  }
  uint64_t bytes = static_cast<uint64_t>(DtypeBytes(dtype));
  for (int64_t d : shape) {
    if (d < 0) throw InvalidInput(context + ": negative dimension " + std::to_string(d));
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) || bytes > INT64_MAX) {
      throw InvalidInput(context + ": tensor size overflows");
    }
  }
  return bytes;
}

// Through Cap'n Proto's builder: shapes of more than kMaxShapeRank dimensions (which every
// decoder refuses; tests send them on purpose), and the reference the direct encoder is tested
// against.
std::vector<std::byte> EncodeFrameHeaderWithBuilder(const FrameHeader& header) {
  // Built in a zeroed stack segment and copied out once: no allocation but the result's. A
  // header is ~20 words; kMaxShapeRank dimensions add 8.
  capnp::word scratch[64];
  std::memset(scratch, 0, sizeof scratch);
  capnp::MallocMessageBuilder builder(kj::arrayPtr(scratch, 64));
  auto h = builder.initRoot<proto::FrameHeader>();
  const MessageHeader& m = header.message;
  h.setVersion(kWireVersion);
  h.setKind(static_cast<proto::FrameHeader::Kind>(header.kind));
  h.setScheduleId(m.schedule_id);
  h.setStep(m.step);
  h.setSrcChip(m.src.chip);
  h.setSrcPort(m.src.port);
  h.setDstChip(m.dst.chip);
  h.setDstPort(m.dst.port);
  h.setTensorId(m.tensor_id);
  h.setSequence(m.sequence);
  h.setTokenIndex(m.token_index);
  h.setDtype(static_cast<uint8_t>(m.dtype));
  auto shape = h.initShape(static_cast<unsigned>(m.shape.size()));
  for (unsigned i = 0; i < m.shape.size(); ++i) shape.set(i, m.shape[i]);
  h.setPayloadLength(header.payload_length);
  h.setPayloadCrc32c(header.payload_crc32c);
  h.setSendTimeNs(m.send_time_ns);
  h.setPayloadChecked(header.payload_checked);
  h.setSrcRank(m.src_rank);
  h.setAhead(m.ahead);
  // The flat single-segment layout messageToFlatArray writes: segment count - 1 (0), the
  // segment's size in words, then the segment.
  auto segments = builder.getSegmentsForOutput();
  if (segments.size() != 1) {
    kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
    auto bytes = words.asBytes();
    return std::vector<std::byte>(reinterpret_cast<const std::byte*>(bytes.begin()),
                                  reinterpret_cast<const std::byte*>(bytes.end()));
  }
  auto segment = segments[0].asBytes();
  std::vector<std::byte> out(8 + segment.size());
  const uint32_t table[2] = {0, static_cast<uint32_t>(segments[0].size())};
  std::memcpy(out.data(), table, 8);
  std::memcpy(out.data() + 8, segment.begin(), segment.size());
  return out;
}

// The header is small and fixed in layout, so it is written directly in the flat single-segment
// form Cap'n Proto's builder produces for proto::FrameHeader (segment table, root struct pointer,
// kDataWords data words, the shape list pointer, the shape): the same bytes (frame_test.cc builds
// the same headers with capnp and compares) without a builder per message, which cost as much as
// the rest of an inproc send. Field offsets below are those of proto/frame.capnp as capnp compiles
// it; the static_asserts and the test catch a schema change. Decoding stays with capnp's reader,
// the trust boundary.
namespace {

constexpr size_t kDataWords = 12;
constexpr size_t kPointerWords = 1;
static_assert(proto::FrameHeader::_capnpPrivate::dataWordSize == kDataWords);
static_assert(proto::FrameHeader::_capnpPrivate::pointerCount == kPointerWords);
static_assert(std::endian::native == std::endian::little,
              "Cap'n Proto's wire order is little-endian");

template <typename T>
void Put(std::byte* at, T value) {
  std::memcpy(at, &value, sizeof value);
}

}  // namespace

std::vector<std::byte> EncodeFrameHeader(const FrameHeader& header) {
  const MessageHeader& m = header.message;
  const size_t rank = m.shape.size();
  if (rank > kMaxShapeRank) return EncodeFrameHeaderWithBuilder(header);
  // Segment words: root pointer, data section, pointer section, shape list (8 bytes a dimension).
  const size_t words = 1 + kDataWords + kPointerWords + rank;
  std::vector<std::byte> out(8 + 8 * words);  // zeroed: every unset field is 0 on the wire
  std::byte* p = out.data();
  Put<uint32_t>(p, 0);  // segment count - 1
  Put<uint32_t>(p + 4, static_cast<uint32_t>(words));
  // Root struct pointer: offset 0, kDataWords data words, kPointerWords pointers.
  Put<uint64_t>(p + 8, (uint64_t{kPointerWords} << 48) | (uint64_t{kDataWords} << 32));
  std::byte* d = p + 16;  // data section; offsets in bytes
  Put<uint16_t>(d + 0, kWireVersion);
  Put<uint16_t>(d + 2, static_cast<uint16_t>(header.kind));
  Put<uint32_t>(d + 4, m.src.chip);
  Put<uint64_t>(d + 8, m.schedule_id);
  Put<int64_t>(d + 16, m.step);
  Put<uint32_t>(d + 24, m.src.port);
  Put<uint32_t>(d + 28, m.dst.chip);
  Put<uint32_t>(d + 32, m.dst.port);
  Put<uint8_t>(d + 36, static_cast<uint8_t>(m.dtype));
  // payloadChecked (bit 296) has default true: Cap'n Proto stores value XOR default.
  Put<uint8_t>(d + 37, header.payload_checked ? 0 : 1);
  Put<uint64_t>(d + 40, m.tensor_id);
  Put<uint64_t>(d + 48, m.sequence);
  Put<int64_t>(d + 56, m.token_index);
  Put<uint64_t>(d + 64, header.payload_length);
  Put<uint32_t>(d + 72, header.payload_crc32c);
  // srcRank (bits 608..639) has default -1: stored XOR default, i.e. complemented.
  Put<int32_t>(d + 76, ~m.src_rank);
  Put<int64_t>(d + 80, m.send_time_ns);
  Put<uint64_t>(d + 88, m.ahead);
  // Shape: list pointer (kind 1, offset 0: the list follows, element size 5 = 8 bytes, count).
  Put<uint64_t>(d + 8 * kDataWords, 1 | (uint64_t{5} << 32) | (uint64_t{rank} << 35));
  if (rank > 0) std::memcpy(d + 8 * (kDataWords + kPointerWords), m.shape.data(), 8 * rank);
  return out;
}

bool HasCanonicalLayout(std::span<const std::byte> bytes) {
  const size_t fixed_words = 1 + kDataWords + kPointerWords;
  if (bytes.size() % 8 != 0 || bytes.size() < 8 * (1 + fixed_words)) return false;
  const size_t words = bytes.size() / 8 - 1;
  if (words > fixed_words + kMaxShapeRank) return false;
  const size_t rank = words - fixed_words;
  const std::byte* p = bytes.data();
  uint32_t table[2];
  uint64_t root;
  uint64_t list;
  std::memcpy(table, p, 8);
  std::memcpy(&root, p + 8, 8);
  std::memcpy(&list, p + 16 + 8 * kDataWords, 8);
  return table[0] == 0 && table[1] == words &&
         root == ((uint64_t{kPointerWords} << 48) | (uint64_t{kDataWords} << 32)) &&
         list == (1 | (uint64_t{5} << 32) | (uint64_t{rank} << 35));
}

namespace {

// The fields whose values the decoder checks, in the order it checks them (both paths give the
// same messages).
void CheckVersionKindDtype(uint16_t version, uint16_t kind, uint8_t dtype, int64_t step,
                           const std::string& context) {
  if (version != kWireVersion) {
    throw Garbled(context, "wire version " + std::to_string(version) + " (expected " +
                               std::to_string(kWireVersion) + ")");
  }
  if (kind > static_cast<uint16_t>(FrameKind::kClose)) {
    throw Garbled(context, "unknown frame kind " + std::to_string(kind));
  }
  if (dtype >= kDtypeCount) {
    throw Garbled(context,
                  "step " + std::to_string(step) + ": unknown dtype " + std::to_string(dtype));
  }
}

template <typename T>
T Get(const std::byte* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

// A header in exactly the layout EncodeFrameHeader writes (and Cap'n Proto's builder: one
// segment, the root struct right after its pointer with kDataWords data words and kPointerWords
// pointers, the shape list right after that with at most kMaxShapeRank 8-byte elements, nothing
// else) is read at its fixed offsets, which is what capnp's reader reads from it; anything else,
// however slightly different, goes to capnp's reader. nullopt: not that layout.
std::optional<FrameHeader> DecodeCanonical(std::span<const std::byte> bytes,
                                           const std::string& context) {
  if (!HasCanonicalLayout(bytes)) return std::nullopt;
  const size_t rank = bytes.size() / 8 - 1 - (1 + kDataWords + kPointerWords);
  const std::byte* d = bytes.data() + 16;
  FrameHeader out;
  MessageHeader& m = out.message;
  m.step = Get<int64_t>(d + 16);
  CheckVersionKindDtype(Get<uint16_t>(d + 0), Get<uint16_t>(d + 2), Get<uint8_t>(d + 36), m.step,
                        context);
  out.kind = static_cast<FrameKind>(Get<uint16_t>(d + 2));
  m.schedule_id = Get<uint64_t>(d + 8);
  m.src = {Get<uint32_t>(d + 4), Get<uint32_t>(d + 24)};
  m.dst = {Get<uint32_t>(d + 28), Get<uint32_t>(d + 32)};
  m.tensor_id = Get<uint64_t>(d + 40);
  m.sequence = Get<uint64_t>(d + 48);
  m.token_index = Get<int64_t>(d + 56);
  m.dtype = static_cast<Dtype>(Get<uint8_t>(d + 36));
  m.shape.resize(rank);
  if (rank > 0) std::memcpy(m.shape.data(), d + 8 * (kDataWords + kPointerWords), 8 * rank);
  m.send_time_ns = Get<int64_t>(d + 80);
  m.ahead = Get<uint64_t>(d + 88);
  m.src_rank = ~Get<int32_t>(d + 76);
  out.payload_length = Get<uint64_t>(d + 64);
  out.payload_crc32c = Get<uint32_t>(d + 72);
  out.payload_checked = (Get<uint8_t>(d + 37) & 1) == 0;  // stored XOR its default, true
  return out;
}

// Any other layout: Cap'n Proto's reader, which validates every pointer.
FrameHeader DecodeWithReader(std::span<const std::byte> bytes, const std::string& context) {
  // Frames from ZeroMQ need not be word-aligned; the header is small, so copy it into words.
  capnp::word words[kMaxHeaderBytes / sizeof(capnp::word)];
  std::memcpy(words, bytes.data(), bytes.size());
  FrameHeader out;
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = kMaxHeaderBytes / sizeof(capnp::word);
    options.nestingLimit = 4;
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, bytes.size() / sizeof(capnp::word)),
                                         options);
    auto h = reader.getRoot<proto::FrameHeader>();
    MessageHeader& m = out.message;
    m.step = h.getStep();
    CheckVersionKindDtype(h.getVersion(), static_cast<uint16_t>(h.getKind()), h.getDtype(), m.step,
                          context);
    out.kind = static_cast<FrameKind>(h.getKind());
    m.schedule_id = h.getScheduleId();
    m.src = {h.getSrcChip(), h.getSrcPort()};
    m.dst = {h.getDstChip(), h.getDstPort()};
    m.tensor_id = h.getTensorId();
    m.sequence = h.getSequence();
    m.token_index = h.getTokenIndex();
    m.dtype = static_cast<Dtype>(h.getDtype());
    auto shape = h.getShape();
    if (shape.size() > kMaxShapeRank) {
      throw Garbled(context, "step " + std::to_string(m.step) + ": shape has " +
                                 std::to_string(shape.size()) + " dimensions (at most " +
                                 std::to_string(kMaxShapeRank) + ")");
    }
    for (int64_t dim : shape) m.shape.push_back(dim);
    m.send_time_ns = h.getSendTimeNs();
    m.src_rank = h.getSrcRank();
    m.ahead = h.getAhead();
    out.payload_length = h.getPayloadLength();
    out.payload_crc32c = h.getPayloadCrc32c();
    out.payload_checked = h.getPayloadChecked();
  } catch (const kj::Exception& e) {
    throw Garbled(context, std::string(e.getDescription().cStr()));
  }
  return out;
}

}  // namespace

FrameHeader DecodeFrameHeader(std::span<const std::byte> bytes, const std::string& context,
                              uint64_t max_payload_bytes) {
  return DecodeFrameHeader(bytes, context, max_payload_bytes, /*canonical_fast_path=*/true);
}

FrameHeader DecodeFrameHeader(std::span<const std::byte> bytes, const std::string& context,
                              uint64_t max_payload_bytes, bool canonical_fast_path) {
  if (bytes.size() < 16 || bytes.size() > kMaxHeaderBytes || bytes.size() % 8 != 0) {
    throw Garbled(context, std::to_string(bytes.size()) +
                               " bytes (valid: a multiple of 8 between 16 and " +
                               std::to_string(kMaxHeaderBytes) + ")");
  }
  std::optional<FrameHeader> canonical;
  if (canonical_fast_path) canonical = DecodeCanonical(bytes, context);
  FrameHeader out = canonical ? std::move(*canonical) : DecodeWithReader(bytes, context);
  // Built only on the error paths below (the happy path allocates no strings).
  auto step = [&] { return "step " + std::to_string(out.message.step); };
  if (out.kind != FrameKind::kData) {
    if (out.payload_length != 0) {
      throw Garbled(context, "control frame with a payload of " +
                                 std::to_string(out.payload_length) + " bytes");
    }
    return out;
  }
  uint64_t expected = 0;
  try {
    expected = ShapeBytes(out.message.shape, out.message.dtype, context);
  } catch (const Error& e) {
    throw Error(ErrorCode::kProtocol,
                context + ": garbled frame header: " + step() + ": " + e.what());
  }
  if (expected != out.payload_length) {
    throw Garbled(context, step() + ": payload length " + std::to_string(out.payload_length) +
                               " does not match shape and dtype (" + std::to_string(expected) +
                               " bytes)");
  }
  if (out.payload_length > max_payload_bytes) {
    throw Garbled(context, step() + ": payload length " + std::to_string(out.payload_length) +
                               " exceeds the limit of " + std::to_string(max_payload_bytes) +
                               " bytes");
  }
  return out;
}

void CheckPayload(const FrameHeader& header, std::span<const std::byte> payload,
                  const std::string& context, bool require_checked,
                  std::optional<uint32_t> computed_crc) {
  auto step = [&] { return "step " + std::to_string(header.message.step); };
  if (payload.size() != header.payload_length) {
    throw Error(ErrorCode::kProtocol, context + ": " + step() + ": payload frame has " +
                                          std::to_string(payload.size()) + " bytes, header says " +
                                          std::to_string(header.payload_length));
  }
  if (!header.payload_checked) {
    if (!require_checked) return;
    throw Error(ErrorCode::kProtocol,
                context + ": " + step() +
                    ": payload is not checksummed (the header says unchecked), but this end "
                    "requires a CRC32C (link checksums on, or auto on tcp without CURVE; both "
                    "ends of a link must use the same policy)");
  }
  uint32_t crc = computed_crc ? *computed_crc : Crc32c(payload);
  if (crc != header.payload_crc32c) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "computed 0x%08X, header says 0x%08X", crc,
                  header.payload_crc32c);
    throw Error(ErrorCode::kProtocol,
                context + ": " + step() + ": payload CRC32C mismatch (" + buf + ")");
  }
}

namespace {
constexpr uint32_t kSegmentMagic = 0x3147534C;  // "LSG1" little-endian
}  // namespace

std::vector<std::byte> EncodeSegmentTag(const SegmentTag& tag) {
  std::vector<std::byte> out(kSegmentTagBytes);
  const uint32_t words[3] = {kSegmentMagic, tag.index, tag.count};
  std::memcpy(out.data(), words, 12);
  std::memcpy(out.data() + 12, &tag.total_bytes, 8);
  return out;
}

SegmentTag DecodeSegmentTag(std::span<const std::byte> bytes, const std::string& context,
                            uint64_t max_payload_bytes) {
  auto garbled = [&](const std::string& why) {
    return Error(ErrorCode::kProtocol, context + ": garbled segment tag: " + why);
  };
  if (bytes.size() != kSegmentTagBytes) {
    throw garbled(std::to_string(bytes.size()) + " bytes (expected " +
                  std::to_string(kSegmentTagBytes) + ")");
  }
  uint32_t words[3];
  SegmentTag tag;
  std::memcpy(words, bytes.data(), 12);
  std::memcpy(&tag.total_bytes, bytes.data() + 12, 8);
  tag.index = words[1];
  tag.count = words[2];
  if (words[0] != kSegmentMagic) throw garbled("bad magic");
  if (tag.count < 2 || tag.count > kMaxSegments) {
    throw garbled("segment count " + std::to_string(tag.count) + " (valid: 2.." +
                  std::to_string(kMaxSegments) + ")");
  }
  if (tag.index >= tag.count) {
    throw garbled("segment index " + std::to_string(tag.index) + " of " +
                  std::to_string(tag.count));
  }
  if (tag.total_bytes == 0 || tag.total_bytes > max_payload_bytes) {
    throw garbled("payload length " + std::to_string(tag.total_bytes) + " (valid: 1.." +
                  std::to_string(max_payload_bytes) + ")");
  }
  return tag;
}

}  // namespace lockstep::transport
