// The binary schedule file (proto/schedule.capnp, format version 2): a compact schedule indexed by
// chip, so that a worker reads its own chip's program without reading anyone else's.
//
// Layout: a 24-byte preamble (magic, version, header size), a header (summary figures, phases,
// and per chip its place in the plan and its byte range), then one message per chip (its bodies
// and the link directions into it). Writing is deterministic (the same schedule gives the same
// bytes) and atomic (a temporary file in the same folder, renamed over the path: a reader never
// sees half a file). Reading checks the preamble, the version, the size the header records and
// every chip's range, and refuses a file of another plan. Errors are one line naming the file and
// what differs. Pure functions of their arguments and the file; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lockstep/partition/plan.h"
#include "lockstep/schedule/compact.h"

namespace lockstep::schedule {

inline constexpr uint32_t kScheduleFileVersion = 2;

// The whole file's bytes.
std::string SerializeScheduleFile(const CompactSchedule& schedule);
// Reads SerializeScheduleFile's bytes. Throws Error (kInvalidInput) "<source>: ..." for bytes that
// are not a version-2 schedule: truncated (naming the sizes), another version (naming it), or
// malformed (which chip, what).
CompactSchedule ParseScheduleFile(std::string_view bytes, const std::string& source);

// A path ending in ".json" gets ScheduleToJson (not readable back); anything else the binary
// form. Throws Error (kNotFound) naming the path when it cannot be written; nothing is left
// behind then.
void WriteScheduleFile(const std::string& path, const CompactSchedule& schedule);

// The whole schedule. When `plan` is given, a file compiled for another plan is refused (Error
// kInvalidInput naming the model, topology or plan digest that differs).
CompactSchedule ReadScheduleFile(const std::string& path, const partition::Plan* plan = nullptr);

// One chip's part of a schedule file: the summary and phases, that chip alone in `chips`, and the
// link directions into it per phase. DecodePeriodProgram(schedule, chip) and
// DecodePeriodIncoming(schedule, incoming) give its program and incoming tables for one step.
struct ChipScheduleFile {
  CompactSchedule schedule;
  IncomingBodies incoming;
};
// Reads the preamble, the header and the chip's own message only. Throws Error (kInvalidInput)
// as ReadScheduleFile does, and for a chip the schedule has no program for (naming the chips it
// has), Error (kNotFound) when the file cannot be opened.
ChipScheduleFile ReadChipSchedule(const std::string& path, ChipId chip,
                                  const partition::Plan* plan = nullptr);

}  // namespace lockstep::schedule
