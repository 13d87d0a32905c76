// Internal to transport/: the frame decoder with its fast path switchable, so tests can check
// that the fast path and Cap'n Proto's reader decode every input alike (frame.cc).
#pragma once

#include <span>
#include <string>

#include "lockstep/transport/frame.h"

namespace lockstep::transport {

// DecodeFrameHeader; `canonical_fast_path` false sends every header through Cap'n Proto's
// reader, true (what DecodeFrameHeader does) reads headers in exactly EncodeFrameHeader's layout
// at their fixed offsets.
FrameHeader DecodeFrameHeader(std::span<const std::byte> bytes, const std::string& context,
                              uint64_t max_payload_bytes, bool canonical_fast_path);

// Whether `bytes` is a header in exactly the layout EncodeFrameHeader writes for a shape of at
// most kMaxShapeRank dimensions: the headers DecodeFrameHeader reads without Cap'n Proto's reader.
bool HasCanonicalLayout(std::span<const std::byte> bytes);

}  // namespace lockstep::transport
