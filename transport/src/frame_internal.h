// Internal to transport/: the frame codec's two ways each (direct and through Cap'n Proto), so
// tests can check that they agree on every input (frame.cc).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "lockstep/transport/frame.h"

namespace lockstep::transport {

// DecodeFrameHeader; `canonical_fast_path` false sends every header through Cap'n Proto's
// reader, true (what DecodeFrameHeader does) reads headers in exactly EncodeFrameHeader's layout
// at their fixed offsets.
FrameHeader DecodeFrameHeader(std::span<const std::byte> bytes, const std::string& context,
                              uint64_t max_payload_bytes, bool canonical_fast_path);

// EncodeFrameHeader through Cap'n Proto's MallocMessageBuilder (what EncodeFrameHeader does for
// shapes of more than kMaxShapeRank dimensions): the bytes the direct encoder must equal.
std::vector<std::byte> EncodeFrameHeaderWithBuilder(const FrameHeader& header);

// Whether `bytes` is a header in exactly the layout EncodeFrameHeader writes for a shape of at
// most kMaxShapeRank dimensions: the headers DecodeFrameHeader reads without Cap'n Proto's reader.
bool HasCanonicalLayout(std::span<const std::byte> bytes);

}  // namespace lockstep::transport
