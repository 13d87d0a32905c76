// libFuzzer target for the transport's trust boundary: the frame decoder. Input layout:
//   [2 bytes little-endian header length n][n header bytes][payload bytes...]
// Whatever the bytes, decoding must either succeed or throw lockstep::Error (kProtocol); a
// decoded header must re-encode and decode to the same fields. The same header bytes also go to
// the segment-tag decoder (segmented payloads, frame.h): a decoded tag must be within its limits
// and re-encode to the same bytes. Built by scripts/fuzz.sh.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/transport/frame.h"

using lockstep::transport::CheckPayload;
using lockstep::transport::DecodeFrameHeader;
using lockstep::transport::DecodeSegmentTag;
using lockstep::transport::EncodeFrameHeader;
using lockstep::transport::EncodeSegmentTag;
using lockstep::transport::FrameHeader;
using lockstep::transport::kMaxSegments;
using lockstep::transport::SegmentTag;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t n = data[0] | (size_t{data[1]} << 8);
  std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  if (n > rest.size()) n = rest.size();
  std::span<const std::byte> header = rest.first(n);
  std::span<const std::byte> payload = rest.subspan(n);
  constexpr uint64_t kMaxPayload = 1 << 20;
  try {
    FrameHeader h = DecodeFrameHeader(header, "fuzz link", kMaxPayload);
    if (h.payload_length > kMaxPayload) std::abort();
    FrameHeader again = DecodeFrameHeader(EncodeFrameHeader(h), "fuzz link", kMaxPayload);
    if (again.kind != h.kind || again.message.step != h.message.step ||
        again.message.shape != h.message.shape || again.payload_length != h.payload_length ||
        again.payload_crc32c != h.payload_crc32c || again.message.src != h.message.src) {
      std::abort();
    }
    CheckPayload(h, payload, "fuzz link");
  } catch (const lockstep::Error& e) {
    if (e.code() != lockstep::ErrorCode::kProtocol) std::abort();
  }
  try {
    SegmentTag tag = DecodeSegmentTag(header, "fuzz link", kMaxPayload);
    if (tag.count < 2 || tag.count > kMaxSegments || tag.index >= tag.count ||
        tag.total_bytes == 0 || tag.total_bytes > kMaxPayload) {
      std::abort();
    }
    std::vector<std::byte> again = EncodeSegmentTag(tag);
    if (again.size() != header.size() || !std::equal(again.begin(), again.end(), header.begin())) {
      std::abort();
    }
  } catch (const lockstep::Error& e) {
    if (e.code() != lockstep::ErrorCode::kProtocol) std::abort();
  }
  return 0;
}
