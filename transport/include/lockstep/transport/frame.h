// Encoding and checking of the two-frame wire format documented in proto/frame.capnp: a Cap'n
// Proto header frame and a raw payload frame. The decoder is the transport's trust boundary:
// whatever bytes arrive, it either returns a well-formed header or throws lockstep::Error
// (kProtocol) whose message starts with the caller's `context` (link and step) — never a crash,
// never an allocation driven by the peer beyond kMaxHeaderBytes. Pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lockstep/transport/message.h"

namespace lockstep::transport {

inline constexpr uint16_t kWireVersion = 1;
inline constexpr size_t kMaxHeaderBytes = 4096;
inline constexpr size_t kMaxShapeRank = 8;

enum class FrameKind : uint8_t { kData = 0, kHello = 1, kClose = 2 };

struct FrameHeader {
  FrameKind kind = FrameKind::kData;
  MessageHeader message;
  uint64_t payload_length = 0;
  uint32_t payload_crc32c = 0;
  // false: the sender did not checksum the payload (TransportOptions::checksums: by default on
  // every link kind but tcp without CURVE); payload_crc32c is 0.
  bool payload_checked = true;
};

// Serializes `header` (a few hundred bytes at most).
std::vector<std::byte> EncodeFrameHeader(const FrameHeader& header);

// Parses and validates a header frame: size, Cap'n Proto structure, version, kind, dtype, shape
// (rank, non-negative dims) and that product(shape) * DtypeBytes(dtype) == payload_length <=
// max_payload_bytes. Throws Error(kProtocol) "<context>: garbled frame header: <why>".
FrameHeader DecodeFrameHeader(std::span<const std::byte> bytes, const std::string& context,
                              uint64_t max_payload_bytes);

// Checks a payload frame against its decoded header: length, then CRC32C if the header says the
// payload is checked. `require_checked`: an unchecked header is refused too (an endpoint that
// checksums, transport.h ChecksumsPayloads). `computed_crc`: the payload's CRC32C as a backend
// already computed it while assembling a segmented payload (see SegmentTag); compared instead of a
// second pass over the bytes. Throws Error(kProtocol) "<context>: ..." naming the step on mismatch.
void CheckPayload(const FrameHeader& header, std::span<const std::byte> payload,
                  const std::string& context, bool require_checked = true,
                  std::optional<uint32_t> computed_crc = std::nullopt);

// Segmented payloads (ZeroMQ ipc/tcp, large tensors; proto/frame.capnp): the payload travels as
// `count` ZeroMQ messages. The first is [header][tag 0][segment 0], each further one
// [tag k][segment k]. A tag is kSegmentTagBytes bytes: magic "LSG1", index, count (uint32 each)
// and the total payload length (uint64), little-endian. Its size is not a multiple of 8, so a tag
// is never mistaken for a header nor a header for a tag.
inline constexpr size_t kSegmentTagBytes = 20;
inline constexpr uint32_t kMaxSegments = 64;

struct SegmentTag {
  uint32_t index = 0;
  uint32_t count = 0;
  uint64_t total_bytes = 0;
};

std::vector<std::byte> EncodeSegmentTag(const SegmentTag& tag);

// Parses a tag: size, magic, 2 <= count <= kMaxSegments, index < count, 0 < total_bytes <=
// max_payload_bytes. Throws Error(kProtocol) "<context>: garbled segment tag: <why>".
SegmentTag DecodeSegmentTag(std::span<const std::byte> bytes, const std::string& context,
                            uint64_t max_payload_bytes);

// Number of payload bytes `shape` and `dtype` describe; throws InvalidInput naming `context` on a
// negative dimension, too many dimensions, or overflow.
uint64_t ShapeBytes(const std::vector<int64_t>& shape, Dtype dtype, const std::string& context);

}  // namespace lockstep::transport
