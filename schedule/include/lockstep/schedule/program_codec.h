// One chip's program as bytes: a proto/schedule.capnp `Program` message, the same encoding a
// schedule file uses for each of its programs (schedule_capnp.cc holds the one codec). The
// coordinator ships a program to its worker this way (proto/control.capnp Assignment.program).
// Pure functions, thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {

// Deterministic: the same program gives the same bytes.
std::vector<std::byte> SerializeProgram(const ChipProgram& program);
// Reads SerializeProgram's bytes. Throws Error (kProtocol) starting with `context` for bytes
// that are not a well-formed program (unknown kinds, a dependency on a later instruction ...).
ChipProgram ParseProgram(std::span<const std::byte> bytes, const std::string& context);

}  // namespace lockstep::schedule
