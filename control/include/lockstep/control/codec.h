// The one encoding of control messages: each ControlMessage is one self-contained standard
// (unpacked) Cap'n Proto message of proto/control.capnp, one frame on the channel. One
// Encode/Decode pair per message kind lives in codec.cc. Decode is the control plane's trust
// boundary: whatever bytes arrive it returns a well-formed message or throws Error(kProtocol)
// starting with `context` — never a crash, never an unbounded allocation. Pure functions,
// thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/control/messages.h"

namespace lockstep::control {

// 2: programs travel in schedule/'s encoding (program_codec.h); 3: client messages.
inline constexpr uint16_t kControlVersion = 3;
// Largest control frame accepted (a shard chunk plus headroom; programs of big plans).
inline constexpr size_t kMaxControlBytes = size_t{64} << 20;

std::vector<std::byte> Encode(const ControlMessage& message);
ControlMessage Decode(const std::byte* data, size_t size, const std::string& context);

}  // namespace lockstep::control
