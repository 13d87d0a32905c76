// Control messages as plain values, and their one-frame Cap'n Proto encoding
// (proto/control.capnp documents the conversation). One Encode/Decode pair per message kind;
// Decode is the control plane's trust boundary: whatever bytes arrive it returns a well-formed
// message or throws Error(kProtocol) starting with `context` — never a crash. Pure functions,
// thread-safe. Private to the coordinator library and the worker daemon it builds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "messages.h"

namespace lockstep::coordinator::wire {

// 2: programs travel in schedule/'s encoding (program_codec.h); client messages.
inline constexpr uint16_t kControlVersion = 3;
// Largest control frame accepted (a shard chunk plus headroom; programs of big plans).
inline constexpr size_t kMaxControlBytes = size_t{64} << 20;

std::vector<std::byte> Encode(const ControlMessage& message);
ControlMessage Decode(const std::byte* data, size_t size, const std::string& context);

}  // namespace lockstep::coordinator::wire
